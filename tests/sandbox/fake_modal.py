"""An in-memory Modal: exactly the SDK surface sandbox/modal_backend.py uses, and no more.

`FakeModal(root).install(monkeypatch)` replaces, at the SDK boundary, `modal.App.lookup`,
`modal.Sandbox.create` / `from_name` / `from_id`, `modal.Image.debian_slim` / `from_registry` /
`from_id` and `modal.experimental.image_delete`. Each network call offers only its `.aio` form,
as the backend must use it.

Strict, so that it never accepts what Modal would refuse: every call is first bound to the
installed SDK's own signature (captured when this module is imported, before anything is
patched), so a misspelled or unknown keyword is the TypeError Modal's would be. A parameter
the SDK has but this fake does not model is a NotImplementedError, never silently ignored.
The behaviour kept is what Modal documents and its SDK source shows:

- a name is unique among the app's *running* sandboxes (AlreadyExistsError) and is freed when
  the sandbox ends; `from_name` finds running sandboxes only, `from_id` finished ones too;
- `Image.from_id` is lazy: `hydrate` on it raises ExecutionError ("cannot currently be
  hydrated on demand"); `Sandbox.create` loads it, and NotFoundError if it does not exist;
- a sandbox is a running container: what a command leaves in the background keeps running for
  the next command, until the sandbox ends;
- a sandbox ends at its `timeout`, killing every process in it; `poll` then says 124 (timeout) or 137
  (terminated); `terminate()` only asks for the end, `terminate(wait=True)` waits for it and
  raises SandboxTimeoutError on a sandbox that timed out, as `Sandbox.wait` does;
- exec on a finished sandbox raises ConflictError; a command past its exec timeout reports -1,
  one killed by signal N reports 128+N; `timeout` must be an int (it goes into a protobuf field);
- the file API raises NotFoundError("The Sandbox is unavailable...") for a finished sandbox
  *and* for an outage, through the SDK's own `translate_exec_errors`;
- `snapshot_filesystem` returns a (hydrated) image whose id maps to a copy of the container.

`with fake.outage():` makes Modal unreachable (`plane="data"`: only the container, exec and the
file API, while the control plane still answers).

What it does not keep is isolation: a sandbox is a directory (its container root, with the
workspace at `<root>/project`) and a command is a plain subprocess on this machine, started in
the container's directory for its `workdir`: absolute paths in a command reach the host. Only
benign commands belong in tests that use this.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import secrets
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import modal
import modal.container_process
import modal.experimental
import modal.io_streams
import modal.sandbox.sandbox
import pytest
from modal._utils.name_utils import is_valid_object_name
from modal._utils.sandbox_fs_utils import translate_exec_errors, validate_absolute_remote_path
from modal.exception import (
    AlreadyExistsError,
    ConflictError,
    ConnectionError,
    ExecutionError,
    InvalidError,
    NotFoundError,
    SandboxFilesystemIsADirectoryError,
    SandboxFilesystemNotADirectoryError,
    SandboxFilesystemNotFoundError,
    SandboxTimeoutError,
    ServiceError,
)
from modal.sandbox._common import _validate_exec_args
from modal.types import FileInfo, FileType

Plane = Literal["control", "data"]
_CONTAINER_ENV = "FAKE_MODAL_CONTAINER"  # the fake's own mark of a container's processes


def _signature(real: Any) -> inspect.Signature:
    """The signature of an SDK callable as its caller sees it (without self / cls)."""
    signature = inspect.signature(real)
    parameters = list(signature.parameters.values())
    if parameters and parameters[0].name in ("self", "cls"):
        parameters = parameters[1:]
    return signature.replace(parameters=parameters)


# Captured at import, before any test patches these names.
_SDK: dict[str, inspect.Signature] = {name: _signature(real) for name, real in {
    "App.lookup": modal.App.lookup,
    "Sandbox.create": modal.Sandbox.create,
    "Sandbox.from_name": modal.Sandbox.from_name,
    "Sandbox.from_id": modal.Sandbox.from_id,
    "Image.debian_slim": modal.Image.debian_slim,
    "Image.from_registry": modal.Image.from_registry,
    "Image.from_id": modal.Image.from_id,
    "Image.apt_install": modal.Image.apt_install,
    "Image.pip_install": modal.Image.pip_install,
    "Image.workdir": modal.Image.workdir,
    "Image.hydrate": modal.Image.hydrate,
    "image_delete": modal.experimental.image_delete,
    "sandbox.exec": modal.Sandbox.exec,
    "sandbox.poll": modal.Sandbox.poll,
    "sandbox.terminate": modal.Sandbox.terminate,
    "sandbox.snapshot_filesystem": modal.Sandbox.snapshot_filesystem,
    "sandbox.get_tags": modal.Sandbox.get_tags,
    "sandbox.set_tags": modal.Sandbox.set_tags,
    "filesystem.stat": modal.sandbox.sandbox.SandboxFilesystem.stat,
    "filesystem.list_files": modal.sandbox.sandbox.SandboxFilesystem.list_files,
    "filesystem.read_bytes": modal.sandbox.sandbox.SandboxFilesystem.read_bytes,
    "filesystem.write_bytes": modal.sandbox.sandbox.SandboxFilesystem.write_bytes,
    "process.wait": modal.container_process.ContainerProcess.wait,
    "stream.read": modal.io_streams.StreamReader.read,
}.items()}


def _bind(name: str, fn: Callable[..., Any], args: tuple[Any, ...],
          kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments of a call to `name`, checked as Modal's own function would check them."""
    bound = _SDK[name].bind(*args, **kwargs)  # a TypeError here is the one Modal's would raise
    modelled = inspect.signature(fn).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in modelled.values()):
        unmodelled = sorted(set(bound.arguments) - set(modelled))
        if unmodelled:
            raise NotImplementedError(f"the fake Modal does not model {name}({', '.join(unmodelled)}=...)")
    return bound.args, bound.kwargs


