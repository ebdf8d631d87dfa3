"""Exactly-once sandbox operations (app/once.py) on the real local backend, with the process
"dying" at every point of an operation and the operation then retried, as Restate would."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.models import EditFileIn, WriteFileIn
from app.once import CONNECTION_LOST, WORKER_STOPPED, edit_once, exec_once, marker_name, write_once
from sandbox import FileMissing, LocalLimits, SandboxBackend, WorkspaceFull, create_backend
from sandbox.ops import Proc


class Crash(BaseException):
    """The worker died here: nothing after this point of the attempt happens."""


class CrashingBackend:
    """The real backend, except that the attempt dies right after (or before) one call."""

    def __init__(self, real: SandboxBackend, method: str, name_suffix: str = "", before: bool = False,
                 error: BaseException | None = None) -> None:
        self.real, self.method, self.suffix, self.before = real, method, name_suffix, before
        self.error = error or Crash(f"{method} {name_suffix}")

    def __getattr__(self, attr: str) -> Any:
        real = getattr(self.real, attr)
        if attr != self.method:
            return real

        async def call(*args: Any, **kwargs: Any) -> Any:
            hit = not self.suffix or any(isinstance(a, str) and a.endswith(self.suffix) for a in args)
            if hit and self.before:
                raise self.error
            result = await real(*args, **kwargs)
            if hit:
                raise self.error
            return result
        return call


@pytest.fixture
def box(tmp_path: Path) -> Iterator[tuple[SandboxBackend, str]]:
    backend = create_backend("local", tmp_path / "sandboxes", LocalLimits())
    sandbox_id = run(backend.create("once")).sandbox_id
    yield backend, sandbox_id
    run(backend.terminate(sandbox_id))


# One event loop for the module, as a worker has: a live sandbox's processes belong to the loop
# that started them, and closing that loop stops them.
_runner = asyncio.Runner()


@pytest.fixture(scope="module", autouse=True)
def _one_loop() -> Iterator[None]:
    yield
    _runner.close()


def run(coroutine: Any) -> Any:
    return _runner.run(coroutine)


APPEND = "echo ran >> runs.txt; echo done"


def runs(backend: SandboxBackend, sid: str) -> int:
    """How many times APPEND really ran."""
    try:
        return run(backend.read_file(sid, "runs.txt", 100)).count("ran")
    except FileMissing:
        return 0


@pytest.mark.parametrize("method,suffix,ran", [("create_marker", ".intent", 0), ("exec", "", 1),
                                               ("write_marker", ".result", 1)])
def test_a_command_interrupted_anywhere_runs_at_most_once(box, method, suffix, ran):
    backend, sid = box
    with pytest.raises(Crash):
        run(exec_once(CrashingBackend(backend, method, suffix), sid, "t/s1/r1/c0", APPEND, 30))

    retried = run(exec_once(backend, sid, "t/s1/r1/c0", APPEND, 30))
    again = run(exec_once(backend, sid, "t/s1/r1/c0", APPEND, 30))

    if suffix == ".result":  # the result was recorded before the crash: the retry returns it
        assert (retried.exit_code, retried.stdout, retried.outcome_unknown) == (0, "done\n", False)
    else:  # an intent without a result: reported as unknown, never run (again)
        assert retried.outcome_unknown and "outcome unknown" in retried.stderr
    assert again == retried
    assert runs(backend, sid) == ran


def test_two_attempts_running_at_once_run_the_command_once(box):
    """A partition's old leader can still run an attempt while the new leader retries it: only
    the attempt that creates the intent runs the command; the others stop it and report its
    recorded result, or outcome unknown."""
    backend, sid = box

    async def both() -> list:
        command = "sleep 0.3; echo ran >> runs.txt; echo done"
        return await asyncio.gather(*(exec_once(backend, sid, "t/s1/r7/c0", command, 30) for _ in range(4)))

    results = run(both())

    assert runs(backend, sid) <= 1  # at most once: a loser stops the winner's command
    assert len({r.model_dump_json() for r in results if not r.outcome_unknown}) <= 1  # one recorded result
    before = runs(backend, sid)
    run(exec_once(backend, sid, "t/s1/r7/c0", "sleep 0.3; echo ran >> runs.txt; echo done", 30))
    assert runs(backend, sid) == before  # and a later retry runs nothing


def test_a_result_that_cannot_be_recorded_is_still_returned(box):
    backend, sid = box
    full = CrashingBackend(backend, "write_marker", ".result", before=True, error=WorkspaceFull("disk full"))
    out = run(exec_once(full, sid, "t/s1/r1/c0", APPEND, 30))
    assert (out.exit_code, out.stdout) == (0, "done\n")


EDIT = EditFileIn(op_id="t/s1/r2/c0", path="greet.txt", old="hello", new="hello hello")


@pytest.mark.parametrize("method,suffix", [("write_marker", ".intent"), ("write_file", "greet.txt"),
                                           ("write_marker", ".result")])
def test_an_edit_interrupted_anywhere_is_applied_exactly_once(box, method, suffix):
    backend, sid = box
    run(backend.write_file(sid, "greet.txt", "hello\n"))
    with pytest.raises(Crash):
        run(edit_once(CrashingBackend(backend, method, suffix), sid, EDIT))

    retried = run(edit_once(backend, sid, EDIT))

    assert retried.ok, retried
    assert run(backend.read_file(sid, "greet.txt", 100)) == "hello hello\n"
    assert run(edit_once(backend, sid, EDIT)) == retried


def test_a_write_interrupted_after_writing_is_recorded_by_its_retry(box):
    backend, sid = box
    req = WriteFileIn(op_id="t/s1/r3/c0", path="note.txt", content="once\n")
    with pytest.raises(Crash):
        run(write_once(CrashingBackend(backend, "write_file", "note.txt"), sid, req))

    first = run(write_once(backend, sid, req))
    assert first.ok and "5 bytes" in first.detail
    run(backend.write_file(sid, "note.txt", "changed later\n"))
    assert run(write_once(backend, sid, req)) == first  # recorded: a later retry writes nothing
    assert run(backend.read_file(sid, "note.txt", 100)) == "changed later\n"


def test_markers_outlive_a_command_that_deletes_the_whole_workspace(box):
    backend, sid = box
    first = run(exec_once(backend, sid, "t/s1/r4/c0", "rm -rf /project/* /project/.[!.]*; echo ran >> runs.txt", 30))
    assert first.exit_code == 0
    run(backend.exec(sid, "rm -rf /project/* /project/.[!.]*", 30))
    assert run(exec_once(backend, sid, "t/s1/r4/c0", "rm -rf /project/*; echo ran >> runs.txt", 30)) == first


def test_an_edit_retried_after_the_file_changed_under_it_says_so_and_changes_nothing(box):
    backend, sid = box
    run(backend.write_file(sid, "greet.txt", "hello\n"))
    with pytest.raises(Crash):  # the intent is recorded, the edit's write never lands
        run(edit_once(CrashingBackend(backend, "write_file", "greet.txt", before=True), sid, EDIT))
    run(backend.write_file(sid, "greet.txt", "hello from someone else\n"))

    retried = run(edit_once(backend, sid, EDIT))

    assert not retried.ok and "changed while this edit was being retried" in retried.detail
    assert run(backend.read_file(sid, "greet.txt", 100)) == "hello from someone else\n"


def test_outcome_unknown_tells_a_lost_connection_from_a_stopped_worker(box):
    backend, sid = box
    # The attempt ended while its worker (this process) lives on: its connection was lost.
    with pytest.raises(Crash):
        run(exec_once(CrashingBackend(backend, "exec"), sid, "t/s1/r5/c0", APPEND, 30))
    lost = run(exec_once(backend, sid, "t/s1/r5/c0", APPEND, 30))
    assert lost.outcome_unknown and CONNECTION_LOST in lost.stderr

    # The intent names a worker process that is gone: it crashed or was killed.
    worker = subprocess.Popen(["sleep", "60"])
    gone = Proc.of(worker.pid)
    worker.kill()
    worker.wait()
    intent = {"command": APPEND, "worker": {"host": socket.gethostname(), "process": gone.model_dump()}}
    run(backend.write_marker(sid, f"{marker_name('t/s1/r6/c0')}.intent", json.dumps(intent)))
    stopped = run(exec_once(backend, sid, "t/s1/r6/c0", APPEND, 30))
    assert stopped.outcome_unknown and WORKER_STOPPED in stopped.stderr
    assert runs(backend, sid) == 1  # the first attempt ran it; neither retry ran anything
