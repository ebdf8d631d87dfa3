"""An in-memory Modal: exactly the SDK surface sandbox/modal_backend.py uses, and no more.

`FakeModal(root).install(monkeypatch)` replaces, at the SDK boundary, `modal.App.lookup`,
`modal.Sandbox.create` / `from_name` / `from_id`, `modal.Image.debian_slim` / `from_registry` /
`from_id` and `modal.experimental.image_delete`. Each offers only its `.aio` form, as the
backend must use it. The fake keeps the behaviour Modal documents and its SDK source shows:

- a name is unique among the app's *running* sandboxes (AlreadyExistsError) and is freed when
  the sandbox ends; `from_name` finds running sandboxes only, `from_id` finished ones too;
- a sandbox ends at its `timeout`, killing its commands; `terminate(wait=True)` on one that
  timed out raises SandboxTimeoutError, as `Sandbox.wait` does;
- exec on a finished sandbox raises ConflictError, the file API NotFoundError; a command past
  its exec timeout reports -1, one killed by signal N reports 128+N;
- `snapshot_filesystem` returns an image whose id maps to a copy of the container's files.

What it does not keep is isolation: a sandbox is a directory (its container root, with the
workspace at `<root>/project`) and a command is a plain subprocess in it. Isolation is Modal's
job; only benign commands belong in tests that use this.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import modal
import modal.experimental
import pytest
from modal._utils.name_utils import is_valid_object_name
from modal.exception import (
    AlreadyExistsError,
    ConflictError,
    InvalidError,
    NotFoundError,
    SandboxFilesystemIsADirectoryError,
    SandboxFilesystemNotADirectoryError,
    SandboxFilesystemNotFoundError,
    SandboxTimeoutError,
)
from modal.types import FileInfo, FileType


@dataclass
class Call:
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class _Aio:
    """One SDK call. Modal's calls are blocking unless called as `.aio`; the backend must
    never block its event loop, so the blocking form fails here."""

    def __init__(self, fake: FakeModal, name: str, fn: Callable[..., Any]) -> None:
        self._fake, self._name = fake, name
        self.fn = fn  # what Modal does; a test may swap it for a failure

    async def aio(self, *args: Any, **kwargs: Any) -> Any:
        self._fake.calls.append(Call(self._name, args, kwargs))
        return await self.fn(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{self._name} was called in its blocking form; use {self._name}.aio")


@dataclass
class FakeApp:
    name: str


@dataclass
class FakeImage:
    """An image: how it was built (`recipe`), or the id of a snapshot (`object_id`)."""

    fake: FakeModal = field(repr=False, compare=False)
    recipe: tuple[str, ...]
    object_id: str | None = None

    def apt_install(self, *packages: str) -> FakeImage:
        return replace(self, recipe=(*self.recipe, f"apt_install {' '.join(packages)}"))

    def workdir(self, path: str) -> FakeImage:
        return replace(self, recipe=(*self.recipe, f"workdir {path}"))

    @property
    def hydrate(self) -> _Aio:
        async def hydrate() -> FakeImage:
            if self.object_id is not None and self.object_id not in self.fake.images:
                raise NotFoundError(f"Image {self.object_id} not found")
            return self
        return _Aio(self.fake, "Image.hydrate", hydrate)


class FakeModal:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.calls: list[Call] = []
        self.sandboxes: dict[str, FakeSandbox] = {}
        self.images: dict[str, Path] = {}
        self._ids = itertools.count(1)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeModal:
        monkeypatch.setattr(modal.App, "lookup", _Aio(self, "App.lookup", self._lookup))
        monkeypatch.setattr(modal.Sandbox, "create", _Aio(self, "Sandbox.create", self._create))
        monkeypatch.setattr(modal.Sandbox, "from_name", _Aio(self, "Sandbox.from_name", self._from_name))
        monkeypatch.setattr(modal.Sandbox, "from_id", _Aio(self, "Sandbox.from_id", self._from_id))
        monkeypatch.setattr(modal.Image, "debian_slim", lambda: FakeImage(self, ("debian_slim",)))
        monkeypatch.setattr(modal.Image, "from_registry", lambda tag: FakeImage(self, (f"from_registry {tag}",)))
        monkeypatch.setattr(modal.Image, "from_id", lambda image_id: FakeImage(self, ("from_id",), image_id))
        monkeypatch.setattr(modal.experimental, "image_delete", _Aio(self, "image_delete", self._image_delete))
        return self

    def calls_to(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    def running(self, app_name: str, name: str) -> FakeSandbox | None:
        return next((sb for sb in self.sandboxes.values()
                     if sb.app_name == app_name and sb.name == name and sb.running()), None)

    async def _lookup(self, name: str, *, create_if_missing: bool = False, **_: Any) -> FakeApp:
        assert create_if_missing, "the backend's app is created on first use"
        return FakeApp(name)

    async def _create(self, *args: str, app: FakeApp, name: str | None = None, image: FakeImage | None = None,
                      timeout: int = 300, tags: dict[str, str] | None = None, **options: Any) -> FakeSandbox:
        if name is not None and not is_valid_object_name(name):
            raise InvalidError(f"Invalid Sandbox name: {name!r}")
        if name is not None and self.running(app.name, name):
            raise AlreadyExistsError(f"Sandbox with name {name!r} already exists in app {app.name!r}")
        object_id = f"sb-fake{next(self._ids):05d}"
        root = self.root / object_id
        if image is not None and image.object_id is not None:
            shutil.copytree(self.images[image.object_id], root, symlinks=True)
        else:
            (root / "project").mkdir(parents=True)
        sandbox = FakeSandbox(self, object_id, app.name, name, root, time.time() + timeout, dict(tags or {}))
        self.sandboxes[object_id] = sandbox
        return sandbox

    async def _from_name(self, app_name: str, name: str, **_: Any) -> FakeSandbox:
        sandbox = self.running(app_name, name)
        if sandbox is None:
            raise NotFoundError(f"Sandbox with name {name!r} not found in app {app_name!r}")
        return sandbox

    async def _from_id(self, sandbox_id: str, **_: Any) -> FakeSandbox:
        if sandbox_id not in self.sandboxes:
            raise NotFoundError(f"Sandbox {sandbox_id} not found")
        return self.sandboxes[sandbox_id]

    async def _image_delete(self, image_id: str, **_: Any) -> None:
        if image_id not in self.images:
            raise NotFoundError(f"Image {image_id} not found")
        shutil.rmtree(self.images.pop(image_id))

    def new_image(self, source: Path) -> FakeImage:
        image_id = f"im-fake{next(self._ids):05d}"
        shutil.copytree(source, self.root / image_id, symlinks=True)
        self.images[image_id] = self.root / image_id
        return FakeImage(self, ("snapshot",), image_id)


class FakeSandbox:
    def __init__(self, fake: FakeModal, object_id: str, app_name: str, name: str | None, root: Path,
                 deadline: float, tags: dict[str, str]) -> None:
        self.fake, self.object_id, self.app_name, self.name = fake, object_id, app_name, name
        self.root, self.deadline, self.tags = root, deadline, tags
        self.ended: str | None = None  # "terminated" | "timeout"
        self.processes: set[asyncio.subprocess.Process] = set()
        self.filesystem = FakeFilesystem(self)
        for call in ("exec", "poll", "terminate", "snapshot_filesystem", "get_tags", "set_tags"):
            setattr(self, call, _Aio(fake, f"sandbox.{call}", getattr(self, f"_{call}")))

    def running(self) -> bool:
        if self.ended is None and time.time() >= self.deadline:
            self.end("timeout")
        return self.ended is None

    def end(self, why: str) -> None:
        """What Modal does when a sandbox ends: its commands die and its container is gone."""
        if self.ended is None:
            self.ended = why
            for process in list(self.processes):
                _kill_group(process)
            shutil.rmtree(self.root, ignore_errors=True)

    async def _poll(self) -> int | None:
        return None if self.running() else 0

    async def _terminate(self, *, wait: bool = False) -> None:
        if not self.running() and self.ended == "timeout" and wait:
            raise SandboxTimeoutError()
        self.end("terminated")

    async def _get_tags(self) -> dict[str, str]:
        return dict(self.tags)

    async def _set_tags(self, tags: dict[str, str]) -> None:
        self.tags = dict(tags)

    async def _snapshot_filesystem(self, timeout: int = 55, *, ttl: int | None = 30 * 86400) -> FakeImage:
        if not self.running():
            raise ConflictError("Sandbox already finished")
        return self.fake.new_image(self.root)

    async def _exec(self, *args: str, workdir: str | None = None, timeout: int | None = None,
                    text: bool = True, **_: Any) -> FakeProcess:
        assert not text, "ModalBackend reads output as bytes"
        if not self.running():
            raise ConflictError("Sandbox already finished")
        cwd = self.root / (workdir or "/").lstrip("/")
        process = await asyncio.create_subprocess_exec(
            *args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"})
        self.processes.add(process)
        return FakeProcess(self, process, timeout)


class FakeProcess:
    def __init__(self, sandbox: FakeSandbox, process: asyncio.subprocess.Process, timeout: int | None) -> None:
        assert process.stdout is not None and process.stderr is not None
        self.stdout, self.stderr = FakeStream(sandbox.fake, process.stdout), FakeStream(sandbox.fake, process.stderr)
        self._sandbox, self._process, self._timeout = sandbox, process, timeout
        self._exit = asyncio.ensure_future(self._watch())
        self.wait = _Aio(sandbox.fake, "process.wait", lambda: asyncio.shield(self._exit))

    async def _watch(self) -> int:
        """Modal's side of a command: it dies at its exec timeout or with its sandbox."""
        left = self._sandbox.deadline - time.time()
        budget = min(left, self._timeout) if self._timeout else left
        timed_out = False
        try:
            await asyncio.wait_for(self._process.wait(), max(budget, 0))
        except TimeoutError:
            if self._timeout and self._timeout <= left:
                timed_out = True
                _kill_group(self._process)
            else:
                self._sandbox.end("timeout")
            await self._process.wait()
        finally:
            self._sandbox.processes.discard(self._process)
        code = self._process.returncode
        assert code is not None
        return -1 if timed_out else 128 - code if code < 0 else code