@dataclass
class Call:
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class _Aio:
    """One SDK network call. Modal's calls are blocking unless called as `.aio`; the backend
    must never block its event loop, so the blocking form fails here."""

    def __init__(self, fake: FakeModal, name: str, fn: Callable[..., Any], plane: Plane | None) -> None:
        self._fake, self._name, self._plane = fake, name, plane
        self.fn = fn  # what Modal does; a test may swap it for a failure

    async def aio(self, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = _bind(self._name, self.fn, args, kwargs)
        self._fake.calls.append(Call(self._name, args, kwargs))
        if self._plane is not None:
            self._fake.reach(self._plane)
        return await self.fn(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"{self._name} was called in its blocking form; use {self._name}.aio")


class _Local:
    """One SDK call that does no I/O (building up an image description)."""

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        self._name, self._fn = name, fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = _bind(self._name, self._fn, args, kwargs)
        return self._fn(*args, **kwargs)


@dataclass
class FakeApp:
    name: str


class FakeImage:
    """An image: how it was built (`recipe`), or the id of a snapshot (`object_id`). Like
    Modal's, it is hydrated (known to exist) only once loaded by a `Sandbox.create`, or when it
    came from `snapshot_filesystem`."""

    def __init__(self, fake: FakeModal, recipe: tuple[str, ...], object_id: str | None = None,
                 hydrated: bool = False) -> None:
        self.fake, self.recipe, self.object_id, self.hydrated = fake, recipe, object_id, hydrated
        self.apt_install = _Local("Image.apt_install", self._apt_install)
        self.pip_install = _Local("Image.pip_install", self._pip_install)
        self.workdir = _Local("Image.workdir", self._workdir)
        self.hydrate = _Aio(fake, "Image.hydrate", self._hydrate, None)

    def __repr__(self) -> str:
        return f"FakeImage({self.object_id or ' | '.join(self.recipe)})"

    def _apt_install(self, *packages: str) -> FakeImage:
        return FakeImage(self.fake, (*self.recipe, f"apt_install {' '.join(packages)}"))

    def _pip_install(self, *packages: str) -> FakeImage:
        return FakeImage(self.fake, (*self.recipe, f"pip_install {' '.join(packages)}"))

    def _workdir(self, path: str) -> FakeImage:
        return FakeImage(self.fake, (*self.recipe, f"workdir {path}"))

    async def _hydrate(self) -> FakeImage:
        if not self.hydrated:  # modal/_image.py `_Image.hydrate`
            raise ExecutionError("Images cannot currently be hydrated on demand; you can build an Image by "
                                 "running an App that uses it.")
        return self

    def load(self) -> None:
        """What `Sandbox.create` does with an image that is not hydrated: build or look it up."""
        if self.object_id is not None and self.object_id not in self.fake.images:
            raise NotFoundError(f"Image {self.object_id} not found")
        self.hydrated = True


class FakeModal:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.calls: list[Call] = []
        self.apps: set[str] = set()
        self.sandboxes: dict[str, FakeSandbox] = {}
        self.images: dict[str, Path] = {}
        self.image_ttl: dict[str, int | None] = {}
        self._down: Literal["all", "data"] | None = None
        self._ids = itertools.count(1)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeModal:
        monkeypatch.setattr(modal.App, "lookup", _Aio(self, "App.lookup", self._lookup, "control"))
        monkeypatch.setattr(modal.Sandbox, "create", _Aio(self, "Sandbox.create", self._create, "control"))
        monkeypatch.setattr(modal.Sandbox, "from_name", _Aio(self, "Sandbox.from_name", self._from_name, "control"))
        monkeypatch.setattr(modal.Sandbox, "from_id", _Aio(self, "Sandbox.from_id", self._from_id, "control"))
        monkeypatch.setattr(modal.Image, "debian_slim", _Local("Image.debian_slim", self._debian_slim))
        monkeypatch.setattr(modal.Image, "from_registry", _Local("Image.from_registry", self._from_registry))
        monkeypatch.setattr(modal.Image, "from_id", _Local("Image.from_id", self._image_from_id))
        monkeypatch.setattr(modal.experimental, "image_delete",
                            _Aio(self, "image_delete", self._image_delete, "control"))
        return self

    def close(self) -> None:
        """End every sandbox still running, as a test's end must (their processes run on this machine)."""
        for sandbox in self.sandboxes.values():
            sandbox.end("terminated")
            for process in sandbox.started:
                process._transport.close()  # type: ignore[attr-defined]  # its pipes, now that nothing writes

    @contextmanager
    def outage(self, plane: Literal["all", "data"] = "all") -> Iterator[None]:
        """Modal cannot be reached: every call fails (`"data"`: only calls into the container
        do, exec and the file API, while the control plane still answers)."""
        self._down = plane
        try:
            yield
        finally:
            self._down = None

    def reach(self, plane: Plane) -> None:
        """Raise what the SDK raises, once its retries run out, when `plane` is down."""
        if self._down == "all" or (self._down == "data" and plane == "data"):
            if plane == "control":
                raise ServiceError("UNAVAILABLE: the Modal server could not be reached")
            raise ConnectionError("the connection to the sandbox's command router failed")

    def calls_to(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    def running(self, app_name: str, name: str) -> FakeSandbox | None:
        return next((sb for sb in self.sandboxes.values()
                     if sb.app_name == app_name and sb.name == name and sb.running()), None)

    async def _lookup(self, name: str, *, create_if_missing: bool = False) -> FakeApp:
        if name not in self.apps and not create_if_missing:
            raise NotFoundError(f"App '{name}' not found")
        self.apps.add(name)
        return FakeApp(name)

    def _debian_slim(self) -> FakeImage:
        return FakeImage(self, ("debian_slim",))

    def _from_registry(self, tag: str) -> FakeImage:
        return FakeImage(self, (f"from_registry {tag}",))

    def _image_from_id(self, image_id: str) -> FakeImage:
        return FakeImage(self, ("from_id",), image_id)  # lazy: nothing is asked until it is used

    async def _create(self, *, app: FakeApp, name: str | None = None, tags: dict[str, str] | None = None,
                      image: FakeImage | None = None, timeout: int | None = 300, idle_timeout: int | None = None,
                      workdir: str | None = None, cpu: float | None = None, memory: int | None = None,
                      block_network: bool = False) -> FakeSandbox:
        if not isinstance(timeout, int) or (idle_timeout is not None and not isinstance(idle_timeout, int)):
            raise TypeError(f"timeouts go into protobuf integer fields, not {timeout!r} / {idle_timeout!r}")
        image = image if image is not None else self._debian_slim()
        if not image.hydrated:
            image.load()  # the SDK loads the image before it asks for the sandbox
        if name is not None and not is_valid_object_name(name):
            raise InvalidError(f"Invalid Sandbox name: {name!r}")
        if name is not None and self.running(app.name, name):
            raise AlreadyExistsError(f"Sandbox with name {name!r} already exists in app {app.name!r}")
        # Unique beyond this test run too: a command's AGENT_OP_ID names its sandbox, and stop_op
        # scans every process of this machine, where another run of these tests may be going on.
        object_id = f"sb-fake{next(self._ids):05d}{secrets.token_hex(4)}"
        root = self.root / object_id
        if image.object_id is not None:
            shutil.copytree(self.images[image.object_id], root, symlinks=True)
        else:
            root.mkdir(parents=True)
        if workdir is not None:
            (root / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        sandbox = FakeSandbox(self, object_id, app.name, name, root, time.time() + timeout, dict(tags or {}))
        sandbox.image, sandbox.workdir, sandbox.idle_timeout = image, workdir, idle_timeout
        sandbox.cpu, sandbox.memory, sandbox.block_network = cpu, memory, block_network
        self.sandboxes[object_id] = sandbox
        return sandbox

    async def _from_name(self, app_name: str, name: str) -> FakeSandbox:
        sandbox = self.running(app_name, name)
        if sandbox is None:
            raise NotFoundError(f"Sandbox with name {name!r} not found in app {app_name!r}")
        return sandbox

    async def _from_id(self, sandbox_id: str) -> FakeSandbox:
        if sandbox_id not in self.sandboxes:
            raise NotFoundError(f"Sandbox {sandbox_id} not found")
        return self.sandboxes[sandbox_id]

    async def _image_delete(self, image_id: str) -> None:
        if image_id not in self.images:
            raise NotFoundError(f"Image {image_id} not found")
        shutil.rmtree(self.images.pop(image_id))

    def new_image(self, source: Path, ttl: int | None) -> FakeImage:
        image_id = f"im-fake{next(self._ids):05d}"
        shutil.copytree(source, self.root / image_id, symlinks=True)
        self.images[image_id], self.image_ttl[image_id] = self.root / image_id, ttl
        return FakeImage(self, ("snapshot",), image_id, hydrated=True)


class FakeSandbox:
    image: FakeImage
    workdir: str | None
    idle_timeout: int | None
    cpu: float | None
    memory: int | None
    block_network: bool

    def __init__(self, fake: FakeModal, object_id: str, app_name: str, name: str | None, root: Path,
                 deadline: float, tags: dict[str, str]) -> None:
        self.fake, self.object_id, self.app_name, self.name = fake, object_id, app_name, name
        self.root, self.deadline, self.tags = root, deadline, tags
        self.ended: str | None = None  # "terminated" | "timeout"
        self.processes: set[asyncio.subprocess.Process] = set()  # commands still running
        self.started: list[asyncio.subprocess.Process] = []  # every command it ever ran
        self.filesystem = FakeFilesystem(self)
        for call, plane in (("exec", "data"), ("poll", "control"), ("terminate", "control"),
                            ("snapshot_filesystem", "control"), ("get_tags", "control"), ("set_tags", "control")):
            setattr(self, call, _Aio(fake, f"sandbox.{call}", getattr(self, f"_{call}"), plane))

    def running(self) -> bool:
        if self.ended is None and time.time() >= self.deadline:
            self.end("timeout")
        return self.ended is None

    def end(self, why: str) -> None:
        """What Modal does when a sandbox ends: every process in its container dies (what commands
        left in the background too) and the container is gone."""
        if self.ended is None:
            self.ended = why
            for process in list(self.processes):
                _kill_group(process)
            _kill_container(self.object_id)
            shutil.rmtree(self.root, ignore_errors=True)

    async def _poll(self) -> int | None:
        return None if self.running() else 124 if self.ended == "timeout" else 137

    async def _terminate(self, *, wait: bool = False) -> int | None:
        if not wait:  # Modal ends it soon after; until then it runs and keeps its name
            if self.running():
                asyncio.get_running_loop().call_later(0.2, self.end, "terminated")
            return None
        if not self.running() and self.ended == "timeout":
            raise SandboxTimeoutError()
        self.end("terminated")
        return await self._poll()

    async def _get_tags(self) -> dict[str, str]:
        return dict(self.tags)

    async def _set_tags(self, tags: dict[str, str]) -> None:
        self.tags = dict(tags)

    async def _snapshot_filesystem(self, timeout: int = 55, *, ttl: int | None = 30 * 86400) -> FakeImage:
        if not self.running():
            raise ConflictError("Sandbox already finished")
        return self.fake.new_image(self.root, ttl)

    async def _exec(self, *args: str, timeout: int | None = None, workdir: str | None = None,
                    env: dict[str, str | None] | None = None, text: bool = True) -> FakeProcess:
        if text:
            raise NotImplementedError("the fake Modal streams bytes only (text=False)")
        if timeout is not None and not isinstance(timeout, int):
            raise TypeError(f"an exec timeout goes into a protobuf integer field, not {timeout!r}")
        if workdir is not None and not workdir.startswith("/"):
            raise InvalidError(f"workdir must be an absolute path, got: {workdir}")
        _validate_exec_args(args)
        if not self.running():
            raise ConflictError("Sandbox already finished")
        cwd = self.root / (workdir or self.workdir or "/").lstrip("/")
        # Every process of the container carries its id, inherited by all it starts, so that the
        # container's end can find what commands left running in the background (a container's
        # processes outlive the command that started them, until the sandbox ends).
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                       _CONTAINER_ENV: self.object_id}
        environment.update({key: value for key, value in (env or {}).items() if value is not None})
        process = await asyncio.create_subprocess_exec(
            *args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, env=environment)
        self.processes.add(process)
        self.started.append(process)
        return FakeProcess(self, process, timeout)


class FakeProcess:
    def __init__(self, sandbox: FakeSandbox, process: asyncio.subprocess.Process, timeout: int | None) -> None:
        assert process.stdout is not None and process.stderr is not None
        self.stdout, self.stderr = FakeStream(sandbox.fake, process.stdout), FakeStream(sandbox.fake, process.stderr)
        self._sandbox, self._process, self._timeout = sandbox, process, timeout
        self._exit = asyncio.ensure_future(self._watch())
        self.wait = _Aio(sandbox.fake, "process.wait", self._wait, None)

    async def _wait(self) -> int:
        return await asyncio.shield(self._exit)

    async def _watch(self) -> int:
        """Modal's side of a command: it dies at its exec timeout or with its sandbox."""
        left = self._sandbox.deadline - time.time()
        budget = min(left, self._timeout) if self._timeout else left
        timed_out = False
        try:
            await asyncio.wait_for(_exited(self._process), max(budget, 0))
        except TimeoutError:
            if self._timeout and self._timeout <= left:
                timed_out = True
                _kill_group(self._process)
            else:
                self._sandbox.end("timeout")
            await _exited(self._process)
        finally:
            self._sandbox.processes.discard(self._process)
        code = self._process.returncode
        assert code is not None
        return -1 if timed_out else 128 - code if code < 0 else code


class FakeStream:
    """A command's stdout or stderr: iterated chunk by chunk, or `read` whole."""

    def __init__(self, fake: FakeModal, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self.read = _Aio(fake, "stream.read", self._read, None)

    async def _read(self) -> bytes:
        return await self._reader.read()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while chunk := await self._reader.read(1 << 16):
            yield chunk


class FakeFilesystem:
    """`sandbox.filesystem`: absolute paths in the container, mapped under its root. Modal runs
    each call as a command in the container, so an outage of that path, or a finished
    sandbox, comes out of the SDK's `translate_exec_errors` as NotFoundError."""

    def __init__(self, sandbox: FakeSandbox) -> None:
        self._sandbox = sandbox
        for call in ("stat", "list_files", "read_bytes", "write_bytes"):
            setattr(self, call, _Aio(sandbox.fake, f"filesystem.{call}", getattr(self, f"_{call}"), None))

    def _local(self, operation: str, remote: str) -> Path:
        validate_absolute_remote_path(remote, operation)
        with translate_exec_errors(operation, remote):
            self._sandbox.fake.reach("data")
            if not self._sandbox.running():
                raise NotFoundError(f"Task for sandbox {self._sandbox.object_id} not found")
        return self._sandbox.root / remote.lstrip("/")

    async def _stat(self, remote_path: str) -> FileInfo:
        local = self._local("stat", remote_path)
        with _filesystem_errors(remote_path):
            return _info(local, os.lstat(local), remote_path)

    async def _list_files(self, remote_path: str) -> list[FileInfo]:
        local = self._local("list_files", remote_path)
        with _filesystem_errors(remote_path), os.scandir(local) as entries:
            return [_info(Path(e.path), e.stat(follow_symlinks=False), f"{remote_path.rstrip('/')}/{e.name}")
                    for e in entries]

    async def _read_bytes(self, remote_path: str) -> bytes:
        local = self._local("read_bytes", remote_path)
        with _filesystem_errors(remote_path):
            return local.read_bytes()

    async def _write_bytes(self, data: bytes | bytearray | memoryview, remote_path: str) -> None:
        local = self._local("write_bytes", remote_path)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("data must be bytes-like")
        with _filesystem_errors(remote_path):
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


async def _exited(process: asyncio.subprocess.Process) -> int:
    """The exit status, as soon as the process has exited. (`Process.wait()` also waits until
    its pipes close, which a child left running in the background can put off forever; Modal
    reports the exit of the command it started.)"""
    while process.returncode is None:
        await asyncio.sleep(0.02)
    return process.returncode


def _kill_container(object_id: str) -> None:
    """SIGKILL every process of this machine that belongs to the container `object_id`, until none
    is left (a process killed but not yet reaped has an empty environment)."""
    mark = f"{_CONTAINER_ENV}={object_id}".encode()
    for _ in range(100):
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if mark in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    found = True
                    os.kill(int(entry), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
        if not found:
            return
        time.sleep(0.02)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
