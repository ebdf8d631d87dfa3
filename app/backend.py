"""The process's sandbox backend (sandbox/), built once from the settings."""

from __future__ import annotations

from functools import lru_cache

from app.config import settings
from sandbox import SandboxBackend, create_backend
from sandbox.slots import CommandSlots


@lru_cache(maxsize=1)
def backend() -> SandboxBackend:
    config = settings()
    return create_backend(config.sandbox_backend, config.sandbox_root)


def command_slots() -> CommandSlots | None:
    """The host-wide cap on running commands, for a backend that has one (the local backend)."""
    slots = getattr(backend(), "slots", None)
    return slots if isinstance(slots, CommandSlots) else None
