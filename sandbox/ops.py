"""Finding a running command again from another attempt, and stopping it (`stop_op`).

An attempt can lose its connection to Restate while its worker process lives on (a network
partition, a stalled event loop): Restate then starts the next attempt, perhaps in another
worker, while the first one's command still runs. So `exec(..., op_id=...)` keeps a record of
its command in the sandbox's private directory, `<root>/<name>/ops/<op_id>.json`, for as long
as the command runs, and the next attempt's `stop_op` asks the sandbox's supervisor
(sandbox/env.py) to kill whatever runs under that op id, until the record is gone.

A record names the worker that started the command by pid and start time, so a record left
behind never matches an unrelated process that later got the same pid. If that worker is
gone, its connection to the supervisor is closed, and the supervisor kills the command.

The record is written before the command starts, and `stop_op` leaves `<op_id>.stopped`
before it reads records. So either the starting exec sees that mark and never starts the
command, or `stop_op` sees the record and keeps stopping the command until its exec has
ended. The marks go when the operation's markers do (`delete_markers`).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pydantic import BaseModel

STOP_WAIT_S = 10.0  # then stop_op fails, and its step is retried


class Proc(BaseModel):
    """One process, told apart from a later one with the same pid by its start time."""

    pid: int
    start: int  # clock ticks after boot, /proc/<pid>/stat field 22

    @classmethod
    def of(cls, pid: int) -> Proc | None:
        """The process `pid` as it is now, or None if it is gone or a zombie."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return None
        fields = stat[stat.rindex(")") + 2:].split()  # after the name, which may hold anything
        if fields[0] in ("Z", "X"):
            return None
        return cls(pid=pid, start=int(fields[19]))

    def running(self) -> bool:
        return Proc.of(self.pid) == self

    def kill(self) -> None:
        """SIGKILL it and its process group, if it is still this process."""
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return
        try:
            if self.running():  # the pidfd now holds this very process, not a successor
                try:
                    os.killpg(self.pid, signal.SIGKILL)  # it leads its own group (start_new_session)
                except ProcessLookupError:
                    pass
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)


class OpRecord(BaseModel):
    sandbox_id: str
    worker: Proc  # the worker whose exec runs the command


def _record(ops_dir: Path, op_id: str) -> Path:
    return ops_dir / f"{op_id}.json"


def _mark(ops_dir: Path, op_id: str) -> Path:
    return ops_dir / f"{op_id}.stopped"


def _write(path: Path, record: OpRecord) -> None:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = path.with_name(f"+{secrets.token_hex(6)}")
    tmp.write_text(record.model_dump_json())
    os.replace(tmp, path)


def _read(path: Path) -> OpRecord | None:
    try:
        return OpRecord.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None


def begin(ops_dir: Path, op_id: str, record: OpRecord) -> bool:
    """Record a command about to start. False if `stop_op` already stopped this operation:
    then the command must not start."""
    _write(_record(ops_dir, op_id), record)
    if _mark(ops_dir, op_id).exists():
        end(ops_dir, op_id)
        return False
    return True


def end(ops_dir: Path, op_id: str) -> None:
    _record(ops_dir, op_id).unlink(missing_ok=True)


async def stop(ops_dir: Path, op_id: str, sandbox_id: str, stop_running: Callable[[], Awaitable[None]]) -> None:
    """Stop the command recorded under `op_id`, and any that would start under it later;
    return once nothing of it runs. `stop_running` kills what runs under the op id now and
    returns once it has ended."""
    try:
        ops_dir.mkdir(mode=0o700, exist_ok=True)
    except FileNotFoundError:
        return  # no sandbox of that name was ever made here: nothing can run under it
    _mark(ops_dir, op_id).touch()
    deadline = time.monotonic() + STOP_WAIT_S
    while True:
        await stop_running()
        record = _read(_record(ops_dir, op_id))
        if record is None or record.sandbox_id != sandbox_id or not record.worker.running():
            return  # never started, finished, or died with its worker (and so lost its connection)
        # Its exec has not ended yet: it may still be about to start the command.
        if time.monotonic() > deadline:
            raise RuntimeError(f"operation {op_id} was still running {STOP_WAIT_S:g} s after it was stopped")
        await asyncio.sleep(0.01)


def forget(ops_dir: Path, prefix: str) -> None:
    """Drop the stop marks of operations whose id starts with `prefix`."""
    try:
        names = os.listdir(ops_dir)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith(prefix) and name.endswith(".stopped"):
            (ops_dir / name).unlink(missing_ok=True)
