"""The Modal backend: a sandbox is a Modal Sandbox, a command is `Sandbox.exec`.

The SDK is used through a handful of names, every network call in its `.aio` form, so the
tests replace exactly those (tests/sandbox/fake_modal.py): `modal.App.lookup`,
`modal.Sandbox.create` / `from_name` / `from_id`, `modal.Image.debian_slim` / `from_registry` /
`from_id`, `modal.experimental.image_delete`; on a sandbox `exec`, `poll`, `terminate`,
`snapshot_filesystem`, `get_tags` / `set_tags` and `filesystem.stat` / `list_files` /
`read_bytes` / `write_bytes`. Credentials are Modal's own (`MODAL_TOKEN_ID`,
`MODAL_TOKEN_SECRET`, or ~/.modal.toml); this module never reads them.

Retry safety, because the `Sandbox` object journals each call and a retry may follow a success
that was never recorded:

- `create` passes the deterministic name to Modal. Modal keeps a name unique among *running*
  sandboxes of the app and frees it when the sandbox ends, so a retry gets AlreadyExistsError
  and the live sandbox is looked up with `from_name` and returned. The sandbox id is Modal's
  object id (`sb-...`), new for every sandbox, so a stale id never reaches a successor.
- `snapshot` records the image id in a tag on the sandbox; a retry finds it there.
- `terminate` and `delete_snapshot` treat "not found" and "already finished" as success.

File APIs apply the workspace path rules of sandbox/paths.py through `filesystem.stat`. Inside
Modal they are about consistency, not containment: the whole container is the sandbox, so
a symlink out of /project reaches only files any command could read anyway.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import math
import re
import tempfile
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import modal
import modal.exception
import modal.experimental
from modal.types import FileInfo, FileType
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sandbox import paths
from sandbox.limits import MB
from sandbox.limits import from_env as settings_from_env
from sandbox.limits import none_if_blank
from sandbox.output import TIMEOUT_EXIT_CODE, StreamCapture, exec_result, full_log, full_log_path
from sandbox.protocol import (
    ExecResult,
    FileEntry,
    FileMissing,
    PathRejected,
    SandboxGone,
    SandboxInfo,
    SnapshotMissing,
    WorkspaceFull,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
MOUNT_POINT = paths.MOUNT_POINT  # the workspace, and every command's working directory
DEFAULT_APP_NAME = "durable-coding-agent"
_SIGKILLED = 128 + 9
_EXPIRES_TAG = "expires-at"
_MAX_LINKS = 40  # like the kernel's limit on nested symlinks
_MODAL_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_APP_ID = re.compile(r"ap-[A-Za-z0-9]{22}")
_CREATE_ATTEMPTS = 3
_EXEC_GRACE_S = 30.0  # Modal kills a command at its timeout; this only guards against a hung stream
_PARALLEL = 16  # file API calls in flight at once
_HANDLES = 256  # sandbox handles kept, so each call does not look its sandbox up again


class ModalLimits(BaseModel):
    """What a Modal sandbox gets. Every field can be set as `MODAL_SANDBOX_<FIELD>`."""

    model_config = ConfigDict(frozen=True)

    timeout_s: int = Field(
        default=3600, ge=1, le=86400,
        description="Lifetime of a sandbox (Modal's `timeout`, at most 24 h); `expires_at` is create time plus this.")
    idle_timeout_s: int | None = Field(
        default=None, ge=1,
        description="Modal ends a sandbox idle this long. Unset or 'none': only the Sandbox object's own idle "
        "suspend (which snapshots first) applies.")
    cpu: float = Field(default=1.0, gt=0, description="CPU cores requested (Modal's `cpu`).")
    memory_mb: int = Field(default=1024, ge=128, description="Memory requested in MiB (Modal's `memory`).")
    image: str | None = Field(
        default=None,
        description="A registry image such as 'python:3.12-slim'. Unset: Modal's debian_slim (Python) plus git.")
    block_network: bool = Field(default=True, description="Cut the sandbox off from the network.")
    snapshot_ttl_s: int | None = Field(
        default=30 * 86400, ge=60,
        description="How long Modal keeps a snapshot image. 'none': until it is deleted.")
    output_head_bytes: int = Field(default=8192, ge=0, description="Bytes kept from the start of each stream.")
    output_tail_bytes: int = Field(default=8192, ge=0, description="Bytes kept from the end of each stream.")
    max_output_mb: int = Field(default=16, ge=1, description="Full output kept per stream when it is truncated.")

    _unset = field_validator("idle_timeout_s", "image", "snapshot_ttl_s", mode="before")(none_if_blank)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ModalLimits:
        """Defaults overridden by any `MODAL_SANDBOX_<FIELD>` variable that is set."""
        return settings_from_env(cls, "MODAL_SANDBOX_", "Modal sandbox settings", environ)



def modal_name(name: str) -> str:
    """The Modal sandbox name for a sandbox name: the name itself when Modal accepts it (64
    characters of `[A-Za-z0-9._-]`), else a sanitised prefix plus a hash. Deterministic, so a
    retry asks Modal for the same name."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"sandbox and snapshot names must be non-empty strings, not {name!r}")
    if _MODAL_NAME.fullmatch(name) and not _APP_ID.fullmatch(name):
        return name
    prefix = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:40]
    return f"{prefix}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def _snapshot_tag(snapshot_name: str) -> str:
    if not isinstance(snapshot_name, str) or not snapshot_name:
        raise ValueError(f"sandbox and snapshot names must be non-empty strings, not {snapshot_name!r}")
    return f"snapshot-{hashlib.sha256(snapshot_name.encode()).hexdigest()[:24]}"


