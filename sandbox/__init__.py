"""Sandbox backends: where the agent's commands and file edits happen.

`create_backend(kind, root)` gives a `SandboxBackend` (sandbox/protocol.py). The contract
every backend keeps is in docs/sandbox-backends.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

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
    SandboxUnavailable,
    SnapshotMissing,
    WorkspaceFull,
)

if TYPE_CHECKING:
    from sandbox.modal_backend import ModalLimits

KINDS = ("local", "modal")


def create_backend(kind: str, root: Path, limits: LocalLimits | ModalLimits | None = None) -> SandboxBackend:
    """The backend called `kind`, with `limits` (default: from the environment).

    "local" keeps its sandboxes under `root`, takes LocalLimits (SANDBOX_*), and raises
    SandboxUnprotected on a machine where it cannot isolate commands (see sandbox/machine.py).
    "modal" runs them in Modal (`root` is unused), in the app named by MODAL_APP_NAME, with
    ModalLimits (MODAL_SANDBOX_*); Modal's SDK is imported only then.
    """
    if kind == "local":
        from sandbox.local import LocalBackend

        if limits is not None and not isinstance(limits, LocalLimits):
            raise TypeError(f"the local backend takes LocalLimits, not {type(limits).__name__}")
        return LocalBackend(root, limits if limits is not None else LocalLimits())
    if kind == "modal":
        from sandbox.modal_backend import DEFAULT_APP_NAME, ModalBackend, ModalLimits

        if limits is not None and not isinstance(limits, ModalLimits):
            raise TypeError(f"the Modal backend takes ModalLimits, not {type(limits).__name__}")
        return ModalBackend(os.environ.get("MODAL_APP_NAME") or DEFAULT_APP_NAME,
                            limits if limits is not None else ModalLimits())
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
    "SandboxUnavailable",
    "SandboxUnprotected",
    "SnapshotMissing",
    "WorkspaceFull",
    "create_backend",
]
