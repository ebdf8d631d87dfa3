"""The local backend's resource limits, one documented field per limit.

Every field can be set from the environment as `SANDBOX_<FIELD>` (for example
`SANDBOX_PIDS_MAX=128`); docs/sandbox-backends.md has the table of how each one is enforced.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MB = 1024 * 1024


def none_if_blank(value: object) -> object:
    """For optional settings given by environment: "" and "none" mean unset."""
    if isinstance(value, str) and value.strip().lower() in ("", "none"):
        return None
    return value


class LocalLimits(BaseModel):
    model_config = ConfigDict(frozen=True)

    ttl_s: float | None = Field(
        default=None, gt=0,
        description="Seconds a sandbox lives after create; then it is gone, as a VM would be. "
        "Unset or 'none': no expiry.")
    pids_max: int = Field(default=256, ge=8, description="Processes and threads per command (cgroup pids.max).")
    memory_mb: int = Field(default=1024, ge=16, description="RAM per command, /tmp included (cgroup memory limit).")
    cpu_seconds: int = Field(default=600, ge=1, description="CPU time per process (RLIMIT_CPU).")
    file_size_mb: int = Field(default=512, ge=1, description="Largest file a command may write (RLIMIT_FSIZE).")
    open_files: int = Field(default=1024, ge=64, description="Open file descriptors per process (RLIMIT_NOFILE).")
    workspace_mb: int = Field(default=1024, ge=1, description="Size cap of /project, the persistent workspace.")
    tmp_mb: int = Field(default=256, ge=1, description="Size of the per-command tmpfs at /tmp.")
    output_head_bytes: int = Field(default=8192, ge=0, description="Bytes kept from the start of each stream.")
    output_tail_bytes: int = Field(default=8192, ge=0, description="Bytes kept from the end of each stream.")
    max_output_mb: int = Field(
        default=16, ge=1,
        description="Full output kept per stream when it is truncated; the rest is read and discarded.")
    host_uid: int = Field(default=65534, ge=0, description="Unprivileged host uid that sandboxed commands run as.")
    host_gid: int = Field(default=65534, ge=0, description="Host gid that sandboxed commands run as.")
    allow_unprotected: bool = Field(
        default=False,
        description="Run even when a protection (bwrap, cgroups, uid switch) is unavailable, with a loud warning.")

    _no_ttl = field_validator("ttl_s", mode="before")(none_if_blank)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LocalLimits:
        """Defaults overridden by any `SANDBOX_<FIELD>` variable that is set."""
        return from_env(cls, "SANDBOX_", "sandbox limits", environ)


M = TypeVar("M", bound=BaseModel)



def from_env(model: type[M], prefix: str, what: str, environ: Mapping[str, str] | None = None) -> M:
    """Build `model` from its defaults and any `<prefix><FIELD>` variable that is set; a bad
    value is a ValueError naming the variable."""
    environ = os.environ if environ is None else environ
    names = {field: f"{prefix}{field.upper()}" for field in model.model_fields}
    values = {field: environ[name] for field, name in names.items() if name in environ}
    try:
        return model(**values)
    except ValidationError as e:
        bad = ", ".join(f"{names.get(str(err['loc'][0]), err['loc'][0])}: {err['msg']}" for err in e.errors())
        raise ValueError(f"invalid {what} in the environment ({bad})") from None

