"""Local-backend specifics: configuration, and refusing to run unprotected by accident."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import sandbox.machine
from sandbox import LocalLimits, create_backend
from sandbox.machine import SandboxUnprotected

from .conftest import MakeBackend, Run


def test_limits_come_from_sandbox_env_vars() -> None:
    limits = LocalLimits.from_env({"SANDBOX_TTL_S": "3600", "SANDBOX_PIDS_MAX": "64", "SANDBOX_MEMORY_MB": "512",
                                   "SANDBOX_ALLOW_UNPROTECTED": "1", "SANDBOX_BACKEND": "local"})

    assert (limits.ttl_s, limits.pids_max, limits.memory_mb, limits.allow_unprotected) == (3600, 64, 512, True)
    assert LocalLimits.from_env({}) == LocalLimits()
    assert LocalLimits.from_env({"SANDBOX_TTL_S": "none"}).ttl_s is None


def test_a_bad_limit_names_its_env_var() -> None:
    with pytest.raises(ValueError, match="SANDBOX_PIDS_MAX"):
        LocalLimits.from_env({"SANDBOX_PIDS_MAX": "lots"})


def test_an_unknown_backend_kind_is_refused(sandbox_root: Path) -> None:
    with pytest.raises(ValueError, match="unknown sandbox backend 'e2b'"):
        create_backend("e2b", sandbox_root)


def test_expiry_wipes_the_workspace_from_disk(local: MakeBackend, run: Run, sandbox_root: Path) -> None:
    backend = local(ttl_s=1)
    box = run(backend.create("box"))
    run(backend.write_file(box.sandbox_id, "data.txt", "x"))
    workspace = next(sandbox_root.glob("*/box/project"))

    run(backend.create("other"))  # any create sweeps expired sandboxes...
    assert workspace.exists()
    import time
    time.sleep(1.2)
    run(backend.create("other-2"))

    assert not workspace.exists()  # ...so an abandoned one does not sit on disk


def test_missing_bubblewrap_stops_the_backend_at_start(sandbox_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox.machine, "bwrap_path", lambda: None)  # a machine without bwrap

    with pytest.raises(SandboxUnprotected, match="bubblewrap.*SANDBOX_ALLOW_UNPROTECTED=1"):
        create_backend("local", sandbox_root / "r", LocalLimits())


def test_allow_unprotected_runs_with_a_loud_warning(sandbox_root: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sandbox.machine, "bwrap_path", lambda: None)

    with caplog.at_level(logging.WARNING):
        backend = create_backend("local", sandbox_root / "r", LocalLimits(allow_unprotected=True))
    box = run(backend.create("box"))
    result = run(backend.exec(box.sandbox_id, "echo $HOME; id -u", 30))

    assert "SANDBOX UNPROTECTED" in caplog.text and "bubblewrap" in caplog.text
    assert result.exit_code == 0 and result.stdout.splitlines()[1] == "65534"
    run(backend.terminate(box.sandbox_id))
    backend.close()  # type: ignore[attr-defined]
