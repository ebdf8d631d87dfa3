"""Fixtures for the sandbox suites: a fresh backend per test.

`make_backend(**limits)` builds one more backend of the kind under test; `backend` is one
with default limits. The contract suite is parametrised over BACKENDS: `local` runs on this
machine, `modal-fake` is the Modal backend over a fake of Modal's SDK (fake_modal.py). Another
backend joins every contract test by adding a factory here.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sandbox import LocalLimits, SandboxBackend, create_backend

T = TypeVar("T")
TICKER = "while true; do echo tick >> ticks.txt; sleep 0.1; done"  # a command that runs until stopped
Run = Callable[[Coroutine[Any, Any, T]], T]
MakeBackend = Callable[..., SandboxBackend]


@pytest.fixture(scope="session")
def run() -> Iterator[Run]:
    """Run a coroutine to completion on one event loop shared by the whole session."""
    with asyncio.Runner() as runner:
        yield runner.run


@pytest.fixture
def sandbox_root(tmp_path: Path) -> Iterator[Path]:
    """Where a test's backends keep their state: pytest's tmp_path, whose parents are private
    (0700), as a clone under /root would be. Sandboxes work from anywhere."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)  # workspaces of the abuse suite are large


def _local(root: Path, made: list[Any], monkeypatch: pytest.MonkeyPatch) -> MakeBackend:
    def make(**limits: Any) -> SandboxBackend:
        backend = create_backend("local", root / f"b{len(made)}", LocalLimits(**limits))
        made.append(backend)
        return backend
    return make


def _modal_fake(root: Path, made: list[Any], monkeypatch: pytest.MonkeyPatch) -> MakeBackend:
    """The Modal backend over an in-memory fake of Modal's SDK (fake_modal.py). The same
    scenarios against a real account: TestContractOnRealModal in test_modal_backend.py."""
    from sandbox.modal_backend import ModalBackend, ModalLimits

    from .fake_modal import FakeModal

    made.append(FakeModal(root / "modal").install(monkeypatch))  # closed at the end: its sandboxes end

    def make(ttl_s: int | None = None, **limits: Any) -> SandboxBackend:
        if ttl_s is not None:
            limits["timeout_s"] = ttl_s  # the contract's TTL is Modal's sandbox timeout
        backend = ModalBackend("contract-tests", ModalLimits(**limits))
        made.append(backend)
        return backend
    return make


# name -> factory(root, made, monkeypatch); monkeypatch is for a fake of a remote provider's SDK.
BACKENDS: dict[str, Callable[[Path, list[Any], pytest.MonkeyPatch], MakeBackend]] = {
    "local": _local,
    "modal-fake": _modal_fake,
}


@pytest.fixture(params=sorted(BACKENDS))
def make_backend(request: pytest.FixtureRequest, sandbox_root: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeBackend]:
    made: list[Any] = []
    yield BACKENDS[request.param](sandbox_root, made, monkeypatch)
    for backend in made:
        if hasattr(backend, "close"):
            backend.close()


@pytest.fixture
def backend(make_backend: MakeBackend) -> SandboxBackend:
    return make_backend()


@pytest.fixture
def local(sandbox_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeBackend]:
    """Local backends only, for the abuse suite and local specifics."""
    made: list[Any] = []
    yield _local(sandbox_root, made, monkeypatch)
    for backend in made:
        backend.close()


@pytest.fixture
def processes_with() -> Callable[[str], list[int]]:
    """Pids on this machine whose command line contains a token."""

    def find(token: str) -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                try:
                    if token.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                        found.append(int(entry))
                except OSError:
                    pass
        return found

    return find
