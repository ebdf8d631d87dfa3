"""Exactly-once sandbox operations: journal before effect, reconcile on retry.

`Sandbox.exec`, `write_file` and `edit_file` each run inside a journaled step, and a step is
at-least-once: the one in flight when a process died (or lost its connection to Restate) runs
again. So each operation leaves markers in the sandbox's private area, keyed by the tool
call's deterministic operation id. Markers live outside the workspace, so no command can delete
them (`git clean -fdx`, `rm -rf .agent`), and they travel with snapshots
(sandbox/protocol.py: `write_marker`). A retry of an operation whose result is recorded
returns that result and does nothing else.

- A command writes an intent before it starts and its result after. An intent without a
  result means the command may have partly run: the original is stopped first if it still
  runs (`stop_op`), then the retry reports outcome-unknown instead of running it a second time.
  The intent names the worker process that started the command, so the report can say what
  happened: that worker still running means its attempt lost its connection to Restate (the
  handler was cut off, nothing crashed); that worker gone means it crashed or was killed.
- An edit reads the file, and records the file's hash before and after the change as its
  intent. A retry that finds the "after" hash knows the edit landed; one that finds the
  "before" hash knows it did not, and applies it. Either way the edit happens once.
- A write is the same content to the same path, so repeating it is harmless: it only records
  its result so that the retry reports what the first attempt did.

Intents are written durably (fsync) before the effect; results are not: a worker that dies
leaves the page cache behind, so a retry after a SIGKILL still finds its result, and a result
lost with the host only turns a reported outcome into "outcome unknown" (an unreadable result
counts as none). A command's first attempt reads one marker (its intent), not two.

docs/architecture.md has the sequence diagram.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from app.models import EditFileIn, ExecOut, FileOpOut, WriteFileIn
from sandbox import SandboxBackend
from sandbox.ops import Proc
from sandbox.protocol import SandboxError

logger = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

MAX_EDIT_BYTES = 1_000_000
OUTCOME_UNKNOWN = (
    "outcome unknown: this command was started, but {what} before its result was recorded. The "
    "command was stopped if it was still running. It may have run partly or completely: inspect "
    "the workspace before running it again."
)
CONNECTION_LOST = ("the attempt running it lost its connection to Restate (its worker kept running: "
                   "nothing crashed)")
WORKER_STOPPED = "the worker running it stopped (it crashed or was killed)"
ATTEMPT_ENDED = "the attempt running it ended (its worker stopped or lost its connection to Restate)"


def marker_name(op_id: str) -> str:
    """The marker name of an operation id (`<task>/s1/r2/c0` → `<task>_s1_r2_c0`)."""
    return op_id.replace("/", "_")


def task_markers(task_id: str) -> str:
    """The prefix shared by every marker of one task's operations."""
    return marker_name(f"{task_id}/")


class _Worker(BaseModel):
    """The worker process that started a command: a pid is only meaningful on its own host."""

    host: str
    process: Proc


class _ExecIntent(BaseModel):
    command: str
    worker: _Worker


def _this_worker() -> _Worker:
    process = Proc.of(os.getpid())
    assert process is not None  # this very process
    return _Worker(host=socket.gethostname(), process=process)


def _what_happened(intent: str) -> str:
    """Why a command's attempt ended without its result, from the worker its intent names."""
    try:
        worker = _ExecIntent.model_validate_json(intent).worker
    except ValidationError:
        return ATTEMPT_ENDED  # an intent written before intents named their worker
    if worker.host != socket.gethostname():
        return ATTEMPT_ENDED  # another machine's worker: we cannot look at it from here
    return CONNECTION_LOST if worker.process.running() else WORKER_STOPPED


class _EditIntent(BaseModel):
    before: str  # sha256 of the file before the edit
    after: str  # sha256 of the file the edit writes
    detail: str


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _recorded(backend: SandboxBackend, sandbox_id: str, name: str, model: type[M]) -> M | None:
    raw = await backend.read_marker(sandbox_id, f"{name}.result")
    if raw is None:
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError:  # cut short by a host crash (results are not fsynced): unknown
        logger.warning("the recorded result of %s is unreadable; treating it as missing", name)
        return None


async def _record(backend: SandboxBackend, sandbox_id: str, name: str, result: BaseModel) -> None:
    """Record a result. The effect already happened and its result is in memory: failing to
    record it must not lose it, so the failure is logged and the result returned anyway (a
    crash right now would make a retry reconcile, which is still correct)."""
    try:
        await backend.write_marker(sandbox_id, f"{name}.result", result.model_dump_json(), durable=False)
    except (SandboxError, OSError, ValueError) as error:  # ValueError: a result over the marker size
        logger.warning("could not record the result of %s: %s", name, error)


