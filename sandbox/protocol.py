"""The sandbox backend contract.

A backend only performs vendor operations on one sandbox at a time. It keeps no lifecycle
state of its own: the `Sandbox` virtual object (app/sandbox_service.py) owns the state machine
and journals every call. Because a journaled step is at-least-once, every operation here must
be retry-safe: a retry may follow a success that was never recorded.

See docs/sandbox-backends.md for what a new backend has to do.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel


# Set for every command, whatever the backend. No bytecode caches in the workspace: Python
# checks a cached module against its source's size and mtime in whole seconds, so a file edited
# to the same size within a second (`x + 2` to `x * 2`) would still run its old code.
COMMAND_DEFAULTS = {"PYTHONDONTWRITEBYTECODE": "1"}


class SandboxError(Exception):
    """Base class for errors a backend reports about a sandbox."""


class SandboxGone(SandboxError):
    """The sandbox no longer exists (expired, terminated, killed). Recreate it from a snapshot."""


class SandboxUnavailable(SandboxError):
    """The provider could not be reached or answered with an outage, and the sandbox was NOT
    confirmed gone. Transient: the caller retries the same sandbox and must never recreate
    it (that would roll the workspace back to the last snapshot for nothing)."""


class PathRejected(SandboxError):
    """A file path is absolute, climbs out with `..`, or resolves outside the workspace."""


class FileMissing(SandboxError):
    """The file or directory does not exist inside the workspace."""


class SnapshotMissing(FileMissing):
    """`create` was given a snapshot id that does not exist (deleted, or never taken)."""


class WorkspaceFull(SandboxError):
    """A write would take the workspace over its size cap."""


class ExecResult(BaseModel):
    """What one command produced. Output is capped: head and tail are kept around a marker."""

    exit_code: int
    stdout: str
    stderr: str
    truncated: bool = False
    # The command hit its timeout and was killed with everything it started; exit_code is 124.
    timed_out: bool = False
    # Workspace-relative path of the full output (both streams, up to a hard cap) when
    # `truncated` is true; None if it could not be saved (the marker then says why).
    full_output_path: str | None = None
    # Processes still running in the sandbox when the command returned, outside every running
    # command: what this or earlier commands left in the background (a dev server). They run
    # until the sandbox stops. None when the backend cannot tell.
    background: int | None = None


class FileEntry(BaseModel):
    path: str  # relative to the workspace root
    kind: str  # "file" | "dir" | "symlink" | "other" (FIFOs, sockets)
    size: int


class SandboxInfo(BaseModel):
    """A live sandbox as the backend created it."""

    sandbox_id: str
    # Unix time (seconds) after which the backend may kill the sandbox; None when it has no TTL.
    expires_at: float | None = None


@runtime_checkable
class SandboxBackend(Protocol):
    """Vendor operations. `name` values are deterministic, so a retried create finds its own."""

    kind: str

    async def create(self, name: str, snapshot_id: str | None = None) -> SandboxInfo:
        """Create the sandbox `name`, restoring `snapshot_id` if given.

        If a live sandbox with this name already exists (a retry after an unrecorded
        success), return it unchanged instead of failing. After the previous one was
        terminated or expired, a new one with a new `sandbox_id` is made. Raises
        SnapshotMissing if `snapshot_id` does not exist.
        """
        ...

    async def exec(self, sandbox_id: str, command: str, timeout_s: float, op_id: str | None = None) -> ExecResult:
        """Run `command` with `sh -c` in the workspace. Raises SandboxGone.

        `op_id` (a marker name, see `write_marker`) labels the run so that `stop_op` can find
        it again from another attempt, even from another worker process.

        A command killed by signal N reports exit_code 128+N, like a shell. A command that
        outlives `timeout_s` is killed with everything it started: timed_out=True,
        exit_code=124. Limits the backend enforced are explained in `[sandbox] ...` lines at
        the end of stderr. If the sandbox dies (TTL, terminate) mid-command: SandboxGone.
        """
        ...

    async def stop_op(self, sandbox_id: str, op_id: str) -> None:
        """Make sure the command started by `exec(..., op_id=op_id)` is no longer running:
        kill its whole process group if it still runs, and return only once it has stopped.
        Nothing running under that id (never started, finished, died with its worker) is a
        success. Called before an interrupted command is reported as outcome-unknown, so a
        retry never runs beside a still-running original. Raises SandboxGone."""
        ...

    async def write_marker(self, sandbox_id: str, name: str, data: str, *, durable: bool = True) -> None:
        """Store a small record (at most 1 MB) under `name` ([A-Za-z0-9._~-], at most 200
        characters) in the sandbox's private area: outside the workspace, where commands
        cannot delete or rewrite it, and carried in snapshots like the workspace. Atomic:
        a reader sees the old record or the new one, never a part, whatever process dies.
        `durable=False` may skip flushing it to disk: after a host crash such a record
        may be missing or cut short. Raises SandboxGone."""
        ...

    async def create_marker(self, sandbox_id: str, name: str, data: str) -> bool:
        """Store a record like `write_marker` (durably), but only if none of that name exists:
        True if this call created it, False if one was there already (it is left as it was).
        Atomic against a concurrent create of the same name: exactly one of them gets True.
        Raises SandboxGone."""
        ...

    async def read_marker(self, sandbox_id: str, name: str) -> str | None:
        """The record stored under `name`, or None if there is none. Raises SandboxGone."""
        ...

    async def delete_markers(self, sandbox_id: str, prefix: str) -> int:
        """Delete every record whose name starts with `prefix`; return how many went.
        Raises SandboxGone."""
        ...

    async def write_file(self, sandbox_id: str, path: str, content: str) -> None:
        """Write a text file (creating parent directories). Raises PathRejected, WorkspaceFull, SandboxGone."""
        ...

    async def read_file(self, sandbox_id: str, path: str, max_bytes: int) -> str:
        """Read a text file (UTF-8, undecodable bytes replaced). If it is longer than
        `max_bytes`, the first `max_bytes` are followed by a `... [truncated: ...]` line.
        Raises PathRejected, FileMissing, SandboxGone."""
        ...

    async def list_files(self, sandbox_id: str, path: str, max_entries: int) -> list[FileEntry]:
        """List a directory recursively, at most `max_entries` entries (breadth first, so
        the top levels survive the cap), sorted by path. Symlinks are listed, not followed.
        Raises PathRejected, FileMissing, SandboxGone."""
        ...

    async def snapshot(self, sandbox_id: str, snapshot_name: str) -> str:
        """Snapshot the workspace; return a snapshot id usable by `create`. Idempotent per
        name: if the snapshot already exists it is returned as it is, even if the sandbox
        has gone since. Raises SandboxGone."""
        ...

    async def terminate(self, sandbox_id: str) -> None:
        """Stop the sandbox. Terminating a sandbox that is already gone is a success."""
        ...

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete a snapshot. Deleting one that is already gone is a success."""
        ...

    # A tree is an uncompressed tar of a workspace alone, with relative member names: only
    # directories, regular files and symlinks (a hard link in one is left out).

    async def import_snapshot(self, snapshot_name: str, tree: bytes) -> str:
        """Make a snapshot whose workspace is `tree` (checked by the caller: nothing in it leaves
        the tree) and no markers; return its id, usable by `create`. Idempotent per name, like
        `snapshot`."""
        ...

    async def snapshot_tree(self, snapshot_id: str) -> bytes:
        """The workspace a snapshot holds, as a tree. Raises SnapshotMissing."""
        ...

    async def workspace_tree(self, sandbox_id: str) -> bytes:
        """The live workspace as a tree (no symlink followed). Raises SandboxGone."""
        ...
