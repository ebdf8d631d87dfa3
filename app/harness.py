"""What the harness does durably in a step, beside the model's own tool calls: read a file,
write one from a plain-text answer, run the checks.

Every action is a journaled call or step with an id derived from the step, round and call,
so a replay repeats none of them and a worker killed in the middle of a check re-runs only
the part that had not completed (a command is exactly-once by its operation id in the
Sandbox). Each check and each harness write is also an event tied to its id, which is how an
answer's evidence points at what ran.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from restate import TerminalError

from app import retry, tools
from app import sandbox_service as sandbox
from app.brain import checks, prompts, text_edits
from app.brain.gate import CheckOutput, StepGate, call_args
from app.errors import is_cancellation, is_tool_input_error
from app.models import CheckRun, ModelTurn, PathIn, Usage
from app.taskrun import TaskRun

RESAMPLE_TEMPERATURES: tuple[float | None, ...] = (None, prompts.SAMPLED)  # the first greedy, then sampled


@dataclass(frozen=True)
class FileNow:
    path: str
    content: str | None  # None: it does not exist
    notice: str | None = None  # what the sandbox says happened to the workspace


async def read_now(task: TaskRun, path: str) -> FileNow:
    """The file's content now, through the task's durable path (a journaled call)."""
    try:
        out = await task.ctx.object_call(sandbox.read_for_task, key=task.session_id, arg=PathIn(path=path))
    except TerminalError as error:
        if not is_tool_input_error(error):
            raise
        return FileNow(path, None)
    task.memory.saw(path, out.content)
    return FileNow(path, out.content, out.notice)


async def workspace_files(task: TaskRun) -> list[str]:
    """Every file in the workspace, by a journaled listing."""
    listing = await task.ctx.object_call(sandbox.list_for_task, key=task.session_id, arg=PathIn(path="."))
    return [e.path for e in listing.entries if e.kind == "file"]


async def ask_for_code(task: TaskRun, label: str, call_id: str, prompt: str,
                       temperature: float | None = None) -> tuple[str, ModelTurn]:
    """One journaled plain-chat round (no tools, no grammar); its answer and the turn (the
    caller charges its usage). A request the model's server refuses for good (a prompt over
    its window: llama.cpp answers 400) is an answer with no code, which the step's loop
    tells the model about, never the task's failure."""
    try:
        turn = await task.ctx.run_typed(
            label, task.model().complete, retry.model_step(ModelTurn), prompts.messages(prompt), [], call_id,
            session_id=task.session_id, task_id=task.task_id, label=label, temperature=temperature)
    except TerminalError as error:
        if is_cancellation(error):
            raise
        return "", ModelTurn(message={"role": "assistant", "content": ""}, usage=Usage(),
                             format_error=f"the model's server refused the request: {error.message}")
    answer = "" if turn.format_error else turn.message.get("content") or ""
    return answer, turn


def content_from(answer: str, request: prompts.WriteRequest) -> tuple[str | None, str]:
    """The file's new content from a write round's answer, or None and why not (for the model)."""
    edits = text_edits.replacements(answer)
    if edits and request.current is not None:
        if request.clipped:
            return None, f"{request.path} is too large to change from the part of it shown"
        try:
            return text_edits.apply(request.current, edits), ""
        except text_edits.EditError as error:
            return None, f"the change to {request.path} could not be made: {error}"
    whole = text_edits.whole_file(answer, request.path)
    if whole is None:
        return None, f"the answer for {request.path} held no code block"
    if request.current is not None and (request.clipped or (request.by_blocks and len(whole) < len(request.current) // 2)):
        return None, (f"the answer for {request.path} was neither search/replace blocks nor the whole file "
                      "(the file is larger than what it held)")
    return whole, ""


def write_call(op_id: str, path: str, content: str) -> dict[str, Any]:
    """A write_file call with its content: how the harness writes a file from text."""
    return {"id": op_id, "type": "function",
            "function": {"name": "write_file", "arguments": json.dumps({"path": path, "content": content})}}


async def write(task: TaskRun, op_id: str, path: str, content: str, why: str) -> tools.ToolOutcome:
    """Write `content` to `path` as a write_file call of the harness's own (journaled, shown,
    approved like the model's), and remember the task wrote it."""
    call = write_call(op_id, path, content)
    task.emit("tool_call", f"{why}: {tools.describe_call(call, limit=400)}", ref=op_id)
    outcome = await tools.dispatch(task, op_id, call)
    tools.emit_result(task, op_id, outcome.text)
    if not outcome.error:
        task.memory.saw(path, content)
    return outcome


async def has_pytest(task: TaskRun) -> bool:
    """Whether the sandbox's python3 has pytest: asked once a task (a journaled command of its
    own), so that each test check is one plain command the evidence can show as it is."""
    if task.memory.pytest is None:
        ref = f"{task.task_id}/pytest"
        call = {"id": ref, "type": "function",
                "function": {"name": "run_command", "arguments": json.dumps({"command": checks.HAS_PYTEST})}}
        outcome = await tools.dispatch(task, ref, call)
        task.memory.pytest = outcome.exit_code == 0
    return task.memory.pytest


async def plan(task: TaskRun, gate: StepGate, workspace: list[str]) -> list[checks.PlannedCheck]:
    """The checks to run now; if there are tests, pytest or unittest by what the sandbox has."""
    planned = gate.plan_checks(workspace)
    if any(c.kind == "tests" for c in planned):
        planned = gate.plan_checks(workspace, await has_pytest(task))
    return planned


async def run_checks(task: TaskRun, op_id: str, step: int, planned: list[checks.PlannedCheck]) -> list[CheckOutput]:
    """Run each planned check as a run_command of the harness's own; record each run."""
    done = []
    for index, check in enumerate(planned):
        ref = f"{op_id}/check{index}"
        call = {"id": ref, "type": "function", "function": {"name": "run_command", "arguments": json.dumps(
            {"command": check.command, "timeout_s": check.timeout_s})}}
        task.emit("tool_call", f"check ({check.kind}): {tools.describe_call(call, limit=400)}", ref=ref)
        outcome = await tools.dispatch(task, ref, call)
        tools.emit_result(task, ref, outcome.text)
        summary = checks.summarize(check.kind, outcome.exit_code, outcome.text)
        run = CheckRun(kind=check.kind, command=check.command, exit_code=outcome.exit_code, summary=summary,
                       ref=ref, step=step)
        task.emit("check", f"{check.kind}: {summary}", detail=outcome.text, ref=ref)
        done.append(CheckOutput(run, outcome.text))
    return done


def resample_temperature(number: int) -> float | None:
    return RESAMPLE_TEMPERATURES[min(number, len(RESAMPLE_TEMPERATURES)) - 1]
