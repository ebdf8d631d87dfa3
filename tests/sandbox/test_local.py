"""Local-backend specifics: configuration, refusing to run unprotected by accident, where the
sandbox root may live, stopping operations across worker processes, and snapshot formats."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest
import zstandard

import sandbox.machine
from sandbox import LocalLimits, create_backend, ops
from sandbox.machine import SandboxUnprotected
from sandbox.output import KEEP_OUTPUTS, OUTPUTS_DIR

from .conftest import TICKER, MakeBackend, Run


def test_limits_come_from_sandbox_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = LocalLimits()
    for name, value in {"SANDBOX_TTL_S": "3600", "SANDBOX_PIDS_MAX": "64", "SANDBOX_MEMORY_MB": "512",
                        "SANDBOX_ALLOW_UNPROTECTED": "1", "SANDBOX_BACKEND": "local", "SANDBOX_TMP_MB": ""}.items():
        monkeypatch.setenv(name, value)

    limits = LocalLimits()

    assert (limits.ttl_s, limits.pids_max, limits.memory_mb, limits.allow_unprotected) == (3600, 64, 512, True)
    assert limits.tmp_mb == defaults.tmp_mb  # blank means unset
    monkeypatch.setenv("SANDBOX_TTL_S", "none")
    assert LocalLimits().ttl_s is None
    assert LocalLimits(pids_max=32).pids_max == 32  # by name, in code


def test_a_bad_limit_names_its_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_PIDS_MAX", "lots")
    with pytest.raises(ValueError, match="SANDBOX_PIDS_MAX"):
        LocalLimits()


def test_an_unknown_backend_kind_is_refused(sandbox_root: Path) -> None:
    with pytest.raises(ValueError, match="unknown sandbox backend 'e2b'"):
        create_backend("e2b", sandbox_root)


def test_expiry_wipes_the_workspace_from_disk(local: MakeBackend, run: Run, sandbox_root: Path) -> None:
    backend = local(ttl_s=1)
    box = run(backend.create("box"))
    run(backend.write_file(box.sandbox_id, "data.txt", "x"))
    workspace = next(sandbox_root.glob("*/box/project"))

    run(backend.create("other"))  # a create sweeps expired sandboxes (at most once a TTL or 10 s)...
    assert workspace.exists()
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


def test_the_sandbox_root_may_sit_in_a_directory_only_root_can_enter(tmp_path: Path, run: Run) -> None:
    private = tmp_path / "clone"
    private.mkdir(mode=0o700)  # as a clone under /root, in a 0750 home, or in `mktemp -d`
    backend = create_backend("local", private / ".data" / "sandboxes", LocalLimits())
    sid = run(backend.create("box")).sandbox_id

    result = run(backend.exec(sid, "echo made > out.txt && id -u", 30))

    assert (result.exit_code, result.stdout) == (0, "1000\n"), result
    assert run(backend.read_file(sid, "out.txt", 100)) == "made\n"
    assert (private / ".data" / "sandboxes").stat().st_mode & 0o777 == 0o700  # nothing was opened up
    backend.close()  # type: ignore[attr-defined]


ATTEMPT = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from sandbox import LocalLimits, create_backend

    async def main():
        backend = create_backend("local", Path(sys.argv[1]), LocalLimits())
        sid = (await backend.create("shared")).sandbox_id
        print(sid, flush=True)
        result = await backend.exec(sid, sys.argv[2], 600, op_id="op-1")
        print(result.exit_code, flush=True)
        sys.stdin.readline()

    asyncio.run(main())
""")