class FakeStream:
    """A command's stdout or stderr: iterated chunk by chunk, or `read` whole."""

    def __init__(self, fake: FakeModal, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self.read = _Aio(fake, "stream.read", reader.read)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while chunk := await self._reader.read(1 << 16):
            yield chunk


class FakeFilesystem:
    """`sandbox.filesystem`: absolute paths in the container, mapped under its root."""

    def __init__(self, sandbox: FakeSandbox) -> None:
        self._sandbox = sandbox
        for call in ("stat", "list_files", "read_bytes", "write_bytes"):
            setattr(self, call, _Aio(sandbox.fake, f"filesystem.{call}", getattr(self, f"_{call}")))

    def _local(self, remote: str) -> Path:
        if not remote.startswith("/"):
            raise InvalidError("Sandbox.filesystem currently only supports absolute remote_path values")
        if not self._sandbox.running():
            raise NotFoundError("The Sandbox is unavailable. This Sandbox may have already shut down.")
        return self._sandbox.root / remote.lstrip("/")

    async def _stat(self, remote: str) -> FileInfo:
        local = self._local(remote)
        with _filesystem_errors(remote):
            return _info(local, os.lstat(local), remote)

    async def _list_files(self, remote: str) -> list[FileInfo]:
        local = self._local(remote)
        with _filesystem_errors(remote), os.scandir(local) as entries:
            return [_info(Path(e.path), e.stat(follow_symlinks=False), f"{remote.rstrip('/')}/{e.name}")
                    for e in entries]

    async def _read_bytes(self, remote: str) -> bytes:
        local = self._local(remote)
        with _filesystem_errors(remote):
            return local.read_bytes()

    async def _write_bytes(self, data: bytes, remote: str) -> None:
        local = self._local(remote)
        with _filesystem_errors(remote):
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(data)


@contextmanager
def _filesystem_errors(remote: str) -> Iterator[None]:
    """The file API's errors for what the kernel said."""
    try:
        yield
    except FileNotFoundError:
        raise SandboxFilesystemNotFoundError(f"No such file or directory: {remote}") from None
    except (NotADirectoryError, FileExistsError):
        raise SandboxFilesystemNotADirectoryError(f"Not a directory: {remote}") from None
    except IsADirectoryError:
        raise SandboxFilesystemIsADirectoryError(f"Is a directory: {remote}") from None


def _info(local: Path, st: os.stat_result, remote: str) -> FileInfo:
    kind = (FileType.SYMLINK if stat.S_ISLNK(st.st_mode) else FileType.DIRECTORY if stat.S_ISDIR(st.st_mode)
            else FileType.FILE)
    return FileInfo(name=local.name, path=remote, type=kind, size=st.st_size, mode=st.st_mode,
                    permissions=stat.filemode(st.st_mode), owner=str(st.st_uid), group=str(st.st_gid),
                    modified_time=st.st_mtime,
                    symlink_target=os.readlink(local) if kind == FileType.SYMLINK else None)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
