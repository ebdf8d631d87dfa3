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
- Markers are files in a private directory of the container (`/var/lib/agent`), replaced by a
  rename, so a retried write leaves one whole record. Snapshots carry them: a snapshot is an
  image of the whole container.
- Every command carries its operation id in its environment (`AGENT_OP_ID`), inherited by
  everything it starts, so `stop_op` finds and kills it from any worker, by scanning /proc;
  a stop mark it leaves first keeps a start that arrives late from running at all.

"Gone" is final (the object recreates the sandbox from its last snapshot), so it is only
reported once Modal's control plane confirms it; an outage is SandboxUnavailable.

File APIs apply the workspace path rules of sandbox/pathwalk.py through `filesystem.stat`.
Inside Modal they are about consistency, not containment: the whole container is the sandbox,
so a symlink out of /project reaches only files any command could read anyway.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import posixpath
import re
import secrets
import tempfile
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import modal
import modal.exception
import modal.experimental
from modal.types import FileInfo, FileType
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from sandbox import markers
from sandbox.limits import MB, env_config, none_if_blank
from sandbox.output import (
    KEEP_OUTPUTS,
    OUTPUT_NAME,
    OUTPUTS_DIR,
    TIMEOUT_EXIT_CODE,
    StreamCapture,
    exec_result,
    full_log,
    full_log_path,
    pump,
)
from sandbox.pathwalk import MOUNT_POINT, Kind, Move, PathWalk, split_path
from sandbox.protocol import (
    COMMAND_DEFAULTS,
    ExecResult,
    FileEntry,
    FileMissing,
    PathRejected,
    SandboxError,
    SandboxGone,
    SandboxInfo,
    SandboxUnavailable,
    SnapshotMissing,
    WorkspaceFull,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_APP_NAME = "durable-coding-agent"
_SIGKILLED = 128 + 9
_EXPIRES_TAG = "expires-at"
_MODAL_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_APP_ID = re.compile(r"ap-[A-Za-z0-9]{22}")
_CREATE_ATTEMPTS = 3
_EXEC_GRACE_S = 30.0  # Modal kills a command at its timeout; this only guards against a hung stream
_DRAIN_S = 1.0  # output still open this long after the command exited: something it left running holds it
_PARALLEL = 16  # file API calls in flight at once
_HANDLES = 256  # sandbox handles kept, so each call does not look its sandbox up again
# What Modal raises when it cannot be reached. The file API reports these as NotFoundError
# ("The Sandbox is unavailable", modal/_utils/sandbox_fs_utils.py), so that proves nothing either.
_OUTAGES = (modal.exception.NotFoundError, modal.exception.ServiceError, modal.exception.ConnectionError)

# The private area: outside /project, so `git clean` or `rm -rf .agent` in the workspace does
# not touch it, and inside the container, so snapshots carry it.
_PRIVATE_DIR = "/var/lib/agent"
_IMPORT_TAR = ".agent-import.tar"  # in the scratch sandbox's workspace, removed once unpacked
_SCRATCH_TIMEOUT_S = 900
_MARKERS = "markers"  # below _PRIVATE_DIR
_SPOOL = "tmp"  # below _PRIVATE_DIR: markers are written here first, then renamed into place
_STOPPED = "stopped"  # below _PRIVATE_DIR: an empty file per operation `stop_op` stopped
_RM_BATCH = 500  # names per `rm`, well below ARG_MAX
_OP_ENV = "AGENT_OP_ID"  # every command's operation id, inherited by all it starts
_STOP_TIMEOUT_S = 60
# Runs a command under an op_id: "$1" is the operation's stop mark, "$2" the command. `exec`
# keeps the exit status exactly what `sh -c command` alone would give.
_GUARD = """if [ -e "$1" ]; then
  echo "[sandbox] not started: another attempt of this operation stopped it first" >&2
  exit 137
fi
exec sh -c "$2"
"""
# Kills every process whose environment holds "$1" (AGENT_OP_ID=<op>), and the process group
# of any that leads one (so a child that cleared its environment dies too), until none is left.
# `grep -l` finds candidates, `tr | grep -x` confirms (AGENT_OP_ID=a is a prefix of =ab). A
# process killed but not yet reaped has an empty environ, so it counts as stopped.
_STOP_SCRIPT = r"""
token=$1
rounds=0
while :; do
  found=
  for env in $(grep -lF -- "$token" /proc/[0-9]*/environ 2>/dev/null); do
    pid=${env#/proc/}; pid=${pid%/environ}
    if tr '\0' '\n' < "$env" 2>/dev/null | grep -qxF -- "$token"; then
      found=1
      pgid=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f3)
      if [ "$pgid" = "$pid" ]; then kill -9 "-$pid" 2>/dev/null; fi
      kill -9 "$pid" 2>/dev/null
    fi
  done
  [ -z "$found" ] && exit 0
  rounds=$((rounds + 1))
  [ "$rounds" -ge 100 ] && exit 1
  sleep 0.1
done
"""


class ModalLimits(BaseSettings):
    """What a Modal sandbox gets. Every field can be set as `MODAL_SANDBOX_<FIELD>`."""

    model_config = env_config("MODAL_SANDBOX_")

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
        self._stopping: set[asyncio.Task[str | None]] = set()  # stops of cancelled commands, under way

    # ----- the SDK boundary: lookups -----------------------------------------------------

    async def _lookup_app(self) -> Any:
        if self._app is None:
            self._app = await modal.App.lookup.aio(self.app_name, create_if_missing=True)
        return self._app

    def _base_image(self) -> Any:
        # The default image has what a coding agent reaches for first: git and pytest.
        image = (modal.Image.from_registry(self.limits.image) if self.limits.image
                 else modal.Image.debian_slim().apt_install("git").pip_install("pytest"))
        return image.workdir(MOUNT_POINT)

    @staticmethod
    def _snapshot_image(snapshot_id: str) -> Any:
        """The image of a snapshot. Lazy: Modal looks it up inside `Sandbox.create`, which raises
        NotFoundError if it is gone (an image cannot be looked up on its own: `hydrate` on it
        raises ExecutionError, see `_Image.hydrate` in the SDK)."""
        if not snapshot_id.startswith("im-"):  # taken by another backend: not an image of ours
            raise SnapshotMissing(f"snapshot {snapshot_id} is not a Modal image")
        return modal.Image.from_id(snapshot_id)

    async def _sandbox(self, sandbox_id: str) -> Any:
        """A handle on `sandbox_id` (cached: a lookup is a round trip).
        Raises SandboxGone, or SandboxUnavailable when Modal cannot be reached."""
        if sandbox_id in self._handles:
            self._handles.move_to_end(sandbox_id)
            return self._handles[sandbox_id]
        try:
            sb = await modal.Sandbox.from_id.aio(sandbox_id)
        except modal.exception.NotFoundError:
            raise SandboxGone(f"sandbox {sandbox_id} does not exist") from None
        except _OUTAGES as e:
            raise SandboxUnavailable(f"Modal did not answer for sandbox {sandbox_id}: {e}") from e
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
        except modal.exception.NotFoundError:  # poll is a control-plane call: Modal has no such sandbox
            return True

    async def _confirmed_gone(self, sandbox_id: str) -> bool:
        """Whether Modal's control plane says the sandbox has ended (or never existed). False
        when it says the sandbox runs, and when it cannot be asked."""
        try:
            sb = await modal.Sandbox.from_id.aio(sandbox_id)
            finished = await sb.poll.aio() is not None
        except modal.exception.NotFoundError:
            return True
        except modal.exception.Error:
            return False
        if not finished:
            self._keep(sb)  # a fresh handle, in case the old one is what broke
        return finished

    async def _on(self, sandbox_id: str, operation: Callable[[Any], Awaitable[T]]) -> T:
        """Run `operation` on the sandbox, turning "it is not there any more" into SandboxGone.

        Modal reports a dead sandbox in several ways (NotFoundError from the file API, a
        ConflictError or a generic error from exec), but the file API reports an outage the same
        way. So after any Modal error Modal is asked whether the sandbox still runs: ended is
        SandboxGone; otherwise an outage-like error is SandboxUnavailable (the object then retries
        the same sandbox, where recreating it would lose the work since the last snapshot), and
        anything else is raised as is and retried.
        """
        sb = await self._sandbox(sandbox_id)
        try:
            return await operation(sb)
        except modal.exception.Error as e:
            if await self._confirmed_gone(sandbox_id):
                self._handles.pop(sandbox_id, None)
                raise SandboxGone(f"sandbox {sandbox_id} is gone") from None
            if isinstance(e, _OUTAGES):
                raise SandboxUnavailable(f"sandbox {sandbox_id} could not be reached: {e}") from e
            raise

    # ----- lifecycle -------------------------------------------------------------------

    async def create(self, name: str, snapshot_id: str | None = None) -> SandboxInfo:
        sandbox_name = modal_name(name)
        image = self._snapshot_image(snapshot_id) if snapshot_id is not None else self._base_image()
        app = await self._lookup_app()
        app_renewed = False
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
            except modal.exception.NotFoundError:
                existing = await self._live_by_name(sandbox_name)
                if existing is not None:
                    return existing  # a retry of a create that did succeed; its snapshot is gone since
                if app_renewed:
                    if snapshot_id is None:
                        raise
                    raise SnapshotMissing(f"snapshot {snapshot_id} does not exist") from None
                # What was not found is the image (its loader asks Modal for it before the name
                # is claimed), or the app, if it was deleted since it was looked up. Look the app
                # up again, once: a snapshot is declared missing (and the workspace starts
                # empty) only when nothing else can be the cause.
                self._app, app_renewed = None, True
                app = await self._lookup_app()
                continue
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

    # ----- trees (imports, diffs, exports) -----------------------------------------------

    async def import_snapshot(self, snapshot_name: str, tree: bytes) -> str:
        """A scratch sandbox unpacks `tree` into an empty workspace and is snapshotted. Not
        found again by name: a retry after an unrecorded success makes a second image (the
        first expires with the snapshot TTL, if one is set)."""
        sb = await self._scratch(self._base_image())
        try:
            await self._write(sb, _IMPORT_TAR, tree)
            code, _, err = await _run(sb, "sh", "-c", f'tar -xf {_IMPORT_TAR}; s=$?; rm -f {_IMPORT_TAR}; exit $s',
                                      workdir=MOUNT_POINT, timeout=600)
            if code != 0:
                raise SandboxError(f"unpacking the import failed: {err.decode(errors='replace')[-500:]}")
            image = await sb.snapshot_filesystem.aio(ttl=self.limits.snapshot_ttl_s)
            return image.object_id
        finally:
            await self._end_scratch(sb)

    async def snapshot_tree(self, snapshot_id: str) -> bytes:
        try:
            sb = await self._scratch(self._snapshot_image(snapshot_id))
        except modal.exception.NotFoundError:
            raise SnapshotMissing(f"snapshot {snapshot_id} does not exist") from None
        try:
            return await self._tar_workspace(sb)
        finally:
            await self._end_scratch(sb)

    async def workspace_tree(self, sandbox_id: str) -> bytes:
        return await self._on(sandbox_id, self._tar_workspace)

    @staticmethod
    async def _tar_workspace(sb: Any) -> bytes:
        code, out, err = await _run(sb, "tar", "--format=pax", "-cf", "-", ".", workdir=MOUNT_POINT, timeout=600)
        if code != 0:
            raise SandboxError(f"reading the workspace failed: {err.decode(errors='replace')[-500:]}")
        return out

    async def _scratch(self, image: Any) -> Any:
        """A short-lived, unnamed sandbox without network for one tree operation."""
        return await modal.Sandbox.create.aio(
            app=await self._lookup_app(), image=image, timeout=_SCRATCH_TIMEOUT_S, workdir=MOUNT_POINT,
            block_network=True, cpu=self.limits.cpu, memory=self.limits.memory_mb)

    @staticmethod
    async def _end_scratch(sb: Any) -> None:
        try:
            await sb.terminate.aio()
        except modal.exception.Error as e:  # it ends with its timeout anyway
            logger.warning("could not terminate scratch sandbox %s: %s", sb.object_id, e)

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

        The walk of sandbox/pathwalk.py, with every component up to the next ".." looked at in
        one round trip instead of one per component.
        """
        walk = PathWalk(path, follow_final=follow_final)
        while (name := walk.next()) is not None:
            if name == "..":
                walk.up()
                continue
            batch = walk.ahead()
            infos = await asyncio.gather(*(self._stat(sb, _remote([*walk.done, *batch[:i + 1]]))
                                           for i in range(len(batch))))
            for name, info in zip(batch, infos):
                move = walk.see(_kind(info))
                if move is Move.FOLLOW:
                    assert info is not None  # only what was found can be a symlink
                    walk.follow(info.symlink_target or "")
                    break  # the answers left describe the path through the old symlink
                if move is Move.MISSING:
                    if create_parents and ".." not in walk.remaining():
                        return _remote([*walk.done, *walk.remaining()]), None  # the write creates them
                    raise walk.missing()
                if move is Move.END:
                    return _remote([*walk.done, name]), info
        return _remote(walk.done), await self._stat(sb, _remote(walk.done))  # the workspace, or a path ending in ..

    async def write_file(self, sandbox_id: str, path: str, content: str) -> None:
        split_path(path)  # reject bad paths before any round trip
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
        split_path(path)

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
            _, data, _ = await _run(sb, "head", "-c", str(max_bytes), "--", "." + where[len(MOUNT_POINT):],
                                    workdir=MOUNT_POINT, timeout=60)
            return data
        except modal.exception.SandboxFilesystemNotFoundError:
            raise FileMissing(f"{where!r} disappeared while it was being read") from None
        except modal.exception.SandboxFilesystemIsADirectoryError:
            raise PathRejected(f"{where!r} changed into a directory while it was being read") from None

    async def list_files(self, sandbox_id: str, path: str, max_entries: int) -> list[FileEntry]:
        prefix = split_path(path)

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

    async def exec(self, sandbox_id: str, command: str, timeout_s: float, op_id: str | None = None) -> ExecResult:
        if op_id is not None:
            markers.check_name(op_id)
        return await self._on(sandbox_id, lambda sb: self._exec(sb, sandbox_id, command, timeout_s, op_id))

    async def _exec(self, sb: Any, sandbox_id: str, command: str, timeout_s: float, op_id: str | None) -> ExecResult:
        limits = self.limits
        wait_s = max(1, math.ceil(timeout_s))  # Modal takes whole seconds and kills the command then
        # A command without an op_id gets an id too, so that what it leaves behind can be stopped
        # (":" is in no op_id). The sandbox id keeps the fake's commands, all on one host, apart.
        token = f"{sandbox_id}/{op_id or 'exec:' + secrets.token_hex(8)}"
        spool = Path(tempfile.gettempdir())
        out = StreamCapture(limits.output_head_bytes, limits.output_tail_bytes, limits.max_output_mb * MB, spool)
        err = StreamCapture(limits.output_head_bytes, limits.output_tail_bytes, limits.max_output_mb * MB, spool)
        started = time.monotonic()
        try:
            proc = await sb.exec.aio(*_command_line(command, op_id), workdir=MOUNT_POINT, timeout=wait_s,
                                     env={**COMMAND_DEFAULTS, _OP_ENV: token}, text=False)
            pumps = asyncio.gather(pump(proc.stdout, out), pump(proc.stderr, err))
            stopped: str | None = None  # why stopping what the command left failed ("" if it worked)
            try:
                async with asyncio.timeout(wait_s + _EXEC_GRACE_S):
                    code = await proc.wait.aio()
                    # It ended. Something it left in the background (a server) may hold its output
                    # open: that keeps running, as in the local backend; its later output is not read.
                    await _done_within(pumps, _DRAIN_S)
            except TimeoutError:
                code = -1  # Modal did not report back in time; its own timeout kills the command
            except asyncio.CancelledError:
                # Restate ended the attempt: the command must not run on unwatched. Best effort,
                # since this worker may be going away; stop_op is the guarantee.
                self._stop_later(sb, token)
                raise
            finally:
                pumps.cancel()
            # -1 is Modal's "past the exec deadline", 128+N a signal: both are also what a command
            # reports when its sandbox dies under it.
            if (code == -1 or code >= 128) and await self._finished(sb):
                raise SandboxGone(f"sandbox {sandbox_id} is gone (ended while the command ran)")
            timed_out = code == -1 or (code == _SIGKILLED and time.monotonic() - started >= wait_s)
            notes = []
            if timed_out:
                code = TIMEOUT_EXIT_CODE
                notes.append(f"timed out after {timeout_s:g} s; the command was killed")
                if stopped is None:  # Modal kills the process it started; what that left goes too
                    stopped = await self._stop_quietly(sb, token) or ""
            if stopped:
                notes.append(f"processes the command started may still run: {stopped}")
            return await self._result(sb, command, code, timed_out, out, err, notes)
        finally:
            out.close()
            err.close()

    async def _result(self, sb: Any, command: str, code: int, timed_out: bool,
                      out: StreamCapture, err: StreamCapture, notes: list[str]) -> ExecResult:
        saved_in = None
        if out.truncated or err.truncated:
            path = full_log_path()
            try:
                await self._write(sb, path, b"".join(full_log(command, out, err)))
                saved_in = path
                await self._prune_outputs(sb, keep=path)
            except (WorkspaceFull, PathRejected, FileMissing, RuntimeError, modal.exception.SandboxFilesystemError) as e:
                if saved_in is None:
                    notes.append(f"full output not saved: {e}")  # the command ran: losing its log must not fail the call
                else:
                    logger.warning("could not delete old saved outputs: %s", e)
        return exec_result(code, out, err, timed_out=timed_out, saved_in=saved_in, notes=notes)

    async def _prune_outputs(self, sb: Any, keep: str) -> None:
        """Keep only the newest KEEP_OUTPUTS saved outputs (`keep`, just written, among them):
        every truncated command adds one."""
        where, info = await self._resolve(sb, OUTPUTS_DIR, follow_final=True)
        if info is None or info.type != FileType.DIRECTORY:
            return
        newest = keep.rsplit("/", 1)[-1]
        # Oldest first. Names order by the second only, so the time written goes first.
        saved = [entry.name for entry in sorted(await self._list_dir(sb, where),
                                                key=lambda entry: (entry.name == newest, entry.modified_time, entry.name))
                 if entry.type == FileType.FILE and OUTPUT_NAME.fullmatch(entry.name)]
        await self._remove(sb, where, saved[:-KEEP_OUTPUTS])

    async def stop_op(self, sandbox_id: str, op_id: str) -> None:
        markers.check_name(op_id)

        async def stop(sb: Any) -> None:
            # The mark first: a start still on its way then either finds it and does not run
            # (see _command_line), or is running, and so is found by the stop.
            await sb.filesystem.write_bytes.aio(b"", f"{_PRIVATE_DIR}/{_STOPPED}/{op_id}")
            await self._stop(sb, f"{sandbox_id}/{op_id}")

        await self._on(sandbox_id, stop)

    async def _stop(self, sb: Any, token: str) -> None:
        """Kill every process started under `token` and return once none is left."""
        code, _, err = await _run(sb, "sh", "-c", _STOP_SCRIPT, "agent-stop", f"{_OP_ENV}={token}",
                                  workdir="/", timeout=_STOP_TIMEOUT_S)
        if code != 0:
            raise RuntimeError(f"the processes of operation {token} could not be stopped (exit {code}): "
                               f"{err.decode(errors='replace').strip()}")

    async def _stop_quietly(self, sb: Any, token: str) -> str | None:
        """`_stop` as a best effort, for a command already given up on: why it failed, or None."""
        try:
            await self._stop(sb, token)
        except Exception as e:  # noqa: BLE001 - nothing may escape a stop nobody waits for
            logger.warning("could not stop operation %s: %s", token, e)
            return str(e) or type(e).__name__
        return None

    def _stop_later(self, sb: Any, token: str) -> None:
        task = asyncio.get_running_loop().create_task(self._stop_quietly(sb, token))
        self._stopping.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._stopping.discard)

    # ----- markers ---------------------------------------------------------------------

    async def write_marker(self, sandbox_id: str, name: str, data: str, *, durable: bool = True) -> None:
        # `durable` changes nothing here: the record is as durable as the container's disk.
        # Renamed into place, so that a reader never sees a half-written record (the file API
        # makes no such promise).
        await self._place_marker(sandbox_id, name, data, 'mkdir -p "$1" && mv -f -- "$2" "$1/$3"', (0,))

    async def create_marker(self, sandbox_id: str, name: str, data: str) -> bool:
        # `ln` never replaces its target, so of two concurrent creates exactly one wins; exit 3
        # says the record was there already.
        script = ('mkdir -p "$1" || exit 1; if ln -- "$2" "$1/$3" 2>/dev/null; then rm -f -- "$2"; exit 0; fi; '
                  'rm -f -- "$2"; [ -e "$1/$3" ] && exit 3; exit 1')
        return await self._place_marker(sandbox_id, name, data, script, (0, 3)) == 0

    async def _place_marker(self, sandbox_id: str, name: str, data: str, script: str, ok: tuple[int, ...]) -> int:
        """Spool `data` in the private area, then let `script` ($1 the markers directory, $2 the
        spooled file, $3 the name) put it in place; its exit code, one of `ok`."""
        markers.check_name(name)
        raw = data.encode()
        if len(raw) > markers.MAX_BYTES:
            raise ValueError(f"marker {name!r} is {len(raw)} bytes; at most {markers.MAX_BYTES} are kept")

        async def place(sb: Any) -> int:
            spooled = f"{_SPOOL}/{secrets.token_hex(8)}"
            await sb.filesystem.write_bytes.aio(raw, f"{_PRIVATE_DIR}/{spooled}")
            code, _, err = await _run(sb, "sh", "-c", script, "agent-marker", _MARKERS, spooled, name,
                                      workdir=_PRIVATE_DIR, timeout=60)
            if code not in ok:
                raise RuntimeError(f"marker {name} could not be stored: {err.decode(errors='replace').strip()}")
            return code

        return await self._on(sandbox_id, place)

    async def read_marker(self, sandbox_id: str, name: str) -> str | None:
        markers.check_name(name)

        async def read(sb: Any) -> str | None:
            try:
                data = await sb.filesystem.read_bytes.aio(f"{_PRIVATE_DIR}/{_MARKERS}/{name}")
            except modal.exception.SandboxFilesystemNotFoundError:
                return None
            return data.decode("utf-8", errors="replace")

        return await self._on(sandbox_id, read)

    async def delete_markers(self, sandbox_id: str, prefix: str) -> int:
        markers.check_prefix(prefix)

        async def delete(sb: Any) -> int:
            await self._delete_prefixed(sb, _STOPPED, prefix)  # no attempt of these operations comes again
            return await self._delete_prefixed(sb, _MARKERS, prefix)

        return await self._on(sandbox_id, delete)

    async def _delete_prefixed(self, sb: Any, directory: str, prefix: str) -> int:
        """Delete the files of the private `directory` whose names start with `prefix`; how many went."""
        where = f"{_PRIVATE_DIR}/{directory}"
        names = [entry.name for entry in await self._list_dir(sb, where)
                 if entry.name.startswith(prefix) and markers.is_name(entry.name)]
        await self._remove(sb, where, names)
        return len(names)

    @staticmethod
    async def _remove(sb: Any, directory: str, names: list[str]) -> None:
        """Delete the files `names` of `directory` (a few `rm` commands, not a call per file)."""
        for start in range(0, len(names), _RM_BATCH):
            code, _, err = await _run(sb, "rm", "-f", "--", *names[start:start + _RM_BATCH],
                                      workdir=directory, timeout=60)
            if code != 0:
                raise RuntimeError(f"could not delete files in {directory}: {err.decode(errors='replace').strip()}")


_KINDS = {FileType.FILE: "file", FileType.DIRECTORY: "dir", FileType.SYMLINK: "symlink"}


def _kind(info: FileInfo | None) -> Kind:
    """What the path walk needs to know of a stat answer."""
    if info is None:
        return Kind.MISSING
    return {FileType.DIRECTORY: Kind.DIR, FileType.SYMLINK: Kind.LINK}.get(info.type, Kind.OTHER)


async def _done_within(future: asyncio.Future[Any], seconds: float) -> bool:
    done, _ = await asyncio.wait({future}, timeout=seconds)
    return bool(done)


async def _run(sb: Any, *argv: str, workdir: str, timeout: int) -> tuple[int, bytes, bytes]:
    """Run one of the backend's own short commands: (exit code, stdout, stderr).

    Paths are given relative to `workdir`: tests/sandbox/fake_modal.py runs commands on the
    host, where only the working directory is mapped into the fake container.
    """
    proc = await sb.exec.aio(*argv, workdir=workdir, timeout=timeout, text=False)
    out, err, code = await asyncio.gather(proc.stdout.read.aio(), proc.stderr.read.aio(), proc.wait.aio())
    return code, out, err


def _command_line(command: str, op_id: str | None) -> list[str]:
    """`sh -c command`. Under an op_id, it first checks that `stop_op` has not stopped the
    operation already, as a start delayed past it would otherwise run on unwatched."""
    if op_id is None:
        return ["sh", "-c", command]
    # Relative to /project, the command's directory, like every path the backend's own commands use.
    stop_mark = posixpath.relpath(f"{_PRIVATE_DIR}/{_STOPPED}/{op_id}", MOUNT_POINT)
    return ["sh", "-c", _GUARD, "agent-op", stop_mark, command]
