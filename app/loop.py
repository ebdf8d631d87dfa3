"""The agent loop for one plan step: model round, tool calls, repeat, until `finish`.

Each model round is one journaled `ctx.run_typed` step and each tool call is a durable call,
so the message list is rebuilt identically on replay from journaled results alone. What the
model is sent is that list fitted to its context window (app/window.py).
The loop is bounded by `max_rounds_per_step`; a step that runs out of rounds fails, the task
goes on.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from app import retry, tools
from app.llm import model_client
from app.models import ModelTurn, PlanStep, StepResult, Usage
from app.taskrun import TaskRun
from app.window import StepWindow

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
# The finish check (TaskSettings.finish_check): a step that says to run or test, or that changed
# a Python file, has to run a command before its finish is accepted. Refused once per step, so
# a model that insists still finishes.
_SAYS_RUN = re.compile(r"\b(run|runs|running|test|tests|testing|execute)\b", re.IGNORECASE)
NOT_RUN = ("error: not finished: this step says to run or test, and no command has run yet. Call run_command "
           "to run it and check the output, then call finish.")
NOT_CHECKED = ("error: not finished: you changed {path} and have not run anything since. Run it with "
               "run_command (for example on the examples from the request), check the output, fix what is "
               "wrong, then call finish.")
EXAMPLES_FAIL = ("error: not finished: the examples in the docstrings of {paths} were run with `{command}` "
                 "and some fail:\n{output}\nThe examples are right and the code is wrong: fix the code (write "
                 "the whole file again with write_file), leave the examples as they are, then call finish.")
EXAMPLES_UNKNOWN = ("error: not finished: the examples in the docstrings of {paths} were run with `{command}`, "
                    "but no result came back:\n{output}\nCall finish again to run them again.")
MAX_EXAMPLE_REFUSALS = 3  # per step: a model that cannot make them pass still finishes
REPEATED_CALL = (
    "error: this is exactly the call you made in the previous round, and its result is above. "
    "Do something different (write or fix a file, run another command), or call finish if the "
    "step is done."
)


def step_prompt(context: str, number: int, step: PlanStep) -> str:
    return f"{context}\n\nCurrent step {number}: {step.title}\n{step.instructions}".strip()


async def run_step(task: TaskRun, number: int, step: PlanStep, step_context: str) -> StepResult:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": step_prompt(step_context, number, step)},
    ]
    window = StepWindow(task, number, tools.SCHEMAS)
    usage = Usage()
    # The previous round's calls, and whether any of them failed: repeating a call that
    # worked is a loop; repeating one that failed may be a deliberate retry.
    previous_calls: list[dict[str, Any]] = []
    previous_failed = False
    earlier: list[list[dict[str, Any]]] = []  # every round's calls, oldest first
    insisted = 0  # consecutive rounds made only of refused repeats
    last_success = ""  # the latest successful tool result, for a step closed on repeats
    check = FinishCheck(task.config.finish_check == "on", f"{step.title}\n{step.instructions}")
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
            return StepResult(status="done", summary=turn.message.get("content") or "(no result)", usage=usage)
        finished: str | None = None
        failed = False
        refused = 0
        for index, call in enumerate(calls):
            op_id = f"{task.task_id}/s{number}/r{round_no}/c{index}"
            task.emit("tool_call", tools.describe_call(call, limit=400), ref=op_id)
            finishing = call.get("function", {}).get("name") == tools.FINISH  # the finish check judges those
            if not finishing and _same_call(call, previous_calls) and not previous_failed:
                # Small models loop on a call that just worked; re-running it helps nobody.
                outcome = tools.ToolOutcome(REPEATED_CALL, error=True)
                refused += 1
            elif not finishing and _in_a_cycle(call, earlier):
                # ... or on two calls in turn (write the same file, run the same failing command).
                outcome = tools.ToolOutcome(REPEATED_PAIR, error=True)
                refused += 1
            elif (refusal := await _examples_refusal(task, op_id, check, call) or check.refusal(call)) is not None:
                outcome = tools.ToolOutcome(refusal, error=True)
                failed = True  # so the same finish, made again, is not refused as a repeat
            else:
                outcome = await tools.dispatch(task, op_id, call)
                check.saw(call, outcome)
                failed = failed or outcome.error
                if outcome.finished:
                    finished = outcome.text
                elif not outcome.error:
                    last_success = outcome.text
            text = outcome.text
            _emit_result(task, op_id, text)
            messages.append({"role": "tool", "tool_call_id": call.get("id", op_id), "content": text})
        if finished is not None:
            return StepResult(status="done", summary=finished, usage=usage)
        insisted = insisted + 1 if refused == len(calls) else 0
        if insisted >= 2:
            # Told twice that its call already worked, the model keeps making it: for a small
            # model that is how "done" comes out. Close the step on the call's own result.
            return StepResult(status="done", usage=usage,
                              summary=f"{last_success[:MAX_SUMMARY]} (closed: the model kept repeating this call)")
        previous_calls, previous_failed = calls, failed
        earlier.append(calls)
    return StepResult(status="failed", summary=f"gave up after {max_rounds} model rounds", usage=usage)


async def _examples_refusal(task: TaskRun, op_id: str, check: FinishCheck, call: dict[str, Any]) -> str | None:
    """Before a `finish`: run the docstring examples (`>>>`, Python's doctest format) of the
    Python files changed since their examples last ran, as a run_command of its own (journaled,
    shown, approved like any other). The error to answer the finish with if one fails."""
    paths = check.examples_due(call)
    if not paths:
        return None
    command = "python3 -m doctest " + " ".join(shlex.quote(p) for p in paths)
    probe = {"id": f"{op_id}-examples", "type": "function",
             "function": {"name": "run_command", "arguments": json.dumps({"command": command, "timeout_s": 60})}}
    ref = f"{op_id}/examples"
    task.emit("tool_call", f"finish check: {tools.describe_call(probe, limit=400)}", ref=ref)
    outcome = await tools.dispatch(task, ref, probe)
    _emit_result(task, ref, outcome.text)
    check.saw(probe, outcome)
    check.examples_ran(paths, passed=outcome.exit_code == 0)
    if outcome.exit_code == 0:
        return None
    # No exit code: the run was cut off (its worker killed) or refused. Never run again unasked:
    # examples are code, and may have done part of what they do.
    refusal = EXAMPLES_FAIL if outcome.exit_code is not None else EXAMPLES_UNKNOWN
    return refusal.format(paths=", ".join(paths), command=command, output=outcome.text)


def _emit_result(task: TaskRun, ref: str, text: str) -> None:
    """The tool_result event: the first line as its text, the whole result as its detail."""
    task.emit("tool_result", text.splitlines()[0][:200] if text else "", detail=text, ref=ref)


class FinishCheck:
    """Whether a step may finish yet: a command must have run if the step says to run or test,
    and after the last change to a Python file; a Python file's docstring examples must pass.
    Built from journaled results only (the tool calls and outcomes), so a replay refuses exactly
    the same calls."""

    def __init__(self, enabled: bool, step_text: str) -> None:
        self.enabled = enabled
        self.says_run = bool(_SAYS_RUN.search(step_text))
        self.ran = False
        self.unchecked: str | None = None  # a Python file changed since the last command
        self.refused = False
        self.with_examples: set[str] = set()  # Python files that have docstring examples
        self.examples_stale: list[str] = []  # ... changed since their examples last ran, in order
        self.example_refusals = 0

    def saw(self, call: dict[str, Any], outcome: tools.ToolOutcome) -> None:
        name, args = _name_and_args(call)
        if name == "run_command" and not outcome.error:
            self.ran, self.unchecked = True, None
        elif name in ("write_file", "edit_file") and not outcome.error and str(args.get("path", "")).endswith(".py"):
            path = str(args["path"])
            self.unchecked = path
            written = str(args.get("content" if name == "write_file" else "new", ""))
            if _has_examples(written):
                self.with_examples.add(path)
            elif name == "write_file":
                self.with_examples.discard(path)
            if path in self.with_examples and path not in self.examples_stale:
                self.examples_stale.append(path)

    def refusal(self, call: dict[str, Any]) -> str | None:
        """The error to answer a `finish` with, or None to let the call through. Asked after
        `examples_due` had its examples run: running them counts as running a command."""
        if not self.enabled or self.refused or _name_and_args(call)[0] != tools.FINISH:
            return None
        if self.says_run and not self.ran:
            self.refused = True
            return NOT_RUN
        if self.unchecked is not None and self.unchecked not in self.with_examples:
            self.refused = True
            return NOT_CHECKED.format(path=self.unchecked)
        return None

    def examples_due(self, call: dict[str, Any]) -> list[str]:
        """The files whose examples a `finish` must run first (none once the model was told
        MAX_EXAMPLE_REFUSALS times that they fail)."""
        if not self.enabled or _name_and_args(call)[0] != tools.FINISH:
            return []
        if self.example_refusals >= MAX_EXAMPLE_REFUSALS:
            return []
        return [p for p in self.examples_stale if p in self.with_examples]

    def examples_ran(self, paths: list[str], passed: bool) -> None:
        """Passing examples are done with until their file changes; failing ones are run again
        at the next finish, until the model was told MAX_EXAMPLE_REFUSALS times."""
        if passed:
            self.examples_stale = [p for p in self.examples_stale if p not in paths]
        else:
            self.example_refusals += 1


def _has_examples(code: str) -> bool:
    return any(line.lstrip().startswith(">>> ") for line in code.splitlines())


def _name_and_args(call: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    fn = call.get("function", {})
    try:
        args = json.loads(fn.get("arguments") or "{}")
    except ValueError:
        args = {}
    return fn.get("name", ""), args if isinstance(args, dict) else {}


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
