"""Sandbox backends: where the agent's commands and file edits happen.

`create_backend(kind, root)` gives a `SandboxBackend` (sandbox/protocol.py). The contract
every backend keeps is in docs/sandbox-backends.md.
"""

from __future__ import annotations

from pathlib import Path

from sandbox.limits import LocalLimits
from sandbox.machine import SandboxUnprotected
from sandbox.protocol import (
    ExecResult,
    FileEntry,
    FileMissing,
    PathRejected,
    SandboxBackend,
    SandboxError,
    SandboxGone,
    SandboxInfo,
    SnapshotMissing,
    WorkspaceFull,
)

KINDS = ("local",)


def create_backend(kind: str, root: Path, limits: LocalLimits | None = None) -> SandboxBackend:
    """The backend called `kind`. "local" keeps its sandboxes under `root`, with `limits`
    (default: from the SANDBOX_* environment), and raises SandboxUnprotected on a machine
    where it cannot isolate commands (see sandbox/machine.py)."""
    if kind == "local":
        from sandbox.local import LocalBackend

        return LocalBackend(root, limits if limits is not None else LocalLimits.from_env())
    raise ValueError(f"unknown sandbox backend {kind!r}; known: {', '.join(KINDS)}")


__all__ = [
    "ExecResult",
    "FileEntry",
    "FileMissing",
    "LocalLimits",
    "PathRejected",
    "SandboxBackend",
    "SandboxError",
    "SandboxGone",
    "SandboxInfo",
    "SandboxUnprotected",
    "SnapshotMissing",
    "WorkspaceFull",
    "create_backend",
]
