"""The contract every sandbox backend keeps (docs/sandbox-backends.md), run against each one.

Only behaviour the `Sandbox` object relies on is tested here: retry-safe lifecycle calls,
commands, files, snapshots, expiry, and the path rules of the file APIs.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import pytest

from sandbox import (
    FileEntry,
    FileMissing,
    PathRejected,
    SandboxBackend,
    SandboxGone,
    SnapshotMissing,
)
from sandbox.output import KEEP_OUTPUTS, OUTPUTS_DIR

from .conftest import TICKER, MakeBackend, Run


def test_create_gives_a_live_sandbox_and_create_again_returns_it_unchanged(backend: SandboxBackend, run: Run) -> None:
    first = run(backend.create("box"))
    run(backend.write_file(first.sandbox_id, "keep.txt", "still here"))

    again = run(backend.create("box"))  # a retried create whose first success was not recorded

    assert again == first
    assert run(backend.read_file(again.sandbox_id, "keep.txt", 100)) == "still here"


def test_exec_runs_sh_in_the_workspace(backend: SandboxBackend, run: Run) -> None:
    box = run(backend.create("box"))
    run(backend.write_file(box.sandbox_id, "in.txt", "from the file API\n"))

    result = run(backend.exec(box.sandbox_id, "cat in.txt; echo made > out.txt; echo oops >&2; exit 3", 30))

    assert (result.exit_code, result.stdout, result.stderr) == (3, "from the file API\n", "oops\n")
    assert not result.timed_out and not result.truncated
    assert run(backend.read_file(box.sandbox_id, "out.txt", 100)) == "made\n"


def test_python_runs_a_module_as_it_is_now_after_an_edit_of_the_same_size(backend: SandboxBackend, run: Run) -> None:
    # Python checks a cached module by its source's size and mtime (in seconds): an edit of the
    # same size within one second (here: the same mtime, set) must not run the old code.
    box = run(backend.create("box"))
    same_time = "touch -d '2020-01-01 00:00:00' m.py && python3 -c 'import m; print(m.X)'"
    run(backend.write_file(box.sandbox_id, "m.py", "X = 2 + 2\n"))
    first = run(backend.exec(box.sandbox_id, same_time, 30))
    run(backend.write_file(box.sandbox_id, "m.py", "X = 2 * 3\n"))
    second = run(backend.exec(box.sandbox_id, same_time, 30))

    assert (first.stdout, second.stdout) == ("4\n", "6\n")
    assert [e.path for e in run(backend.list_files(box.sandbox_id, ".", 100))] == ["m.py"]


def test_a_command_past_its_timeout_is_killed(backend: SandboxBackend, run: Run) -> None:
    box = run(backend.create("box"))

    started = time.monotonic()
    result = run(backend.exec(box.sandbox_id, "echo before; sleep 60", 1))

    assert time.monotonic() - started < 10
    assert result.timed_out and result.exit_code == 124
    assert result.stdout == "before\n"


def test_long_output_keeps_head_and_tail_and_saves_the_rest(backend: SandboxBackend, run: Run) -> None:
    box = run(backend.create("box"))

    result = run(backend.exec(box.sandbox_id, "seq 1 100000", 30))

    assert result.exit_code == 0 and result.truncated
    assert result.stdout.startswith("1\n2\n3\n") and result.stdout.endswith("99999\n100000\n")
    assert "bytes omitted" in result.stdout and len(result.stdout) < 20_000
    assert result.full_output_path is not None and result.full_output_path in result.stdout
    saved = run(backend.read_file(box.sandbox_id, result.full_output_path, 10_000_000))
    assert "\n50000\n" in saved and "\n100000\n" in saved


def test_files_are_written_read_and_listed(backend: SandboxBackend, run: Run) -> None:
    box = run(backend.create("box"))
    run(backend.write_file(box.sandbox_id, "src/pkg/mod.py", "x = 1\n"))
    run(backend.write_file(box.sandbox_id, "src/pkg/mod.py", "x = 2\n"))  # overwrite
    run(backend.write_file(box.sandbox_id, "README.md", "é" * 10))
    run(backend.exec(box.sandbox_id, "ln -s src/pkg link", 30))

    assert run(backend.read_file(box.sandbox_id, "src/pkg/mod.py", 100)) == "x = 2\n"
    assert run(backend.read_file(box.sandbox_id, "link/mod.py", 100)) == "x = 2\n"  # symlink inside: fine
    head = run(backend.read_file(box.sandbox_id, "README.md", 4))
    assert head.startswith("éé") and "truncated" in head
    listing = run(backend.list_files(box.sandbox_id, "", 100))
    assert [e for e in listing if not e.path.startswith(".agent")] == [
        FileEntry(path="README.md", kind="file", size=20),
        FileEntry(path="link", kind="symlink", size=7),
        FileEntry(path="src", kind="dir", size=listing[2].size),
        FileEntry(path="src/pkg", kind="dir", size=listing[3].size),
        FileEntry(path="src/pkg/mod.py", kind="file", size=6),
    ]
    assert [e.path for e in run(backend.list_files(box.sandbox_id, "src", 100))] == ["src/pkg", "src/pkg/mod.py"]
    assert len(run(backend.list_files(box.sandbox_id, "", 2))) == 2
    with pytest.raises(FileMissing):
        run(backend.read_file(box.sandbox_id, "nope.txt", 100))
    with pytest.raises(FileMissing):
        run(backend.list_files(box.sandbox_id, "nope", 100))


def test_a_snapshot_restores_into_a_new_sandbox(backend: SandboxBackend, run: Run) -> None:
    box = run(backend.create("box"))
    run(backend.write_file(box.sandbox_id, "app/main.sh", "echo restored\n"))
    run(backend.exec(box.sandbox_id, "chmod +x app/main.sh && ln -s app/main.sh run && mkdir empty", 30))

    snap = run(backend.snapshot(box.sandbox_id, "box-snap-1"))
    assert run(backend.snapshot(box.sandbox_id, "box-snap-1")) == snap  # a retried snapshot
    run(backend.terminate(box.sandbox_id))
    copy = run(backend.create("copy", snap))

    result = run(backend.exec(copy.sandbox_id, "./run && test -d empty && test -L run && echo ok", 30))
    assert result.stdout == "restored\nok\n", result


def test_an_older_snapshot_restores_into_a_new_sandbox_while_the_original_goes_on(backend: SandboxBackend,
                                                                                run: Run) -> None:
    """What rewind and fork rely on: any earlier snapshot, not only the newest, comes back
    exactly, in a sandbox of its own, and the sandbox it was taken from is not touched."""
    box = run(backend.create("orig"))
    run(backend.write_file(box.sandbox_id, "a.txt", "A\n"))
    first = run(backend.snapshot(box.sandbox_id, "orig-step-1"))
    run(backend.write_file(box.sandbox_id, "a.txt", "A changed\n"))
    run(backend.write_file(box.sandbox_id, "b.txt", "B\n"))
    second = run(backend.snapshot(box.sandbox_id, "orig-step-2"))

    fork = run(backend.create("fork", first))
    rewound = run(backend.create("rewound", second))

    assert [e.path for e in run(backend.list_files(fork.sandbox_id, ".", 100))] == ["a.txt"]
    assert run(backend.read_file(fork.sandbox_id, "a.txt", 100)) == "A\n"
    assert run(backend.read_file(rewound.sandbox_id, "a.txt", 100)) == "A changed\n"
    run(backend.write_file(fork.sandbox_id, "a.txt", "the fork's own\n"))
    assert run(backend.read_file(box.sandbox_id, "a.txt", 100)) == "A changed\n"
    assert run(backend.read_file(box.sandbox_id, "b.txt", 100)) == "B\n"


@pytest.mark.parametrize("name", ["task:42/step 3", "snapshots", ".hidden", "x" * 300])
def test_any_name_works(backend: SandboxBackend, run: Run, name: str) -> None:
    box = run(backend.create(name))
    snap = run(backend.snapshot(box.sandbox_id, name))
    run(backend.terminate(box.sandbox_id))

    again = run(backend.create(name, snap))

    assert again.sandbox_id != box.sandbox_id
    run(backend.delete_snapshot(snap))


def test_create_after_terminate_gives_a_new_sandbox(backend: SandboxBackend, run: Run) -> None:
    old = run(backend.create("box"))
    run(backend.write_file(old.sandbox_id, "old.txt", "x"))
    run(backend.terminate(old.sandbox_id))

    new = run(backend.create("box"))

    assert new.sandbox_id != old.sandbox_id
    assert run(backend.list_files(new.sandbox_id, "", 100)) == []
    with pytest.raises(SandboxGone):  # a stale id never reaches the new sandbox
        run(backend.exec(old.sandbox_id, "true", 30))


def test_terminate_kills_a_running_command(backend: SandboxBackend, run: Run) -> None:
    box = run(backend.create("box"))

    async def terminate_mid_command() -> None:
        command = asyncio.create_task(backend.exec(box.sandbox_id, "sleep 60", 60))
        await asyncio.sleep(0.5)
        await backend.terminate(box.sandbox_id)
        with pytest.raises(SandboxGone):
            await asyncio.wait_for(command, 10)

    run(terminate_mid_command())


def test_terminate_twice_is_a_success(backend: SandboxBackend, run: Run) -> None:
    box = run(backend.create("box"))
    run(backend.terminate(box.sandbox_id))
    run(backend.terminate(box.sandbox_id))

    for operation in (backend.exec(box.sandbox_id, "true", 30), backend.read_file(box.sandbox_id, "x", 1),
                      backend.write_file(box.sandbox_id, "x", ""), backend.list_files(box.sandbox_id, "", 1),
                      backend.snapshot(box.sandbox_id, "never")):
        with pytest.raises(SandboxGone):
            run(operation)


def test_delete_snapshot_twice_is_a_success(backend: SandboxBackend, run: Run) -> None:
    box = run(backend.create("box"))
    snap = run(backend.snapshot(box.sandbox_id, "snap"))

    run(backend.delete_snapshot(snap))
    run(backend.delete_snapshot(snap))

    with pytest.raises(SnapshotMissing):
        run(backend.create("from-deleted", snap))


def test_a_sandbox_past_its_ttl_is_gone_and_wiped(make_backend: MakeBackend, run: Run) -> None:
    backend = make_backend(ttl_s=1)
    box = run(backend.create("box"))
    assert box.expires_at is not None and box.expires_at <= time.time() + 1
    run(backend.write_file(box.sandbox_id, "work.txt", "unsaved"))

    time.sleep(max(0.0, box.expires_at - time.time()) + 0.2)

    with pytest.raises(SandboxGone):
        run(backend.exec(box.sandbox_id, "true", 30))
    with pytest.raises(SandboxGone):
        run(backend.read_file(box.sandbox_id, "work.txt", 100))
    with pytest.raises(SandboxGone):
        run(backend.snapshot(box.sandbox_id, "too-late"))
    run(backend.terminate(box.sandbox_id))  # terminating the dead is a success
    fresh = run(backend.create("box"))
    assert run(backend.list_files(fresh.sandbox_id, "", 100)) == []


def test_a_command_running_at_the_ttl_deadline_is_killed(make_backend: MakeBackend, run: Run) -> None:
    backend = make_backend(ttl_s=2)
    box = run(backend.create("box"))

    started = time.monotonic()
    with pytest.raises(SandboxGone):
        run(backend.exec(box.sandbox_id, "sleep 60", 60))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside", "a/../../outside", "a/\x00b", "..", "/"])
def test_bad_paths_are_rejected(backend: SandboxBackend, run: Run, path: str) -> None:
    box = run(backend.create("box"))

    with pytest.raises(PathRejected):
        run(backend.read_file(box.sandbox_id, path, 100))
    with pytest.raises(PathRejected):
        run(backend.write_file(box.sandbox_id, path, "x"))
    with pytest.raises(PathRejected):
        run(backend.list_files(box.sandbox_id, path, 100))


def test_symlinks_out_of_the_workspace_are_not_followed(backend: SandboxBackend, run: Run) -> None:
    box = run(backend.create("box"))
    made = run(backend.exec(box.sandbox_id,
                            "ln -s /etc etc && ln -s /etc/hostname host && ln -s ../../.. up && "
                            "ln -s /project/inside.txt abs-inside && echo in > inside.txt && ln -s inside.txt rel", 30))
    assert made.exit_code == 0, made

    for path in ("etc/hostname", "host", "up/etc/hostname"):
        with pytest.raises(PathRejected):
            run(backend.read_file(box.sandbox_id, path, 100))
    for path in ("etc/evil", "up/tmp/evil", "host", "rel"):
        with pytest.raises(PathRejected):
            run(backend.write_file(box.sandbox_id, path, "pwned"))
    with pytest.raises(PathRejected):
        run(backend.list_files(box.sandbox_id, "etc", 100))
    assert run(backend.read_file(box.sandbox_id, "abs-inside", 100)) == "in\n"  # /project/... is inside
    assert run(backend.read_file(box.sandbox_id, "inside.txt", 100)) == "in\n"  # `rel` was not written through


# ----- markers ---------------------------------------------------------------------------


def test_markers_are_written_read_replaced_and_deleted_by_prefix(backend: SandboxBackend, run: Run) -> None:
    sid = run(backend.create("box")).sandbox_id

    assert run(backend.read_marker(sid, "task-1_c0.intent")) is None
    run(backend.write_marker(sid, "task-1_c0.intent", "echo hi"))
    run(backend.write_marker(sid, "task-1_c0.result", "{}"))
    run(backend.write_marker(sid, "task-1_c0.result", '{"exit_code": 0}'))  # replaced whole
    run(backend.write_marker(sid, "task-2_c0.intent", "ls"))

    assert run(backend.read_marker(sid, "task-1_c0.result")) == '{"exit_code": 0}'
    assert run(backend.delete_markers(sid, "task-1_")) == 2
    assert run(backend.read_marker(sid, "task-1_c0.intent")) is None
    assert run(backend.read_marker(sid, "task-2_c0.intent")) == "ls"
    assert run(backend.delete_markers(sid, "task-1_")) == 0
    for bad in ("", ".", "..", "a/b", "x" * 201, "é"):
        with pytest.raises(ValueError):
            run(backend.write_marker(sid, bad, "x"))


def test_a_marker_is_created_once_of_many_concurrent_creates(backend: SandboxBackend, run: Run) -> None:
    sid = run(backend.create("box")).sandbox_id

    async def race() -> list[bool]:
        return await asyncio.gather(*(backend.create_marker(sid, "op-1.intent", f"attempt {i}") for i in range(6)))

    created = run(race())

    assert created.count(True) == 1
    assert run(backend.read_marker(sid, "op-1.intent")) == f"attempt {created.index(True)}"
    assert run(backend.create_marker(sid, "op-1.intent", "late")) is False  # left as it was
    assert run(backend.read_marker(sid, "op-1.intent")) == f"attempt {created.index(True)}"


def test_a_marker_survives_a_command_that_deletes_the_whole_workspace(backend: SandboxBackend, run: Run) -> None:
    sid = run(backend.create("box")).sandbox_id
    run(backend.write_file(sid, ".agent/outputs/x.log", "x"))
    run(backend.write_marker(sid, "op-1.intent", "rm -rf everything"))

    result = run(backend.exec(sid, "rm -rf ./* ./.[!.]* && ls -A | wc -l", 30))

    assert result.stdout.strip() == "0", result
    assert run(backend.read_marker(sid, "op-1.intent")) == "rm -rf everything"
    assert run(backend.list_files(sid, "", 100)) == []  # and markers are nowhere in the workspace


def test_markers_travel_with_snapshots(backend: SandboxBackend, run: Run) -> None:
    box = run(backend.create("box"))
    run(backend.write_marker(box.sandbox_id, "op-1.result", "done"))
    snap = run(backend.snapshot(box.sandbox_id, "box-snap"))
    run(backend.write_marker(box.sandbox_id, "op-2.result", "after the snapshot"))
    run(backend.terminate(box.sandbox_id))

    restored = run(backend.create("box", snap)).sandbox_id
    fresh = run(backend.create("other")).sandbox_id

    assert run(backend.read_marker(restored, "op-1.result")) == "done"
    assert run(backend.read_marker(restored, "op-2.result")) is None
    assert run(backend.read_marker(fresh, "op-1.result")) is None
    assert run(backend.list_files(restored, "", 100)) == []


# ----- stopping an operation another attempt left running --------------------------------

async def _ticks(backend: SandboxBackend, sid: str) -> int:
    try:
        return (await backend.read_file(sid, "ticks.txt", 1_000_000)).count("tick")
    except FileMissing:
        return 0


@pytest.mark.parametrize("abandoned", ["cancelled", "left running"])
def test_stop_op_stops_a_command_an_abandoned_attempt_started(backend: SandboxBackend, run: Run,
                                                              abandoned: str) -> None:
    """The first attempt lost its connection to Restate. If its worker noticed, the Restate SDK
    cancelled the step's task; if not, the task runs on. Either way the next attempt's
    stop_op leaves nothing running."""
    sid = run(backend.create("box")).sandbox_id

    async def scenario() -> None:
        first = asyncio.create_task(backend.exec(sid, TICKER, 60, op_id="op-1"))
        deadline = time.monotonic() + 20
        while await _ticks(backend, sid) < 2:
            assert time.monotonic() < deadline and not first.done(), "the command never ticked"
            await asyncio.sleep(0.05)
        if abandoned == "cancelled":
            first.cancel()  # and nobody waits for it

        await backend.stop_op(sid, "op-1")  # the next attempt

        stopped_at = await _ticks(backend, sid)
        await asyncio.sleep(0.5)
        assert await _ticks(backend, sid) == stopped_at
        await asyncio.wait({first}, timeout=10)  # the first attempt's call ends too
        assert first.done()
        assert first.cancelled() or first.exception() or first.result()

    run(scenario())


def test_stop_op_with_nothing_running_is_a_success(backend: SandboxBackend, run: Run) -> None:
    sid = run(backend.create("box")).sandbox_id
    run(backend.stop_op(sid, "never-started"))

    done = run(backend.exec(sid, "echo once", 30, op_id="op-1"))
    run(backend.stop_op(sid, "op-1"))

    assert done.stdout == "once\n"
    run(backend.terminate(sid))
    with pytest.raises(SandboxGone):
        run(backend.stop_op(sid, "op-1"))


# ----- saved outputs ---------------------------------------------------------------------


def test_only_the_newest_saved_outputs_are_kept(backend: SandboxBackend, run: Run) -> None:
    sid = run(backend.create("box")).sandbox_id

    results = [run(backend.exec(sid, "seq 1 5000", 30)) for _ in range(KEEP_OUTPUTS + 2)]

    assert all(r.truncated and r.full_output_path for r in results)
    saved = [e.path for e in run(backend.list_files(sid, OUTPUTS_DIR, 100)) if e.kind == "file"]
    assert len(saved) == KEEP_OUTPUTS
    assert {r.full_output_path for r in results[-KEEP_OUTPUTS:]} == set(saved)


# ----- an operation stopped before its command started ------------------------------------


def test_a_start_that_arrives_after_stop_op_never_runs(backend: SandboxBackend, run: Run) -> None:
    """The first attempt's exec was delayed (a stalled worker) past the next attempt's stop_op.
    It must not run then: the next attempt has already reported the outcome as unknown."""
    sid = run(backend.create("box")).sandbox_id
    run(backend.stop_op(sid, "task-1_c0"))

    late = run(backend.exec(sid, "echo ran > ran.txt", 30, op_id="task-1_c0"))

    assert late.exit_code == 137 and "not started" in late.stderr
    with pytest.raises(FileMissing):
        run(backend.read_file(sid, "ran.txt", 100))
    assert run(backend.delete_markers(sid, "task-1_")) == 0  # the stop is no marker, but goes with them
    assert run(backend.exec(sid, "echo ran; exit 3", 30, op_id="task-1_c0")).exit_code == 3
    assert run(backend.exec(sid, "kill -9 $$", 30, op_id="task-2_c0")).exit_code == 137  # statuses as without an op_id


# ----- a live sandbox: what commands leave in the background -------------------------------


def _free_port() -> int:
    """A port free on this machine: the fake Modal's commands share the host's loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _fetch(port: int) -> str:
    """A command that fetches /hello.txt from 127.0.0.1:port, waiting up to 20 s for a server."""
    return ("python3 -c \"import time, urllib.request\n"
            "for _ in range(200):\n"
            "    try:\n"
            f"        print(urllib.request.urlopen('http://127.0.0.1:{port}/hello.txt', timeout=5).read().decode()); break\n"
            "    except OSError as e:\n"
            "        error = e; time.sleep(0.1)\n"
            "else:\n"
            "    raise SystemExit(f'no server: {error}')\"")


