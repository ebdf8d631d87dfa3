"""The Modal backend's mapping onto Modal's SDK, against the fake SDK (fake_modal.py); and the
whole contract suite against a real Modal account when MODAL_TOKEN_ID is set."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import modal
import pytest
from modal._utils.name_utils import is_valid_object_name
from modal.exception import AlreadyExistsError, ExecutionError, NotFoundError

from sandbox import SandboxBackend, SandboxGone, SandboxInfo, SandboxUnavailable, SnapshotMissing, create_backend
from sandbox.modal_backend import DEFAULT_APP_NAME, ModalBackend, ModalLimits, modal_name
from sandbox.output import KEEP_OUTPUTS, OUTPUTS_DIR

from . import test_contract
from .conftest import MakeBackend, Run
from .fake_modal import FakeModal


@pytest.fixture
def fake(sandbox_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeModal]:
    fake = FakeModal(sandbox_root / "modal").install(monkeypatch)
    yield fake
    fake.close()


def backend_on(fake: FakeModal, **limits: Any) -> ModalBackend:
    """A fresh backend over the fake, as a new worker process has it: no handles cached."""
    return ModalBackend(DEFAULT_APP_NAME, ModalLimits(**limits))


def workspace(fake: FakeModal, box: SandboxInfo) -> Path:
    """The sandbox's /project, as the fake keeps it on this machine."""
    return fake.sandboxes[box.sandbox_id].root / "project"