async def exec_once(backend: SandboxBackend, sandbox_id: str, op_id: str, command: str,
                    timeout_s: float) -> ExecOut:
    """Run `command` at most once per `op_id`; see the module docstring."""
    name = marker_name(op_id)
    intent = _ExecIntent(command=command, worker=_this_worker())
    # Created exclusively: two attempts of one invocation can run at once (a partition's old
    # leader still finishing while the new one retries), and only the one that creates the
    # intent may start the command. A result is only ever written after its intent, so an
    # intent we created means a first attempt.
    if not await backend.create_marker(sandbox_id, f"{name}.intent", intent.model_dump_json()):
        if (recorded := await _recorded(backend, sandbox_id, name, ExecOut)) is not None:
            return recorded
        what = _what_happened(await backend.read_marker(sandbox_id, f"{name}.intent") or "")
        # The original attempt may still be running it (a dropped connection leaves its
        # process alive): stop it before anyone is told to try again.
        await backend.stop_op(sandbox_id, name)
        if (recorded := await _recorded(backend, sandbox_id, name, ExecOut)) is not None:
            return recorded  # it finished while we looked
        return ExecOut(exit_code=-1, stdout="", stderr=OUTCOME_UNKNOWN.format(what=what), outcome_unknown=True)
    result = await backend.exec(sandbox_id, command, timeout_s, op_id=name)
    out = ExecOut.model_validate(result.model_dump())
    await _record(backend, sandbox_id, name, out)
    return out


async def write_once(backend: SandboxBackend, sandbox_id: str, req: WriteFileIn) -> FileOpOut:
    """Write a file once per `op_id`; see the module docstring."""
    name = marker_name(req.op_id)
    if (recorded := await _recorded(backend, sandbox_id, name, FileOpOut)) is not None:
        return recorded
    await backend.write_file(sandbox_id, req.path, req.content)
    out = FileOpOut(ok=True, detail=f"wrote {len(req.content.encode())} bytes to {req.path}")
    await _record(backend, sandbox_id, name, out)
    return out


async def edit_once(backend: SandboxBackend, sandbox_id: str, req: EditFileIn) -> FileOpOut:
    """Replace exact text once per `op_id`; see the module docstring."""
    name = marker_name(req.op_id)
    if (recorded := await _recorded(backend, sandbox_id, name, FileOpOut)) is not None:
        return recorded
    text = await backend.read_file(sandbox_id, req.path, MAX_EDIT_BYTES + 1)
    if (raw := await backend.read_marker(sandbox_id, f"{name}.intent")) is not None:
        intent = _EditIntent.model_validate_json(raw)
        if _sha(text) == intent.after:  # the first attempt's write landed
            out = FileOpOut(ok=True, detail=intent.detail)
            await _record(backend, sandbox_id, name, out)
            return out
        if _sha(text) != intent.before:  # neither before nor after: something else changed it
            out = FileOpOut(ok=False, detail=f"{req.path} changed while this edit was being retried; read it "
                                             "and edit it again if it still needs the change")
            await _record(backend, sandbox_id, name, out)
            return out
        # The first attempt's write did not land (writes are atomic): decide the edit afresh.
    out, new_text = _apply(text, req)
    if new_text is not None:
        intent = _EditIntent(before=_sha(text), after=_sha(new_text), detail=out.detail)
        await backend.write_marker(sandbox_id, f"{name}.intent", intent.model_dump_json())
        await backend.write_file(sandbox_id, req.path, new_text)
    await _record(backend, sandbox_id, name, out)
    return out


def _apply(text: str, req: EditFileIn) -> tuple[FileOpOut, str | None]:
    """The edit's result and the new file text (None: the edit is refused, nothing changes)."""
    if len(text.encode()) > MAX_EDIT_BYTES:
        # The backend returned a cut-off text; writing it back would destroy the file.
        return FileOpOut(ok=False, detail=f"{req.path} is larger than {MAX_EDIT_BYTES} bytes; "
                                          "edit it with a command (e.g. sed) instead"), None
    found = text.count(req.old)
    if found == 0:
        return FileOpOut(ok=False, detail=f"the text to replace was not found in {req.path}; read_file it and "
                                           "copy the exact text (indentation included), or write the whole "
                                           "file with write_file"), None
    if found > 1 and not req.replace_all:
        return FileOpOut(ok=False, detail=f"the text to replace occurs {found} times in {req.path}; "
                                          "give more context or set replace_all"), None
    count = found if req.replace_all else 1
    new_text = text.replace(req.old, req.new) if req.replace_all else text.replace(req.old, req.new, 1)
    return FileOpOut(ok=True, detail=f"replaced {count} occurrence(s) in {req.path}"), new_text