def test_a_background_server_started_by_one_command_answers_the_next(backend: SandboxBackend, run: Run) -> None:
    box = run(backend.create("box"))
    run(backend.write_file(box.sandbox_id, "hello.txt", "hello from the workspace"))
    port = _free_port()

    # As a model writes it: no redirection, so the server holds the command's output open.
    started = run(backend.exec(box.sandbox_id, f"python3 -m http.server {port} --bind 127.0.0.1 &", 30))
    fetched = run(backend.exec(box.sandbox_id, _fetch(port), 60))

    assert started.exit_code == 0 and not started.timed_out, started
    assert (fetched.exit_code, fetched.stdout) == (0, "hello from the workspace\n"), fetched


def test_background_processes_stop_when_the_sandbox_is_suspended(backend: SandboxBackend, run: Run,
                                                                 processes_with: Callable[[str], list[int]]) -> None:
    """Suspension is a snapshot, then terminate; the next command runs in a sandbox restored from
    the snapshot: the files are back, the processes are not."""
    box = run(backend.create("box"))
    run(backend.write_file(box.sandbox_id, "hello.txt", "hello from the workspace"))
    port = _free_port()
    run(backend.exec(box.sandbox_id, f"python3 -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 &", 30))
    assert run(backend.exec(box.sandbox_id, _fetch(port), 60)).exit_code == 0
    assert processes_with(f"http.server\0{port}")

    snap = run(backend.snapshot(box.sandbox_id, "box-idle"))
    run(backend.terminate(box.sandbox_id))
    deadline = time.monotonic() + 10
    while processes_with(f"http.server\0{port}"):
        assert time.monotonic() < deadline, "a background server outlived its sandbox"
        time.sleep(0.05)
    restored = run(backend.create("box-2", snap))

    probe = run(backend.exec(restored.sandbox_id,
                             f"cat hello.txt; python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}))\"", 30))
    assert probe.stdout == "hello from the workspace" and "Connection refused" in probe.stderr, probe


