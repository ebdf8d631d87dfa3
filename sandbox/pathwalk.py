"""The workspace path rules, as a walk that does no I/O of its own.

Every backend resolves a workspace-relative path the same way: one component at a time,
following symlinks by hand while they stay in the workspace (a target under /project is taken
as the workspace, as commands see it), and rejecting anything that leaves it. `PathWalk` holds
those rules; the backend answers its questions with its own lookups: sandbox/paths.py with
`os.stat` on open directory descriptors, sandbox/modal_backend.py with `filesystem.stat`,
several components in one round trip.

A caller's loop:

    walk = PathWalk(path, follow_final=True)
    while (name := walk.next()) is not None:
        if name == "..":                       # only symlink targets produce these
            walk.up()                          # leave the current directory
            continue
        move = walk.see(<kind of `name` in the current directory>)
        if move is Move.FOLLOW: walk.follow(<its target>)  # True: back at the workspace root
        if move is Move.MISSING: raise walk.missing()      # or create the directory and look again
        if move is Move.INTO: <enter `name`>
        if move is Move.END: <`name` in the current directory is the answer>
    # the walk ended at a directory: `walk.done`
"""

from __future__ import annotations

import itertools
from collections import deque
from enum import Enum

from sandbox.protocol import FileMissing, PathRejected

MOUNT_POINT = "/project"  # where the workspace appears inside the sandbox
MAX_LINKS = 40  # like the kernel's limit on nested symlinks


class Kind(Enum):
    """What a lookup found at a path component (a symlink is not followed to find out)."""

    MISSING = "missing"
    DIR = "dir"
    LINK = "link"
    OTHER = "other"  # a regular file, FIFO, socket...


class Move(Enum):
    """What the caller does next, after `PathWalk.see`."""

    INTO = "into"  # an intermediate directory: continue inside it
    FOLLOW = "follow"  # a symlink to follow: pass its target to `PathWalk.follow`
    MISSING = "missing"  # an intermediate directory does not exist: create it and look again, or fail
    END = "end"  # the final component (existing or not): it, in the current directory, is the answer


def split_path(path: str) -> list[str]:
    """Validate a workspace-relative path and split it. "" and "." mean the workspace itself."""
    if not isinstance(path, str):
        raise PathRejected(f"path must be a string, not {type(path).__name__}")
    if "\x00" in path:
        raise PathRejected("path contains a NUL byte")
    if path.startswith("/"):
        raise PathRejected(f"{path!r} is absolute; give a path relative to the workspace")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathRejected(f"{path!r} contains '..'; paths may not climb out of the workspace")
    return parts


def link_parts(target: str, shown: str) -> tuple[bool, list[str]]:
    """(restart at the workspace root?, components) for a symlink target met walking `shown`."""
    if target.startswith("/"):
        if target != MOUNT_POINT and not target.startswith(MOUNT_POINT + "/"):
            raise PathRejected(f"{shown!r} is a symlink to {target!r}, outside the workspace")
        return True, [p for p in target[len(MOUNT_POINT):].split("/") if p not in ("", ".")]
    return False, [p for p in target.split("/") if p not in ("", ".")]


class PathWalk:
    """One walk of `path`. `done` is the directory reached so far, as components below the
    workspace root; the component at the front is the next one to look at."""

    def __init__(self, path: str, *, follow_final: bool) -> None:
        self.path = path
        self.follow_final = follow_final  # a final symlink is followed (read, list) or not (write)
        self.done: list[str] = []
        self._pending = deque(split_path(path))
        self._links = 0

    def next(self) -> str | None:
        """The component to look at next, or None when the walk ended at the directory `done`."""
        return self._pending[0] if self._pending else None

    def ahead(self) -> list[str]:
        """The next components up to the first "..". They can all be looked up at once, but the
        answers past a symlink describe another path and must be dropped."""
        return list(itertools.takewhile(lambda part: part != "..", self._pending))

    def remaining(self) -> list[str]:
        """Every component not walked yet, the next one first."""
        return list(self._pending)

    def up(self) -> None:
        """Take the ".." at the front: leave the current directory."""
        self._pending.popleft()
        if not self.done:
            raise PathRejected(f"{self.path!r} resolves outside the workspace")
        self.done.pop()

    def see(self, kind: Kind) -> Move:
        """Say what the component at the front is; the answer says what to do with it."""
        name, last = self._pending[0], len(self._pending) == 1
        if kind is Kind.MISSING and not last:
            return Move.MISSING  # left at the front, so it is looked at again once created
        if kind is Kind.LINK and (self.follow_final or not last):
            return Move.FOLLOW
        self._pending.popleft()
        if last:
            return Move.END
        if kind is not Kind.DIR:
            raise FileMissing(f"{self.path!r} does not exist ({name!r} is not a directory)")
        self.done.append(name)
        return Move.INTO

    def follow(self, target: str) -> bool:
        """Replace the symlink at the front with its target. True: the target is absolute, so
        the walk starts again at the workspace root (and `done` is empty)."""
        self._pending.popleft()
        self._links += 1
        if self._links > MAX_LINKS:
            raise PathRejected(f"{self.path!r} has too many levels of symlinks")
        restart, parts = link_parts(target, self.path)
        if restart:
            self.done = []
        self._pending.extendleft(reversed(parts))
        return restart

    def missing(self) -> FileMissing:
        """The error for a missing intermediate directory (after `Move.MISSING`)."""
        return FileMissing(f"{self.path!r} does not exist (no directory {self._pending[0]!r})")