async def until(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        await asyncio.sleep(0.05)


async def stops_growing(path: Path, within_s: float = 10.0) -> None:
    """Wait until `path` has kept its size for half a second (commands here append every 0.1 s)."""
    deadline = time.monotonic() + within_s
    before, now = -1, path.stat().st_size
    while now != before:
        assert time.monotonic() < deadline, f"{path.name} is still growing"
        await asyncio.sleep(0.5)
        before, now = now, path.stat().st_size


def test_a_sandbox_is_the_named_modal_sandbox_with_the_limits_asked_for(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake, timeout_s=600, idle_timeout_s=300, cpu=2.0, memory_mb=2048)
    started = time.time()

    info = run(backend.create("session-7-g1"))

    sandbox = fake.sandboxes[info.sandbox_id]
    assert (sandbox.app_name, sandbox.name, sandbox.running()) == (DEFAULT_APP_NAME, "session-7-g1", True)
    assert (sandbox.idle_timeout, sandbox.cpu, sandbox.memory, sandbox.block_network) == (300, 2.0, 2048, True)
    assert sandbox.image.recipe == ("debian_slim", "apt_install git", "pip_install pytest", "workdir /project")
    assert info.sandbox_id.startswith("sb-") and started + 600 <= info.expires_at + 0.01 <= time.time() + 600.01
    assert info.expires_at <= sandbox.deadline  # never later than Modal's own end
    assert run(backend.exec(info.sandbox_id, "pwd", 2.5)).stdout.endswith("/project\n")  # any timeout works


def test_a_registry_image_replaces_the_default_one(fake: FakeModal, run: Run) -> None:
    info = run(backend_on(fake, image="python:3.12-slim", block_network=False).create("box"))

    sandbox = fake.sandboxes[info.sandbox_id]
    assert sandbox.image.recipe == ("from_registry python:3.12-slim", "workdir /project")
    assert sandbox.block_network is False


def test_a_retried_create_finds_the_live_sandbox_by_name(fake: FakeModal, run: Run) -> None:
    first = run(backend_on(fake).create("box"))

    again = run(backend_on(fake).create("box"))  # another worker, after an unrecorded success

    assert again == first and len(fake.sandboxes) == 1


def test_a_name_freed_between_create_and_lookup_is_created_again(fake: FakeModal, run: Run,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    create, clashes = modal.Sandbox.create.fn, iter([True])

    async def clash_once(*args: Any, **kwargs: Any) -> Any:
        if next(clashes, False):  # Modal says the name is taken; its holder ends right after
            raise AlreadyExistsError("Sandbox with name 'box' already exists")
        return await create(*args, **kwargs)

    monkeypatch.setattr(modal.Sandbox.create, "fn", clash_once)

    info = run(backend_on(fake).create("box"))

    assert len(fake.calls_to("Sandbox.create")) == 2 and info.sandbox_id in fake.sandboxes


def test_a_name_that_stays_taken_without_a_live_holder_is_an_ordinary_error(
        fake: FakeModal, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    async def always_taken(*args: Any, **kwargs: Any) -> Any:
        raise AlreadyExistsError("Sandbox with name 'box' already exists")

    monkeypatch.setattr(modal.Sandbox.create, "fn", always_taken)

    with pytest.raises(RuntimeError, match="keeps reporting sandbox name 'box' as taken"):
        run(backend_on(fake).create("box"))  # not a SandboxError: the step retries it


def test_an_unknown_sandbox_id_is_gone(fake: FakeModal, run: Run) -> None:
    with pytest.raises(SandboxGone):
        run(backend_on(fake).exec("sb-neverexisted", "true", 10))


def test_a_sandbox_modal_ended_behind_our_back_is_gone_for_every_operation(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake)
    box = run(backend.create("box"))
    run(backend.write_file(box.sandbox_id, "a.txt", "x"))  # the handle is cached now
    fake.sandboxes[box.sandbox_id].end("terminated")  # Modal ended it: a crash, the console, a limit

    for operation in (backend.exec(box.sandbox_id, "true", 30), backend.read_file(box.sandbox_id, "a.txt", 10),
                      backend.write_file(box.sandbox_id, "b.txt", "y"), backend.list_files(box.sandbox_id, "", 10),
                      backend.snapshot(box.sandbox_id, "late")):
        with pytest.raises(SandboxGone):
            run(operation)


def test_terminate_is_a_success_for_the_ended_and_the_unknown(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake, timeout_s=1)
    box = run(backend.create("box"))
    expired = run(backend.create("expired"))
    time.sleep(1.1)

    run(backend.terminate(box.sandbox_id))  # timed out: Modal's wait raises SandboxTimeoutError
    run(backend.terminate(box.sandbox_id))
    run(backend_on(fake).terminate(expired.sandbox_id))
    run(backend.terminate("sb-neverexisted"))


def test_once_terminate_returns_the_name_is_free_for_the_next_sandbox(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake)
    old = run(backend.create("box"))

    run(backend.terminate(old.sandbox_id))  # Modal ends a sandbox some time after it is asked to
    new = run(backend.create("box"))

    assert new.sandbox_id != old.sandbox_id and not fake.sandboxes[old.sandbox_id].running()


def test_a_snapshot_is_an_image_recorded_on_its_sandbox_and_restored_by_id(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake, snapshot_ttl_s=7 * 86400)
    box = run(backend.create("box"))
    run(backend.write_file(box.sandbox_id, "kept.txt", "kept"))

    snap = run(backend.snapshot(box.sandbox_id, "box-g1-suspend"))
    again = run(backend_on(fake).snapshot(box.sandbox_id, "box-g1-suspend"))  # a retry on another worker
    restored = run(backend_on(fake).create("box-g2", snap))  # a worker that never saw the image

    assert snap.startswith("im-") and again == snap and list(fake.images) == [snap]
    assert fake.image_ttl[snap] == 7 * 86400
    assert run(backend.read_file(restored.sandbox_id, "kept.txt", 10)) == "kept"


def test_a_restore_from_a_deleted_snapshot_is_snapshot_missing(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake)
    box = run(backend.create("box"))
    snap = run(backend.snapshot(box.sandbox_id, "s"))
    run(backend.delete_snapshot(snap))

    with pytest.raises(SnapshotMissing):
        run(backend.create("box-g2", snap))
    with pytest.raises(SnapshotMissing):
        run(backend.create("box-g2", "im-neverexisted"))
    assert fake.running(DEFAULT_APP_NAME, "box-g2") is None


def test_a_retried_restore_returns_its_sandbox_even_if_the_snapshot_is_gone_since(fake: FakeModal,
                                                                                  run: Run) -> None:
    backend = backend_on(fake)
    snap = run(backend.snapshot(run(backend.create("box")).sandbox_id, "s"))
    restored = run(backend.create("box-g2", snap))
    run(backend.delete_snapshot(snap))  # the object deletes old snapshots once the new sandbox runs

    assert run(backend_on(fake).create("box-g2", snap)) == restored


def test_snapshots_are_deleted_through_modal_and_foreign_ids_are_missing(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake)
    box = run(backend.create("box"))
    snap = run(backend.snapshot(box.sandbox_id, "s"))

    run(backend.delete_snapshot(snap))
    run(backend.delete_snapshot(snap))
    run(backend.delete_snapshot("box-g1-suspend"))  # a local backend's id: nothing to do

    assert fake.images == {}
    with pytest.raises(SnapshotMissing):
        run(backend.create("from-local", "box-g1-suspend"))


def test_a_timed_out_command_says_so_at_the_end_of_stderr(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake)
    box = run(backend.create("box"))

    result = run(backend.exec(box.sandbox_id, "echo err >&2; sleep 30", 1))

    assert (result.exit_code, result.timed_out) == (124, True)
    assert result.stderr == "err\n[sandbox] timed out after 1 s; the command was killed\n"


# ----- outages are not deaths -----------------------------------------------------------------


def test_a_write_during_an_outage_is_unavailable_and_the_sandbox_keeps_its_files(fake: FakeModal,
                                                                                 run: Run) -> None:
    backend = backend_on(fake)
    box = run(backend.create("box"))
    run(backend.write_file(box.sandbox_id, "before.txt", "kept"))

    with fake.outage():  # the file API says "NotFoundError: The Sandbox is unavailable"
        with pytest.raises(SandboxUnavailable):
            run(backend.write_file(box.sandbox_id, "during.txt", "lost"))
        with pytest.raises(SandboxUnavailable):
            run(backend_on(fake).read_file(box.sandbox_id, "before.txt", 10))  # a worker with no handle yet

    assert run(backend.read_file(box.sandbox_id, "before.txt", 10)) == "kept"
    assert run(backend.exec(box.sandbox_id, "ls", 30)).stdout == "before.txt\n"


def test_a_sandbox_modal_says_is_running_is_unavailable_when_it_cannot_be_reached(fake: FakeModal,
                                                                                  run: Run) -> None:
    backend = backend_on(fake)
    box = run(backend.create("box"))
    run(backend.write_file(box.sandbox_id, "a.txt", "x"))

    with fake.outage("data"):  # the control plane answers "running"; the container cannot be reached
        for operation in (backend.write_file(box.sandbox_id, "b.txt", "y"), backend.read_file(box.sandbox_id, "a.txt", 9),
                          backend.list_files(box.sandbox_id, "", 10), backend.exec(box.sandbox_id, "true", 30),
                          backend.read_marker(box.sandbox_id, "m"), backend.stop_op(box.sandbox_id, "op")):
            with pytest.raises(SandboxUnavailable):
                run(operation)

    assert run(backend.read_file(box.sandbox_id, "a.txt", 10)) == "x"


# ----- stopping an operation ---------------------------------------------------------------------

GROW = ("while :; do echo x >> grow.txt; sleep 0.1; done & "  # the command's own work...
        "setsid sh -c 'while :; do echo x >> escaped.txt; sleep 0.1; done' & "  # ...one in a session of its own...
        "env -i sh -c 'while :; do echo x >> clean.txt; sleep 0.1; done' & "  # ...one with no environment...
        "wait")
GROWN = ("grow.txt", "escaped.txt", "clean.txt")


def test_stop_op_from_another_worker_stops_the_command_and_all_it_started(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake)
    box = run(backend.create("box"))
    files = [workspace(fake, box) / name for name in GROWN]

    async def scenario() -> None:
        # The first worker still waits for the command (as one that crashed would never stop it).
        running = asyncio.create_task(backend.exec(box.sandbox_id, GROW, 60, op_id="t1_s1_c0"))
        await until(lambda: all(f.exists() for f in files))

        await backend_on(fake).stop_op(box.sandbox_id, "t1_s1_c0")

        sizes = [f.stat().st_size for f in files]
        await asyncio.sleep(0.5)
        assert [f.stat().st_size for f in files] == sizes
        assert (await running).exit_code == 137  # killed, as seen by the call still waiting

    run(scenario())


def test_a_cancelled_exec_stops_its_command(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake)
    box = run(backend.create("box"))
    files = [workspace(fake, box) / name for name in GROWN]

    async def scenario() -> None:
        running = asyncio.create_task(backend.exec(box.sandbox_id, GROW, 60))  # no op_id
        await until(lambda: all(f.exists() for f in files))
        running.cancel()  # Restate ended the attempt
        with pytest.raises(asyncio.CancelledError):
            await running
        await asyncio.gather(*(stops_growing(f) for f in files))

    run(scenario())


def test_what_a_timed_out_command_left_running_is_stopped(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake)
    box = run(backend.create("box"))
    escaped = workspace(fake, box) / "escaped.txt"

    # Modal kills the command it started at the timeout; this child left its process group.
    result = run(backend.exec(box.sandbox_id, "setsid sh -c 'while :; do echo x >> escaped.txt; sleep 0.1; done' & "
                                              "sleep 30", 1))

    assert result.timed_out and escaped.exists()
    run(stops_growing(escaped))


def test_what_a_command_leaves_running_keeps_running_until_the_sandbox_ends(
        fake: FakeModal, run: Run, processes_with: Callable[[str], list[int]]) -> None:
    backend = backend_on(fake)
    box = run(backend.create("box"))
    escaped = workspace(fake, box) / "escaped.txt"

    started = time.monotonic()
    result = run(backend.exec(box.sandbox_id, "setsid sh -c 'while :; do echo x >> escaped.txt; sleep 0.1; done' & "
                                              "sleep 0.3; echo started", 60))

    assert (result.exit_code, result.stdout, result.timed_out) == (0, "started\n", False)
    assert time.monotonic() - started < 10  # its output, still held open, does not hold the call up
    size = escaped.stat().st_size
    time.sleep(0.5)
    assert escaped.stat().st_size > size  # a live container: it runs on after its command
    run(backend.terminate(box.sandbox_id))
    assert processes_with("escaped.txt") == []  # and ends with the sandbox


# ----- markers -----------------------------------------------------------------------------------


def test_a_marker_holds_any_text_up_to_a_megabyte(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake)
    box = run(backend.create("box"))
    text = "ünï\x00code\n" * (1024 * 1024 // 20)

    run(backend.write_marker(box.sandbox_id, "t1_s1_c0.result", text))

    assert run(backend.read_marker(box.sandbox_id, "t1_s1_c0.result")) == text
    assert run(backend.delete_markers(box.sandbox_id, "")) == 1  # an empty prefix is every marker


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x" * 201, "sp ace"])
def test_names_a_marker_or_op_cannot_have_are_refused(fake: FakeModal, run: Run, name: str) -> None:
    backend = backend_on(fake)
    box = run(backend.create("box"))

    with pytest.raises(ValueError):
        run(backend.write_marker(box.sandbox_id, name, "x"))
    with pytest.raises(ValueError):
        run(backend.exec(box.sandbox_id, "true", 10, op_id=name))
    with pytest.raises(ValueError):
        run(backend.write_marker(box.sandbox_id, "big", "x" * (1024 * 1024 + 1)))


# ----- saved outputs -----------------------------------------------------------------------------


def test_pruning_saved_outputs_keeps_the_newest_and_leaves_other_files_alone(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake, output_head_bytes=10, output_tail_bytes=10)
    box = run(backend.create("box"))
    old = [f"{OUTPUTS_DIR}/20240101-0000{i:02d}-abcdef.log" for i in range(KEEP_OUTPUTS + 5)]
    for path in [*old, f"{OUTPUTS_DIR}/notes.txt"]:
        run(backend.write_file(box.sandbox_id, path, "old"))

    result = run(backend.exec(box.sandbox_id, "seq 1000", 30))

    kept = {e.path for e in run(backend.list_files(box.sandbox_id, OUTPUTS_DIR, 100))}
    assert result.full_output_path in kept
    assert kept == {result.full_output_path, *old[-(KEEP_OUTPUTS - 1):], f"{OUTPUTS_DIR}/notes.txt"}


# ----- the fake is Modal's SDK, strictly -------------------------------------------------------


def test_the_fake_refuses_what_modal_would_refuse(fake: FakeModal, run: Run) -> None:
    app = run(modal.App.lookup.aio("app", create_if_missing=True))

    with pytest.raises(TypeError, match="timout"):
        run(modal.Sandbox.create.aio(app=app, timout=5))  # Modal's own signature is checked
    with pytest.raises(TypeError):
        modal.Image.debian_slim().apt_install("git", pakages=["curl"])
    with pytest.raises(ExecutionError, match="cannot currently be hydrated"):
        run(modal.Image.from_id("im-anything").hydrate.aio())
    with pytest.raises(NotImplementedError, match="gpu"):
        run(modal.Sandbox.create.aio(app=app, gpu="A100"))  # real, but not modelled: never ignored
    with pytest.raises(NotFoundError):
        run(modal.App.lookup.aio("no-such-app"))
    with pytest.raises(AssertionError, match="blocking"):
        modal.Sandbox.from_id("sb-x")


@pytest.mark.parametrize("name", ["task:42/step 3", "x" * 300, "ap-" + "a" * 22, "ünïcode"])
def test_names_modal_refuses_are_mapped_to_valid_stable_ones(name: str) -> None:
    mapped = modal_name(name)

    assert is_valid_object_name(mapped) and mapped == modal_name(name) and mapped != modal_name(name + "!")
    assert modal_name("session-7-g1") == "session-7-g1"
    with pytest.raises(ValueError):
        modal_name("")


def test_settings_come_from_modal_sandbox_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (ModalLimits().timeout_s, ModalLimits().block_network) == (3600, True)
    for name, value in {"MODAL_SANDBOX_TIMEOUT_S": "7200", "MODAL_SANDBOX_IDLE_TIMEOUT_S": "600",
                        "MODAL_SANDBOX_CPU": "0.5", "MODAL_SANDBOX_MEMORY_MB": "512",
                        "MODAL_SANDBOX_BLOCK_NETWORK": "false", "MODAL_SANDBOX_IMAGE": "node:22",
                        "MODAL_SANDBOX_SNAPSHOT_TTL_S": "none"}.items():
        monkeypatch.setenv(name, value)

    limits = ModalLimits()

    assert (limits.timeout_s, limits.idle_timeout_s, limits.cpu, limits.memory_mb) == (7200, 600, 0.5, 512)
    assert (limits.block_network, limits.image, limits.snapshot_ttl_s) == (False, "node:22", None)


def test_a_bad_setting_names_its_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_SANDBOX_TIMEOUT_S", "90000")  # Modal's limit is 24 h
    with pytest.raises(ValueError, match="MODAL_SANDBOX_TIMEOUT_S"):
        ModalLimits()


def test_create_backend_builds_it_for_the_app_in_modal_app_name(sandbox_root: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODAL_APP_NAME", "my-agents")
    monkeypatch.setenv("MODAL_SANDBOX_CPU", "4")

    backend = create_backend("modal", sandbox_root)

    assert isinstance(backend, ModalBackend) and backend.kind == "modal"
    assert (backend.app_name, backend.limits.cpu) == ("my-agents", 4.0)
    monkeypatch.delenv("MODAL_APP_NAME")
    assert create_backend("modal", sandbox_root).app_name == DEFAULT_APP_NAME


def test_the_local_backend_never_imports_modal() -> None:
    code = "import sys, sandbox; sandbox.KINDS; print('modal' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).parents[2])
    assert result.stdout.strip() == "False"


# ----- the contract against a real account ---------------------------------------------------


class _Isolated:
    """A real backend whose sandbox names carry a per-test prefix, so runs never meet, and
    whose sandboxes are all terminated after the test."""

    def __init__(self, inner: ModalBackend, prefix: str) -> None:
        self.inner, self.prefix, self.sandbox_ids = inner, prefix, []

    async def create(self, name: str, snapshot_id: str | None = None) -> SandboxInfo:
        info = await self.inner.create(self.prefix + name, snapshot_id)
        self.sandbox_ids.append(info.sandbox_id)
        return info

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.skipif(not os.environ.get("MODAL_TOKEN_ID"),
                    reason="MODAL_TOKEN_ID not set: the real-Modal contract run needs an account")
class TestContractOnRealModal:
    """Every scenario of test_contract.py, against Modal itself (app MODAL_TEST_APP_NAME)."""

    @pytest.fixture
    def make_backend(self, run: Run) -> Iterator[MakeBackend]:
        app_name = os.environ.get("MODAL_TEST_APP_NAME", "durable-coding-agent-contract")
        made: list[_Isolated] = []

        def make(ttl_s: int | None = None, **limits: Any) -> SandboxBackend:
            if ttl_s is not None:
                limits["timeout_s"] = ttl_s
            backend = _Isolated(ModalBackend(app_name, ModalLimits(**limits)), f"t{secrets.token_hex(4)}-")
            made.append(backend)
            return backend  # type: ignore[return-value]

        yield make
        for backend in made:
            for sandbox_id in backend.sandbox_ids:
                run(backend.terminate(sandbox_id))


for _name, _scenario in vars(test_contract).items():
    if _name.startswith("test_"):
        setattr(TestContractOnRealModal, _name, staticmethod(_scenario))