def _tree(files: dict[str, str], links: dict[str, str] | None = None) -> bytes:
    import io
    import tarfile
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return out.getvalue()


def _files_of(tree: bytes) -> dict[str, str]:
    import io
    import tarfile
    with tarfile.open(fileobj=io.BytesIO(tree)) as tar:
        return {m.name.removeprefix("./"): (tar.extractfile(m).read().decode() if m.isfile() else f"-> {m.linkname}")
                for m in tar.getmembers() if m.isfile() or m.issym()}


def test_an_imported_tree_restores_as_a_workspace_and_reads_back(backend: SandboxBackend, run: Run) -> None:
    tree = _tree({"src/a.py": "A = 1\n", "run.sh": "echo hi\n"}, {"link": "src/a.py"})
    snapshot = run(backend.import_snapshot("imported", tree))

    box = run(backend.create("box", snapshot))
    result = run(backend.exec(box.sandbox_id, "cat link; ./run.sh; ls -A", 30))

    assert result.stdout == "A = 1\nhi\nlink\nrun.sh\nsrc\n"
    assert _files_of(run(backend.snapshot_tree(snapshot))) == {
        "src/a.py": "A = 1\n", "run.sh": "echo hi\n", "link": "-> src/a.py"}
    run(backend.exec(box.sandbox_id, "echo B >> src/a.py; rm run.sh", 30))
    assert _files_of(run(backend.workspace_tree(box.sandbox_id))) == {"src/a.py": "A = 1\nB\n", "link": "-> src/a.py"}


def test_tree_reads_of_missing_things_say_so(backend: SandboxBackend, run: Run) -> None:
    box = run(backend.create("box"))
    run(backend.terminate(box.sandbox_id))
    with pytest.raises(SandboxGone):
        run(backend.workspace_tree(box.sandbox_id))
    snapshot = run(backend.import_snapshot("short-lived", _tree({"a": "1"})))
    run(backend.delete_snapshot(snapshot))
    with pytest.raises(SnapshotMissing):
        run(backend.snapshot_tree(snapshot))
