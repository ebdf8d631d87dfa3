"""The Modal backend's mapping onto Modal's SDK, against the fake SDK (fake_modal.py); and the
whole contract suite against a real Modal account when MODAL_TOKEN_ID is set."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import modal
import pytest
from modal._utils.name_utils import is_valid_object_name
from modal.exception import AlreadyExistsError

from sandbox import SandboxBackend, SandboxGone, SandboxInfo, SnapshotMissing, create_backend
from sandbox.modal_backend import DEFAULT_APP_NAME, ModalBackend, ModalLimits, modal_name

from . import test_contract
from .conftest import MakeBackend, Run
from .fake_modal import FakeApp, FakeModal


@pytest.fixture
def fake(sandbox_root: Path, monkeypatch: pytest.MonkeyPatch) -> FakeModal:
    return FakeModal(sandbox_root / "modal").install(monkeypatch)


def backend_on(fake: FakeModal, **limits: Any) -> ModalBackend:
    """A fresh backend over the fake, as a new worker process has it: no handles cached."""
    return ModalBackend(DEFAULT_APP_NAME, ModalLimits(**limits))


def test_create_asks_modal_for_the_named_sandbox_with_its_limits(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake, timeout_s=600, idle_timeout_s=300, cpu=2.0, memory_mb=2048)
    started = time.time()

    info = run(backend.create("session-7-g1"))

    [lookup] = fake.calls_to("App.lookup")
    assert lookup.args == (DEFAULT_APP_NAME,) and lookup.kwargs == {"create_if_missing": True}
    [create] = fake.calls_to("Sandbox.create")
    image = create.kwargs.pop("image")
    assert create.args == () and create.kwargs == {
        "app": FakeApp(DEFAULT_APP_NAME), "name": "session-7-g1", "timeout": 600, "idle_timeout": 300,
        "workdir": "/project", "block_network": True, "cpu": 2.0, "memory": 2048,
        "tags": {"expires-at": repr(info.expires_at)},
    }
    assert image.recipe == ("debian_slim", "apt_install git", "workdir /project")
    assert info.sandbox_id.startswith("sb-") and started + 600 <= info.expires_at + 0.01 <= time.time() + 600.01


def test_a_registry_image_replaces_the_default_one(fake: FakeModal, run: Run) -> None:
    run(backend_on(fake, image="python:3.12-slim", block_network=False).create("box"))

    [create] = fake.calls_to("Sandbox.create")
    assert create.kwargs["image"].recipe == ("from_registry python:3.12-slim", "workdir /project")
    assert create.kwargs["block_network"] is False


def test_a_retried_create_finds_the_live_sandbox_by_name(fake: FakeModal, run: Run) -> None:
    first = run(backend_on(fake).create("box"))

    again = run(backend_on(fake).create("box"))  # another worker, after an unrecorded success

    assert again == first
    assert [c.args for c in fake.calls_to("Sandbox.from_name")] == [(DEFAULT_APP_NAME, "box")]


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


def test_terminate_waits_and_is_a_success_for_the_ended_and_the_unknown(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake, timeout_s=1)
    box = run(backend.create("box"))
    expired = run(backend.create("expired"))
    time.sleep(1.1)

    run(backend.terminate(box.sandbox_id))  # timed out: Modal's wait raises SandboxTimeoutError
    run(backend.terminate(box.sandbox_id))
    run(backend_on(fake).terminate(expired.sandbox_id))
    run(backend.terminate("sb-neverexisted"))

    assert all(c.kwargs == {"wait": True} for c in fake.calls_to("sandbox.terminate"))


def test_a_snapshot_is_an_image_recorded_on_its_sandbox_and_restored_by_id(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake, snapshot_ttl_s=7 * 86400)
    box = run(backend.create("box"))
    run(backend.write_file(box.sandbox_id, "kept.txt", "kept"))

    snap = run(backend.snapshot(box.sandbox_id, "box-g1-suspend"))
    again = run(backend_on(fake).snapshot(box.sandbox_id, "box-g1-suspend"))  # a retry on another worker
    restored = run(backend.create("box-g2", snap))

    assert snap.startswith("im-") and again == snap
    assert [c.kwargs for c in fake.calls_to("sandbox.snapshot_filesystem")] == [{"ttl": 7 * 86400}]
    assert fake.calls_to("Sandbox.create")[-1].kwargs["image"].object_id == snap
    assert fake.calls_to("Image.hydrate")  # a missing image is found out before the create
    assert run(backend.read_file(restored.sandbox_id, "kept.txt", 10)) == "kept"


def test_snapshots_are_deleted_through_modal_and_foreign_ids_are_missing(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake)
    box = run(backend.create("box"))
    snap = run(backend.snapshot(box.sandbox_id, "s"))

    run(backend.delete_snapshot(snap))
    run(backend.delete_snapshot(snap))
    run(backend.delete_snapshot("box-g1-suspend"))  # a local backend's id: nothing to do

    assert [c.args for c in fake.calls_to("image_delete")] == [(snap,), (snap,)]
    with pytest.raises(SnapshotMissing):
        run(backend.create("from-local", "box-g1-suspend"))


def test_exec_runs_sh_c_in_the_workspace_with_a_whole_second_timeout(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake)
    box = run(backend.create("box"))

    result = run(backend.exec(box.sandbox_id, "pwd", 2.5))

    [call] = fake.calls_to("sandbox.exec")
    assert call.args == ("sh", "-c", "pwd")
    assert call.kwargs == {"workdir": "/project", "timeout": 3, "text": False}
    assert result.stdout.endswith("/project\n")


def test_a_timed_out_command_says_so_at_the_end_of_stderr(fake: FakeModal, run: Run) -> None:
    backend = backend_on(fake)
    box = run(backend.create("box"))

    result = run(backend.exec(box.sandbox_id, "echo err >&2; sleep 30", 1))

    assert (result.exit_code, result.timed_out) == (124, True)
    assert result.stderr == "err\n[sandbox] timed out after 1 s; the command was killed\n"


@pytest.mark.parametrize("name", ["task:42/step 3", "x" * 300, "ap-" + "a" * 22, "ünïcode"])
def test_names_modal_refuses_are_mapped_to_valid_stable_ones(name: str) -> None:
    mapped = modal_name(name)

    assert is_valid_object_name(mapped) and mapped == modal_name(name) and mapped != modal_name(name + "!")
    assert modal_name("session-7-g1") == "session-7-g1"
    with pytest.raises(ValueError):
        modal_name("")


def test_settings_come_from_modal_sandbox_env_vars() -> None:
    limits = ModalLimits.from_env({"MODAL_SANDBOX_TIMEOUT_S": "7200", "MODAL_SANDBOX_IDLE_TIMEOUT_S": "600",
                                   "MODAL_SANDBOX_CPU": "0.5", "MODAL_SANDBOX_MEMORY_MB": "512",
                                   "MODAL_SANDBOX_BLOCK_NETWORK": "false", "MODAL_SANDBOX_IMAGE": "node:22",
                                   "MODAL_SANDBOX_SNAPSHOT_TTL_S": "none"})

    assert (limits.timeout_s, limits.idle_timeout_s, limits.cpu, limits.memory_mb) == (7200, 600, 0.5, 512)
    assert (limits.block_network, limits.image, limits.snapshot_ttl_s) == (False, "node:22", None)
    assert ModalLimits.from_env({}) == ModalLimits()
    assert (ModalLimits().timeout_s, ModalLimits().block_network) == (3600, True)


def test_a_bad_setting_names_its_env_var() -> None:
    with pytest.raises(ValueError, match="MODAL_SANDBOX_TIMEOUT_S"):
        ModalLimits.from_env({"MODAL_SANDBOX_TIMEOUT_S": "90000"})  # Modal's limit is 24 h


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
