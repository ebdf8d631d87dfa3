"""A host-wide cap on sandbox commands running at once, shared by every worker process.

Hundreds of sessions may each start a command at the same moment; a 2-core machine runs a
few of them well and hundreds of them badly (memory, pids, scheduler thrash). So a command
first takes one of `count` slots, and the rest queue.

A slot is a file `<directory>/slot-<i>` held with an exclusive `flock`. The kernel drops a
lock when its holder's file is closed, and so when the holder dies, SIGKILL included: a crashed
worker never leaks a slot, and no bookkeeping needs repair. Worker processes on one host share
the directory, so the cap holds across them.

Inside one process waiters queue in order (an asyncio lock), and only the first polls the slot
files: a slot freed here wakes it at once; one freed by another process is seen at the next
poll. While it waits, a command holds a lock on `<directory>/waiting/<key>`, so any process
can tell that a sandbox is "waiting for a sandbox slot" (`Sandbox/info`); a mark whose holder
died is not locked, so it never shows a waiter that is gone.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

POLL_S = 0.05  # how often the first waiter looks for a slot another process freed


@dataclass(frozen=True)
class SlotUse:
    """How the slots are used right now, host-wide."""

    total: int
    in_use: int
    waiting: int


@dataclass
class _Queue:
    """This process's waiters on one event loop: in line behind `lock`, woken by `freed`."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    freed: asyncio.Event = field(default_factory=asyncio.Event)


class CommandSlots:
    def __init__(self, directory: Path, count: int) -> None:
        if count < 1:
            raise ValueError(f"at least one command slot is needed, not {count}")
        self.directory, self.count = Path(directory), count
        (self.directory / "waiting").mkdir(parents=True, exist_ok=True, mode=0o700)
        # asyncio's lock and event belong to one loop; a backend may outlive a loop (tests).
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = weakref.WeakKeyDictionary()

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[int]:
        """Hold a slot for the body of the `async with`; wait for one first if all are taken.
        `key` names the waiter (a sandbox id) for `waiting_for`."""
        # Straight to a free slot only when nobody here waits already: the line is first come, first served.
        fd, index = (None, -1) if self._queue().lock.locked() else self._try_take()
        if fd is None:
            fd, index = await self._wait(key)
        try:
            yield index
        finally:
            os.close(fd)  # releases the lock
            self._queue().freed.set()

    def waiting_for(self, key: str) -> bool:
        """Whether a command of `key` is waiting for a slot (in any process on this host)."""
        return _locked(self.directory / "waiting" / _file_name(key))

    def use(self) -> SlotUse:
        """How many slots are held and how many commands wait, host-wide."""
        in_use = 0
        for index in range(self.count):
            fd, _ = self._try_one(index)
            if fd is None:
                in_use += 1
            else:
                os.close(fd)
        waiting = sum(1 for mark in (self.directory / "waiting").iterdir() if _locked(mark))
        return SlotUse(total=self.count, in_use=in_use, waiting=waiting)

    def _queue(self) -> _Queue:
        loop = asyncio.get_running_loop()
        if loop not in self._queues:
            self._queues[loop] = _Queue()
        return self._queues[loop]

    async def _wait(self, key: str) -> tuple[int, int]:
        mark = self.directory / "waiting" / _file_name(key)
        mark_fd: int | None = os.open(mark, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(mark_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another command of this key waits already (a cut-off attempt's)
            os.close(mark_fd)
            mark_fd = None
        queue = self._queue()
        try:
            async with queue.lock:
                while True:
                    fd, index = self._try_take()
                    if fd is not None:
                        return fd, index
                    queue.freed.clear()
                    try:
                        await asyncio.wait_for(queue.freed.wait(), POLL_S)
                    except TimeoutError:
                        pass
        finally:
            if mark_fd is not None:
                mark.unlink(missing_ok=True)
                os.close(mark_fd)

    def _try_take(self) -> tuple[int | None, int]:
        for index in range(self.count):
            fd, _ = self._try_one(index)
            if fd is not None:
                return fd, index
        return None, -1

    def _try_one(self, index: int) -> tuple[int | None, int]:
        fd = os.open(self.directory / f"slot-{index}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None, index
        return fd, index


def _file_name(key: str) -> str:
    return key.replace("/", "_")


def _locked(path: Path) -> bool:
    """Whether some process holds `path`'s lock (a missing file is not locked)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