def _remote(parts: list[str]) -> str:
    return "/".join([MOUNT_POINT, *parts])


class ModalBackend:
    kind = "modal"

    def __init__(self, app_name: str, limits: ModalLimits) -> None:
        self.app_name, self.limits = app_name, limits
        self._app: Any = None
        self._handles: OrderedDict[str, Any] = OrderedDict()

    # ----- the SDK boundary: lookups -----------------------------------------------------

    async def _lookup_app(self) -> Any:
        if self._app is None:
            self._app = await modal.App.lookup.aio(self.app_name, create_if_missing=True)
        return self._app

    def _base_image(self) -> Any:
        image = (modal.Image.from_registry(self.limits.image) if self.limits.image
                 else modal.Image.debian_slim().apt_install("git"))
        return image.workdir(MOUNT_POINT)

    async def _snapshot_image(self, snapshot_id: str) -> Any:
        if not snapshot_id.startswith("im-"):  # taken by another backend: not an image of ours
            raise SnapshotMissing(f"snapshot {snapshot_id} is not a Modal image")
        image = modal.Image.from_id(snapshot_id)
        try:
            await image.hydrate.aio()
        except modal.exception.NotFoundError:
            raise SnapshotMissing(f"snapshot {snapshot_id} does not exist") from None
        return image

    async def _sandbox(self, sandbox_id: str) -> Any:
        """A handle on `sandbox_id` (cached: a lookup is a round trip). Raises SandboxGone."""
        if sandbox_id in self._handles:
            self._handles.move_to_end(sandbox_id)
            return self._handles[sandbox_id]
        try:
            sb = await modal.Sandbox.from_id.aio(sandbox_id)
        except modal.exception.NotFoundError:
            raise SandboxGone(f"sandbox {sandbox_id} does not exist") from None
        return self._keep(sb)

    def _keep(self, sb: Any) -> Any:
        self._handles[sb.object_id] = sb
        while len(self._handles) > _HANDLES:
            self._handles.popitem(last=False)
        return sb

    @staticmethod
    async def _finished(sb: Any) -> bool:
        try:
            return await sb.poll.aio() is not None
        except modal.exception.NotFoundError:
            return True

    async def _on(self, sandbox_id: str, operation: Callable[[Any], Awaitable[T]]) -> T:
        """Run `operation` on the sandbox, turning "it is not there any more" into SandboxGone.

        Modal reports a dead sandbox in several ways (NotFoundError from the file API, a
        ConflictError or a generic error from exec), so any Modal error is followed by a poll:
        a finished sandbox is SandboxGone, anything else is raised as is and retried.
        """
        sb = await self._sandbox(sandbox_id)
        try:
            return await operation(sb)
        except modal.exception.NotFoundError:
            self._handles.pop(sandbox_id, None)
            raise SandboxGone(f"sandbox {sandbox_id} is gone") from None
        except modal.exception.Error:
            if await self._finished(sb):
                self._handles.pop(sandbox_id, None)
                raise SandboxGone(f"sandbox {sandbox_id} is gone (finished)") from None
            raise

    # ----- lifecycle -------------------------------------------------------------------

    async def create(self, name: str, snapshot_id: str | None = None) -> SandboxInfo:
        sandbox_name = modal_name(name)
        image = await self._snapshot_image(snapshot_id) if snapshot_id is not None else self._base_image()
        app = await self._lookup_app()
        limits = self.limits
        for _ in range(_CREATE_ATTEMPTS):
            # Taken before the call, so it is never later than Modal's own deadline.
            expires_at = time.time() + limits.timeout_s
            try:
                sb = await modal.Sandbox.create.aio(
                    app=app, name=sandbox_name, image=image, timeout=limits.timeout_s,
                    idle_timeout=limits.idle_timeout_s, workdir=MOUNT_POINT, block_network=limits.block_network,
                    cpu=limits.cpu, memory=limits.memory_mb, tags={_EXPIRES_TAG: repr(expires_at)})
            except modal.exception.AlreadyExistsError:
                existing = await self._live_by_name(sandbox_name)
                if existing is not None:
                    return existing  # a retry after a create that was never recorded
                continue  # its holder ended between the two calls, which frees the name
            return SandboxInfo(sandbox_id=self._keep(sb).object_id, expires_at=expires_at)
        raise RuntimeError(f"Modal keeps reporting sandbox name {sandbox_name!r} as taken, but no live "
                           f"sandbox of that name is found in app {self.app_name!r}")

    async def _live_by_name(self, sandbox_name: str) -> SandboxInfo | None:
        try:
            sb = await modal.Sandbox.from_name.aio(self.app_name, sandbox_name)
        except modal.exception.NotFoundError:
            return None
        if await self._finished(sb):
            return None
        expires = (await sb.get_tags.aio()).get(_EXPIRES_TAG)
        return SandboxInfo(sandbox_id=self._keep(sb).object_id, expires_at=float(expires) if expires else None)

    async def terminate(self, sandbox_id: str) -> None:
        sb = self._handles.pop(sandbox_id, None)
        try:
            if sb is None:
                sb = await modal.Sandbox.from_id.aio(sandbox_id)
            # Waiting until it has ended means its name is free once this returns, so the next
            # generation's create cannot find the old sandbox still shutting down.
            await sb.terminate.aio(wait=True)
        except (modal.exception.NotFoundError, modal.exception.SandboxTimeoutError,
                modal.exception.SandboxTerminatedError):
            pass  # already gone: expired, or ended some other way

    async def snapshot(self, sandbox_id: str, snapshot_name: str) -> str:
        tag = _snapshot_tag(snapshot_name)

        async def take(sb: Any) -> str:
            tags = await sb.get_tags.aio()
            if tag in tags:
                return tags[tag]  # already taken: a retry after an unrecorded success
            if await self._finished(sb):
                raise SandboxGone(f"sandbox {sandbox_id} is gone (finished)")
            image = await sb.snapshot_filesystem.aio(ttl=self.limits.snapshot_ttl_s)
            try:
                await sb.set_tags.aio({**tags, tag: image.object_id})
            except modal.exception.Error as e:  # only costs a second snapshot if this call is retried
                logger.warning("could not record snapshot %s on sandbox %s: %s", snapshot_name, sandbox_id, e)
            return image.object_id

        return await self._on(sandbox_id, take)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        if not snapshot_id.startswith("im-"):
            return  # not a Modal image, so nothing of ours
        try:
            await modal.experimental.image_delete.aio(snapshot_id)
        except modal.exception.NotFoundError:
            pass

    # ----- files -----------------------------------------------------------------------

    @staticmethod
    async def _stat(sb: Any, remote: str) -> FileInfo | None:
        try:
            return await sb.filesystem.stat.aio(remote)
        except (modal.exception.SandboxFilesystemNotFoundError, modal.exception.SandboxFilesystemNotADirectoryError):
            return None

    async def _resolve(self, sb: Any, path: str, *, follow_final: bool,
                       create_parents: bool = False) -> tuple[str, FileInfo | None]:
        """The symlink-free absolute path `path` denotes, and its FileInfo (None: it does not exist).

        The same walk as sandbox/paths.py: symlinks are followed by hand while they stay in the
        workspace (a target under /project is inside), with `paths._link_parts` deciding.
        """
        pending = deque(paths.split_path(path))
        done: list[str] = []
        links = 0
        while pending:
            if pending[0] == "..":  # only symlink targets produce these
                pending.popleft()
                if not done:
                    raise PathRejected(f"{path!r} resolves outside the workspace")
                done.pop()
                continue
            batch = list(itertools.takewhile(lambda part: part != "..", pending))
            # One round trip instead of one per component: every prefix is looked at at once, and
            # the answers are used up to the first symlink (past it, they describe another path).
            infos = await asyncio.gather(*(self._stat(sb, _remote([*done, *batch[:i + 1]]))
                                           for i in range(len(batch))))
            for name, info in zip(batch, infos):
                pending.popleft()
                last = not pending
                if info is None:
                    if last:
                        return _remote([*done, name]), None
                    if create_parents and ".." not in pending:
                        return _remote([*done, name, *pending]), None  # the write creates them
                    raise FileMissing(f"{path!r} does not exist (no directory {name!r})")
                if info.type == FileType.SYMLINK and (follow_final or not last):
                    links += 1
                    if links > _MAX_LINKS:
                        raise PathRejected(f"{path!r} has too many levels of symlinks")
                    restart, parts = paths._link_parts(info.symlink_target or "", path)
                    if restart:
                        done = []
                    pending.extendleft(reversed(parts))
                    break
                if not last and info.type != FileType.DIRECTORY:
                    raise FileMissing(f"{path!r} does not exist ({name!r} is not a directory)")
                done.append(name)
                if last:
                    return _remote(done), info
        return _remote(done), await self._stat(sb, _remote(done))  # the workspace, or a path ending in ..

    async def write_file(self, sandbox_id: str, path: str, content: str) -> None:
        paths.split_path(path)  # reject bad paths before any round trip
        await self._on(sandbox_id, lambda sb: self._write(sb, path, content.encode()))

    async def _write(self, sb: Any, path: str, data: bytes) -> None:
        where, info = await self._resolve(sb, path, follow_final=False, create_parents=True)
        if info is not None and info.type == FileType.SYMLINK:
            raise PathRejected(f"{path!r} is a symlink; write to the path it points to instead")
        if info is not None and info.type == FileType.DIRECTORY:
            raise PathRejected(f"{path!r} is a directory")
        try:
            await sb.filesystem.write_bytes.aio(data, where)
        except (modal.exception.SandboxFilesystemIsADirectoryError,
                modal.exception.SandboxFilesystemNotADirectoryError) as e:
            raise PathRejected(f"{path!r} cannot be written: {e}") from None
        except modal.exception.SandboxFilesystemError as e:
            if "no space" in str(e).lower():
                raise WorkspaceFull(f"the sandbox's disk is full: {e}") from None
            raise

    async def read_file(self, sandbox_id: str, path: str, max_bytes: int) -> str:
        paths.split_path(path)

        async def read(sb: Any) -> str:
            where, info = await self._resolve(sb, path, follow_final=True)
            if info is None:
                raise FileMissing(f"{path!r} does not exist")
            if info.type == FileType.DIRECTORY:
                raise PathRejected(f"{path!r} is a directory; list it instead")
            if info.type != FileType.FILE:
                raise PathRejected(f"{path!r} is not a regular file")
            data = await self._read_head(sb, where, info.size, max(0, max_bytes))
            text = data.decode("utf-8", errors="replace")
            if info.size > len(data):
                text += f"\n... [truncated: showing the first {len(data)} of {info.size} bytes]"
            return text

        return await self._on(sandbox_id, read)

    @staticmethod
    async def _read_head(sb: Any, where: str, size: int, max_bytes: int) -> bytes:
        """The first `max_bytes` of a file. A file within the limit comes whole through the file
        API; of a longer one only the head crosses the network (`head -c`)."""
        try:
            if size <= max_bytes:
                return (await sb.filesystem.read_bytes.aio(where))[:max_bytes]
            proc = await sb.exec.aio("head", "-c", str(max_bytes), "--", "." + where[len(MOUNT_POINT):],
                                     workdir=MOUNT_POINT, timeout=60, text=False)
            data, _ = await asyncio.gather(proc.stdout.read.aio(), proc.wait.aio())
            return data
        except modal.exception.SandboxFilesystemNotFoundError:
            raise FileMissing(f"{where!r} disappeared while it was being read") from None
        except modal.exception.SandboxFilesystemIsADirectoryError:
            raise PathRejected(f"{where!r} changed into a directory while it was being read") from None

    async def list_files(self, sandbox_id: str, path: str, max_entries: int) -> list[FileEntry]:
        prefix = paths.split_path(path)

        async def walk(sb: Any) -> list[FileEntry]:
            where, info = await self._resolve(sb, path, follow_final=True)
            if info is None:
                raise FileMissing(f"{path!r} does not exist")
            if info.type != FileType.DIRECTORY:
                raise PathRejected(f"{path!r} is not a directory")
            entries: list[FileEntry] = []
            level: list[tuple[str, list[str]]] = [(where, [])]  # breadth first: one level at a time
            while level and len(entries) < max_entries:
                below: list[tuple[str, list[str]]] = []
                for start in range(0, len(level), _PARALLEL):
                    batch = level[start:start + _PARALLEL]
                    listed = await asyncio.gather(*(self._list_dir(sb, d) for d, _ in batch))
                    for (directory, rel), infos in zip(batch, listed):
                        for entry in sorted(infos, key=lambda entry: entry.name):
                            if len(entries) >= max_entries:
                                break
                            entries.append(FileEntry(path="/".join([*prefix, *rel, entry.name]),
                                                     kind=_KINDS.get(entry.type, "other"), size=entry.size))
                            if entry.type == FileType.DIRECTORY:
                                below.append((f"{directory}/{entry.name}", [*rel, entry.name]))
                    if len(entries) >= max_entries:
                        break
                level = below
            return sorted(entries, key=lambda e: e.path)

        return await self._on(sandbox_id, walk)

    @staticmethod
    async def _list_dir(sb: Any, remote: str) -> list[FileInfo]:
        try:
            return await sb.filesystem.list_files.aio(remote)
        except (modal.exception.SandboxFilesystemNotFoundError, modal.exception.SandboxFilesystemNotADirectoryError):
            return []  # removed or swapped while we walked

    # ----- commands --------------------------------------------------------------------

    async def exec(self, sandbox_id: str, command: str, timeout_s: float) -> ExecResult:
        return await self._on(sandbox_id, lambda sb: self._exec(sb, sandbox_id, command, timeout_s))

    async def _exec(self, sb: Any, sandbox_id: str, command: str, timeout_s: float) -> ExecResult:
        limits = self.limits
        wait_s = max(1, math.ceil(timeout_s))  # Modal takes whole seconds and kills the command then
        spool = Path(tempfile.gettempdir())
        out = StreamCapture(limits.output_head_bytes, limits.output_tail_bytes, limits.max_output_mb * MB, spool)
        err = StreamCapture(limits.output_head_bytes, limits.output_tail_bytes, limits.max_output_mb * MB, spool)
        started = time.monotonic()
        try:
            proc = await sb.exec.aio("sh", "-c", command, workdir=MOUNT_POINT, timeout=wait_s, text=False)
            try:
                async with asyncio.timeout(wait_s + _EXEC_GRACE_S):
                    _, _, code = await asyncio.gather(_pump(proc.stdout, out), _pump(proc.stderr, err),
                                                      proc.wait.aio())
            except TimeoutError:
                code = -1  # Modal did not report back in time; its own timeout kills the command
            # -1 is Modal's "past the exec deadline", 128+N a signal: both are also what a command
            # reports when its sandbox dies under it.
            if (code == -1 or code >= 128) and await self._finished(sb):
                raise SandboxGone(f"sandbox {sandbox_id} is gone (ended while the command ran)")
            timed_out = code == -1 or (code == _SIGKILLED and time.monotonic() - started >= wait_s)
            return await self._result(sb, command, timeout_s, code, timed_out, out, err)
        finally:
            out.close()
            err.close()

    async def _result(self, sb: Any, command: str, timeout_s: float, code: int, timed_out: bool,
                      out: StreamCapture, err: StreamCapture) -> ExecResult:
        notes = []
        if timed_out:
            code = TIMEOUT_EXIT_CODE
            notes.append(f"timed out after {timeout_s:g} s; the command was killed")
        saved_in = None
        if out.truncated or err.truncated:
            path = full_log_path()
            try:
                await self._write(sb, path, b"".join(full_log(command, out, err)))
                saved_in = path
            except (WorkspaceFull, PathRejected, FileMissing, modal.exception.SandboxFilesystemError) as e:
                notes.append(f"full output not saved: {e}")  # the command ran: losing its log must not fail the call
        return exec_result(code, out, err, timed_out=timed_out, saved_in=saved_in, notes=notes)


_KINDS = {FileType.FILE: "file", FileType.DIRECTORY: "dir", FileType.SYMLINK: "symlink"}


async def _pump(stream: Any, capture: StreamCapture) -> None:
    async for chunk in stream:
        capture.feed(chunk)
