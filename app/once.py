"""Exactly-once commands: journal before effect, reconcile on retry.

`Sandbox.exec` runs a command inside a journaled step, and a step is at-least-once: the one in
flight when a process died runs again. So the step leaves markers in the sandbox's own storage
(they survive a worker crash and travel with snapshots), keyed by the tool call's deterministic
operation id: an intent before the command and the result after. A retry of the same
operation returns the recorded result, and an intent without a result means the command may
have partly run: it is reported as outcome-unknown instead of being run a second time.
docs/architecture.md has the sequence diagram.
"""

from __future__ import annotations

from app.models import ExecOut
from sandbox import SandboxBackend
from sandbox.protocol import FileMissing, WorkspaceFull

MAX_MARKER_BYTES = 256_000

OPS_DIR = ".agent/ops"
OUTCOME_UNKNOWN = (
    "outcome unknown: this command was started but the platform crashed before its result was "
    "recorded. It may or may not have run. Inspect the workspace before retrying it."
)


async def exec_once(backend: SandboxBackend, sandbox_id: str, op_id: str, command: str,
                    timeout_s: float) -> dict:
    """Run `command` at most once per `op_id`; see the module docstring."""
    marker = f"{OPS_DIR}/{op_id.replace('/', '_')}"
    recorded = await _read_marker(backend, sandbox_id, f"{marker}.result")
    if recorded is not None:
        return ExecOut.model_validate_json(recorded).model_dump()
    if await _read_marker(backend, sandbox_id, f"{marker}.intent") is not None:
        return ExecOut(exit_code=-1, stdout="", stderr=OUTCOME_UNKNOWN, outcome_unknown=True).model_dump()
    await backend.write_file(sandbox_id, f"{marker}.intent", command)
    result = await backend.exec(sandbox_id, command, timeout_s)
    out = ExecOut(**result.model_dump())
    try:
        await backend.write_file(sandbox_id, f"{marker}.result", out.model_dump_json())
    except WorkspaceFull:
        # The command ran (and filled the workspace); report what it did. Only a crash right
        # now would make a retry see outcome-unknown, which is still the truth.
        pass
    return out.model_dump()


async def _read_marker(backend: SandboxBackend, sandbox_id: str, path: str) -> str | None:
    try:
        return await backend.read_file(sandbox_id, path, MAX_MARKER_BYTES)
    except FileMissing:
        return None
