"""The workspace size cap.

The workspace is a plain host directory (no loop mount, so nothing outlives a crash but
files), so the cap is enforced by measuring rather than by the filesystem:

- Usage is the sum over a walk of the workspace (sandbox/paths.disk_usage); the last figure
  is cached per sandbox for a short while.
- While a command runs, `statvfs` of the host filesystem is polled every 50 ms, which costs
  nothing. Only when that filesystem has grown by more than the headroom left under the cap
  is the workspace walked; if it is over, the command is killed.
- After a command, the workspace is walked again only if the filesystem grew by more than
  the headroom.

A command may overshoot by what it writes within one poll (about 50 ms, longer when each
walk of a huge workspace is slow), and no single file can exceed RLIMIT_FSIZE. Once over
the cap, writes through the file API fail with WorkspaceFull and every command result says
so; commands that shrink the workspace (`rm`) run normally, and one that keeps growing it is
killed at its next poll.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from sandbox.paths import disk_usage

_CACHE_S = 30.0  # trust a measured figure this long (another worker may share the workspace)
_POLL_S = 0.05
_MAX_POLL_S = 2.0


def _fs_used(path: Path) -> int:
    while not path.exists() and path != path.parent:  # a workspace wiped mid-command
        path = path.parent
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


class WorkspaceQuota:
    def __init__(self, cap_bytes: int) -> None:
        self.cap = cap_bytes
        self._known: dict[str, tuple[int, float]] = {}  # sandbox id -> (bytes, measured at)

    async def measure(self, key: str, workspace: Path) -> int:
        try:
            usage = await asyncio.to_thread(disk_usage, workspace)
        except FileNotFoundError:  # wiped (terminated, expired) while we looked
            usage = 0
        self._known[key] = (usage, time.monotonic())
        return usage

    async def usage(self, key: str, workspace: Path) -> int:
        """The cached figure (an exact measure or an upper bound), or a fresh measure."""
        hit = self._known.get(key)
        if hit and time.monotonic() - hit[1] < _CACHE_S:
            return hit[0]
        return await self.measure(key, workspace)

    def grew(self, key: str, delta: int) -> int:
        """Add `delta` to the cached figure (keeping it an upper bound); return the new figure."""
        usage, at = self._known.get(key, (0, 0.0))
        self._known[key] = (usage + delta, at)
        return usage + delta

    def forget(self, key: str) -> None:
        self._known.pop(key, None)

    def watch(self, key: str, workspace: Path, on_exceeded: Callable[[], None]) -> CommandWatch:
        return CommandWatch(self, key, workspace, on_exceeded)


class CommandWatch:
    """`async with quota.watch(...) as w:` around one command; afterwards `w.usage` is the
    workspace size (exact, or an upper bound) and `w.exceeded` says whether it broke the cap."""

    def __init__(self, quota: WorkspaceQuota, key: str, workspace: Path, on_exceeded: Callable[[], None]) -> None:
        self._quota, self._key, self._workspace, self._on_exceeded = quota, key, workspace, on_exceeded
        self.usage = 0
        self.exceeded = False
        self.killed = False

    async def __aenter__(self) -> CommandWatch:
        self.usage = await self._quota.usage(self._key, self._workspace)
        # Over the cap already: commands that shrink the workspace may run, growing ones may not.
        self._limit = max(self._quota.cap, self.usage)
        self._start_fs = _fs_used(self._workspace)
        self._task = asyncio.create_task(self._poll())
        return self

    async def _poll(self) -> None:
        anchor_fs, anchor_usage, interval = self._start_fs, self.usage, _POLL_S
        while True:
            await asyncio.sleep(interval)
            if _fs_used(self._workspace) - anchor_fs <= self._limit - anchor_usage:
                continue
            started = time.monotonic()
            anchor_fs = _fs_used(self._workspace)
            anchor_usage = await self._quota.measure(self._key, self._workspace)
            if anchor_usage > self._limit:
                self.killed = True
                self._on_exceeded()
                return
            interval = min(_MAX_POLL_S, max(_POLL_S, 10 * (time.monotonic() - started)))

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self._task.cancel()
        if exc_type is not None:
            self._quota.forget(self._key)  # unknown now; the next command measures afresh
            return
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        grown = _fs_used(self._workspace) - self._start_fs
        if self.killed or grown > self._limit - self.usage:
            self.usage = await self._quota.measure(self._key, self._workspace)
        else:
            self.usage = self._quota.grew(self._key, max(grown, 0))
        self.exceeded = self.usage > self._quota.cap