def test_stop_op_stops_a_command_started_by_a_worker_that_lives_on(sandbox_root: Path, run: Run) -> None:
    """The real case: the first attempt's worker lost its connection to Restate but never
    noticed, so its exec is still waiting for the command. The next attempt, in another
    worker process, stops it."""
    root = sandbox_root / "shared"
    first = subprocess.Popen([sys.executable, "-c", ATTEMPT, str(root), TICKER], cwd=Path(__file__).parents[2],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert first.stdout is not None and first.stdin is not None
    sid = first.stdout.readline().strip()
    ticks = root / "shared" / "project" / "ticks.txt"
    deadline = time.monotonic() + 20
    while not ticks.exists() or ticks.read_text().count("tick") < 2:
        assert time.monotonic() < deadline and first.poll() is None, "the command never ticked"
        time.sleep(0.05)
    second = create_backend("local", root, LocalLimits())

    run(second.stop_op(sid, "op-1"))

    stopped_at = ticks.read_text()
    time.sleep(0.5)
    assert ticks.read_text() == stopped_at
    assert first.stdout.readline() == "137\n"  # its exec saw the command killed...
    assert first.poll() is None  # ...and the worker itself lives on
    first.stdin.close()
    assert first.wait(10) == 0
    second.close()  # type: ignore[attr-defined]


def test_a_stale_op_record_never_kills_an_unrelated_process(local: MakeBackend, run: Run,
                                                            sandbox_root: Path) -> None:
    backend = local()
    sid = run(backend.create("box")).sandbox_id
    ops_dir = next(sandbox_root.glob("*/box")) / "ops"
    bystander = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        now = ops.Proc.of(bystander.pid)
        assert now is not None
        earlier = ops.Proc(pid=bystander.pid, start=now.start - 1)  # the pid, reused since
        # A record whose worker died long ago, its pid taken by the bystander.
        ops.begin(ops_dir, "op-2", ops.OpRecord(sandbox_id=sid, worker=earlier))

        run(backend.stop_op(sid, "op-2"))

        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_an_op_stopped_before_it_started_never_starts(local: MakeBackend, run: Run) -> None:
    """A first attempt that stalls between its intent and its exec, while the next attempt stops it."""
    backend = local()
    sid = run(backend.create("box")).sandbox_id

    run(backend.stop_op(sid, "op-1"))
    late = run(backend.exec(sid, "touch ran", 30, op_id="op-1"))

    assert late.exit_code == 137 and "not started" in late.stderr
    assert run(backend.list_files(sid, "", 10)) == []
    run(backend.delete_markers(sid, "op-"))  # the operation is forgotten with its markers
    assert run(backend.exec(sid, "touch ran", 30, op_id="op-1")).exit_code == 0


def test_a_snapshot_from_before_markers_restores_as_workspace_only(local: MakeBackend, run: Run,
                                                                   sandbox_root: Path) -> None:
    backend = local()
    old = sandbox_root / "old"
    (old / "markers").mkdir(parents=True)
    (old / "markers" / "op-1.result").write_text("a workspace file")
    (old / "main.py").write_text("print('hi')\n")
    archive_path = next(sandbox_root.glob("*/snapshots")) / "old-snap.tar.zst"
    with open(archive_path, "wb") as raw, zstandard.ZstdCompressor().stream_writer(raw) as zst, \
            tarfile.open(fileobj=zst, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in ("main.py", "markers", "markers/op-1.result"):  # the workspace at the top level
            tar.add(old / name, arcname=name, recursive=False)

    sid = run(backend.create("box", "old-snap")).sandbox_id

    assert run(backend.read_file(sid, "main.py", 100)) == "print('hi')\n"
    assert run(backend.read_file(sid, "markers/op-1.result", 100)) == "a workspace file"
    assert run(backend.read_marker(sid, "op-1.result")) is None  # a workspace file never becomes a marker


def test_pruning_saved_outputs_leaves_other_files_alone(local: MakeBackend, run: Run) -> None:
    backend = local()
    sid = run(backend.create("box")).sandbox_id
    run(backend.write_file(sid, f"{OUTPUTS_DIR}/notes.txt", "mine"))

    for _ in range(KEEP_OUTPUTS + 1):
        run(backend.exec(sid, "seq 1 5000", 30))

    names = {e.path.rpartition("/")[2] for e in run(backend.list_files(sid, OUTPUTS_DIR, 100))}
    assert "notes.txt" in names and len(names) == KEEP_OUTPUTS + 1
