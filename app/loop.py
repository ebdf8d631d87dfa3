"""The agent loop for one plan step: model round, tool calls, repeat, until `finish`.

Each model round is one journaled `ctx.run_typed` step and each tool call is a durable call,
so the message list is rebuilt identically on replay from journaled results alone. What the
model is sent is that list fitted to its context window (app/window.py).
The loop is bounded by `max_rounds_per_step`; a step that runs out of rounds fails, the task
goes on.
"""

from __future__ import annotations

import json
from typing import Any

from app import retry, tools
from app import sandbox_service as sandbox
from app.finish_check import FinishCheck
from app.llm import model_client
from app.models import FileEntryOut, ModelTurn, PathIn, PlanStep, StepResult, Usage
from app.taskrun import TaskRun
from app.window import SAVED_DIR, StepWindow

SYSTEM_PROMPT = (
    "You are a coding agent. You work in a Linux sandbox; /project is the working directory, "
    "python3 is installed and there is no network. Use the tools to do the current step: write "
    "complete code to files (never a stub), then run it to check it, for example on the examples "
    "given in the request, and fix what is wrong. Use edit_file for small changes. When done, call "
    "finish with a one-line result. Be brief."
)
MAX_SUMMARY = 500
REPEATED_PAIR = (
    "error: you are repeating the same two calls in turn, with the same arguments, and their results "
    "are above: nothing will change. Do something different (read the error, fix the code or the "
    "command), or call finish if the step is done."
)
REPEATED_CALL = (
    "error: this is exactly the call you made in the previous round, and its result is above. "
    "Do something different (write or fix a file, run another command), or call finish if the "
    "step is done."
)
MAX_LISTED_FILES = 40  # of the workspace, in a step's first prompt
_UNLISTED = (SAVED_DIR.split("/")[0], ".git", "__pycache__")


def step_prompt(context: str, number: int, step: PlanStep, files: list[FileEntryOut],
                notice: str | None = None) -> str:
    """The step's first user message. `notice`: what the sandbox says happened to the workspace
    (a snapshot that could not be found, a rollback), told before the model acts on it."""
    sandbox_line = f"{sandbox.sandbox_says(notice)}\n\n" if notice else ""
    return (f"{context}\n\n{sandbox_line}{workspace_line(files)}\n\n"
            f"Current step {number}: {step.title}\n{step.instructions}").strip()


def workspace_line(files: list[FileEntryOut]) -> str:
    """What the workspace holds as the step starts: a small model that knows `solution.py` does
    not exist yet writes it, instead of editing or running it."""
    shown = [e for e in files if not set(e.path.split("/")) & set(_UNLISTED)]
    if not shown:
        return "Files in /project: none yet."
    names = [e.path + ("/" if e.kind == "dir" else "") for e in shown[:MAX_LISTED_FILES]]
    more = f" and {len(shown) - MAX_LISTED_FILES} more (list_files shows them)" if len(shown) > MAX_LISTED_FILES else ""
    return f"Files in /project: {', '.join(names)}{more}."


