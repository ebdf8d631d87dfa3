"""The local backend's resource limits, one documented field per limit.

Every field can be set from the environment as `SANDBOX_<FIELD>` (for example
`SANDBOX_PIDS_MAX=128`); docs/sandbox-backends.md has the table of how each one is enforced.
"""

from __future__ import annotations

import os

from pydantic import AliasGenerator, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MB = 1024 * 1024


def env_config(prefix: str) -> SettingsConfigDict:
    """pydantic-settings configuration for a settings class whose every field is read from the
    variable `<prefix><FIELD>` (the same mechanism as app/config.py). A blank variable means
    unset, and a bad value is an error that names its variable."""
    return SettingsConfigDict(
        frozen=True, env_ignore_empty=True, populate_by_name=True, extra="ignore",
        alias_generator=AliasGenerator(validation_alias=lambda field: f"{prefix}{field.upper()}"))


def none_if_blank(value: object) -> object:
    """For optional settings given by environment: "" and "none" mean unset."""
    if isinstance(value, str) and value.strip().lower() in ("", "none"):
        return None
    return value


class LocalLimits(BaseSettings):
    model_config = env_config("SANDBOX_")

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
    max_running_commands: int = Field(
        default_factory=lambda: max(8, 4 * (os.cpu_count() or 1)), ge=1,
        description="Commands running at once on this host, across every worker process that shares "
        "the data dir; more wait in line for a slot (sandbox/slots.py). Default: 4 per CPU, at least 8.")
    supervisor_timeout_s: float = Field(
        default=10, gt=0,
        description="A sandbox's supervisor that answers neither a request nor then a ping within this "
        "many seconds each is taken for frozen: the sandbox's processes are stopped and started afresh.")
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