async def run_step(task: TaskRun, number: int, step: PlanStep, step_context: str) -> StepResult:
    # A durable call like any tool's: a replay reads the same listing from the journal. It is
    # the step's first sandbox call, so it carries any pending notice, which the prompt tells.
    listing = await task.ctx.object_call(sandbox.list_for_task, key=task.session_id, arg=PathIn(path="."))
    first: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": step_prompt(step_context, number, step, listing.entries, listing.notice)},
    ]
    messages = list(first)
    window = StepWindow(task, number, tools.SCHEMAS)
    usage = Usage()
    # The previous round's calls, and whether any of them failed: repeating a call that
    # worked is a loop; repeating one that failed may be a deliberate retry.
    previous_calls: list[dict[str, Any]] = []
    previous_failed = False
    earlier: list[list[dict[str, Any]]] = []  # every round's calls, oldest first
    insisted = 0  # consecutive rounds made only of refused repeats
    last_success = ""  # the latest successful tool result, for a step closed on repeats
    check = FinishCheck(task, number, first[1]["content"], f"{step.title}\n{step.instructions}")
    max_rounds = task.config.max_rounds_per_step
    for round_no in range(1, max_rounds + 1):
        # The model boundary: the budget is checked and new steering joins the conversation.
        for text in await task.controls.at_model_boundary():
            messages.append({"role": "user", "content": f"Guidance from the user: {text}"})
        label = f"step {number}: {step.title[:60]}, round {round_no}"
        prompt = await window.fit(messages, label)
        turn = await task.ctx.run_typed(
            label,
            model_client().complete, retry.model_step(ModelTurn),
            prompt, tools.SCHEMAS, f"{task.task_id}-s{number}-r{round_no}",
            session_id=task.session_id, task_id=task.task_id, label=label,  # addresses live text for the web UI
        )
        usage = usage.plus(turn.usage)
        task.controls.charge(turn.usage)
        messages.append(turn.message)
        calls = [] if turn.format_error else turn.message.get("tool_calls") or []
        task.emit("model_round", _round_text(turn), ref=label, hold=bool(calls))  # goes with the first tool_call
        if turn.format_error:
            messages.append({"role": "user", "content": f"error: {turn.format_error}"})
            continue
        if not calls:
            # A plain answer with no tool call is the model saying it is done.
            return StepResult(status="done", summary=turn.message.get("content") or "(no result)",
                              usage=usage.plus(check.usage))
        finished: str | None = None
        failed = False
        refused = 0
        for index, call in enumerate(calls):
            op_id = f"{task.task_id}/s{number}/r{round_no}/c{index}"
            task.emit("tool_call", tools.describe_call(call, limit=400), ref=op_id)
            finishing = call.get("function", {}).get("name") == tools.FINISH  # the finish check judges those
            if not finishing and _same_call(call, previous_calls) and (
                    not previous_failed or (len(earlier) > 1 and _same_call(call, earlier[-2]))):
                # Small models loop on a call that just worked, or keep making one that fails the
                # same way; re-running it helps nobody. (One retry of a failed call may be deliberate.)
                outcome = tools.ToolOutcome(REPEATED_CALL, error=True)
                refused += 1
            elif not finishing and _in_a_cycle(call, earlier):
                # ... or on two calls in turn (write the same file, run the same failing command).
                outcome = tools.ToolOutcome(REPEATED_PAIR, error=True)
                refused += 1
            elif (examples := await check.examples_refusal(op_id, call)) is not None:
                outcome = tools.ToolOutcome(examples.text, error=True)
                failed = True  # so the same finish, made again, is not refused as a repeat
            elif (refusal := check.refusal(call)) is not None:
                outcome = tools.ToolOutcome(refusal, error=True)
                failed = True
            else:
                outcome = await tools.dispatch(task, op_id, call)
                check.saw(call, outcome)
                outcome = await check.rewrite_if_broken(op_id, call, outcome) or outcome
                failed = failed or outcome.error
                if outcome.finished:
                    finished = outcome.text
                elif not outcome.error:
                    last_success = outcome.text
            text = outcome.text
            tools.emit_result(task, op_id, text)
            messages.append({"role": "tool", "tool_call_id": call.get("id", op_id), "content": text})
        if finished is not None:
            return StepResult(status="done", summary=finished, usage=usage.plus(check.usage))
        insisted = insisted + 1 if refused == len(calls) else 0
        if insisted >= 2:
            # Told twice that its call already worked, the model keeps making it: for a small
            # model that is how "done" comes out. Close the step on the call's own result.
            return StepResult(status="done", usage=usage.plus(check.usage),
                              summary=f"{last_success[:MAX_SUMMARY]} (closed: the model kept repeating this call)")
        previous_calls, previous_failed = calls, failed
        earlier.append(calls)
    return StepResult(status="failed", summary=f"gave up after {max_rounds} model rounds",
                      usage=usage.plus(check.usage))


def _same_call(call: dict[str, Any], previous: list[dict[str, Any]]) -> bool:
    """Whether the previous round made exactly this call (same tool, same arguments)."""
    fn = call.get("function", {})
    return any(p.get("function", {}).get("name") == fn.get("name")
               and _canonical(p.get("function", {}).get("arguments")) == _canonical(fn.get("arguments"))
               for p in previous)


def _in_a_cycle(call: dict[str, Any], earlier: list[list[dict[str, Any]]]) -> bool:
    """Whether `call` repeats the round before last while the last round repeated the one
    before it (A, B, A, and now B again, with the same arguments each time), and one of the
    two writes a file: writing the same text again changes nothing, so neither will the other
    call. (Two commands in turn may be polling something that changes, like a server starting.)"""
    if len(earlier) < 3 or not _same_call(call, earlier[-2]):
        return False
    pair = [call, *earlier[-1]]
    return (len(earlier[-1]) == len(earlier[-3])
            and all(_same_call(c, earlier[-3]) for c in earlier[-1])
            and not all(_same_call(c, earlier[-2]) for c in earlier[-1])
            and any(c.get("function", {}).get("name") in ("write_file", "edit_file") for c in pair))


def _canonical(arguments: object) -> str:
    try:
        return json.dumps(json.loads(arguments), sort_keys=True) if isinstance(arguments, str) else str(arguments)
    except ValueError:
        return str(arguments)


def _round_text(turn: ModelTurn) -> str:
    calls = turn.message.get("tool_calls") or []
    text = turn.message.get("content") or ""
    if calls and text.lstrip().startswith(("{", "[")):
        text = ""  # a structured-mode answer: the tool_call events show it
    names = ", ".join(c["function"]["name"] for c in calls)
    return (text + (f" → {names}" if names else "")).strip() or "(empty answer)"
