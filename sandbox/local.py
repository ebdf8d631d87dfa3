"""The local backend: a sandbox is a directory on this machine plus, while it runs, one
long-lived bubblewrap tree whose supervisor starts its commands (sandbox/env.py).

Layout under `root`:

    <name>/meta.json               who the sandbox is: id, generation, created/expires, gone?
    <name>/project/                the workspace, bound read-write at /project
    <name>/markers/                its markers, out of every command's reach (sandbox/markers.py)
    <name>/ops/                    commands running under an op id (sandbox/ops.py)
    <name>/env/, <name>/env.lock   its live environment: the supervisor's socket, record, log
    snapshots/<snapshot>.tar.zst   snapshots: workspace and markers (sandbox/archive.py)
    .etc/                          the sandbox's own passwd, group, hosts, and supervisor.py
    .trash/, .spool/, .probe-<pid>/  scratch: wipes, output spooling, the start-up probe

Everything is the worker's alone (0700): commands reach their workspace only through the bind
that spawn.py stages for bubblewrap, so the root may sit anywhere, a 0700 directory included.

Every operation is retry-safe, because the `Sandbox` object journals each call and a retry
may follow a success that was never recorded: create returns the live sandbox of that name,
snapshot returns an existing archive, and terminate/delete of something gone succeed.

A sandbox id is `<name>~<generation>`. Creating a sandbox after its predecessor was
terminated or expired gives a new generation, so a stale id can never reach the new one.
TTL is emulated as a VM would die: past `expires_at` every operation on the sandbox raises
SandboxGone and the workspace is wiped; a command still running at the deadline is killed.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel

from sandbox import archive, env, markers, ops, paths
from sandbox.bwrap import COMMAND_ENV, LAUNCHER_ENV, SUPERVISOR, sandboxed, write_etc
from sandbox.cgroup import CONTROLLERS, CommandGroup
from sandbox.env import Channel
from sandbox.limits import MB, LocalLimits
from sandbox.machine import check_machine
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
from sandbox.quota import WorkspaceQuota
from sandbox.seccomp import filter_fd as seccomp_filter_fd
from sandbox.paths import MOUNT_POINT
from sandbox.slots import CommandSlots
from sandbox.spawn import prepare_child

logger = logging.getLogger(__name__)

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_RESERVED = {"snapshots"}
# How often a create looks for expired sandboxes to wipe (their TTL, if shorter): a look reads
# every sandbox's record, so one per create would make N creates cost N² reads.
SWEEP_EVERY_S = 10.0
# Output still held open this long after the command's shell exited: what it left in the
# background holds it, and keeps running; the supervisor drains it from then on.
_DRAIN_AFTER_EXIT_S = 0.2
_KILL_WAIT_S = 5.0  # a killed command's report from the supervisor
_NOT_STARTED = "[sandbox] not started: another attempt of this operation stopped it first\n"
_FULL = "processes left running in the background filled the sandbox's process limit"  # why a restart
_FROZEN = "the sandbox's supervisor answered nothing, not even a ping"  # why a restart


class _Meta(BaseModel):
    sandbox_id: str
    generation: int
    created_at: float
    expires_at: float | None = None
    gone: str | None = None  # why it is gone ("terminated", "expired"); None while it lives

    def expired(self) -> bool:
        return self.expires_at is not None and time.time() > self.expires_at


def _slug(name: str) -> str:
    """A file name for a sandbox or snapshot name: the name itself when it is plain, else a
    sanitised prefix plus a hash. Deterministic, so a retry finds what the first try made."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"sandbox and snapshot names must be non-empty strings, not {name!r}")
    if _PLAIN.fullmatch(name) and name not in _RESERVED:
        return name
    prefix = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60].lstrip("._-")
    return f"{prefix or 'x'}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def _name_of(sandbox_id: str) -> str:
    return sandbox_id.rpartition("~")[0]


class _Start(NamedTuple):
    """How a command's start went (LocalBackend._start)."""

    running: bool  # False: the sandbox's processes were stopped before it could start
    record: env.EnvRecord | None  # the environment it runs in
    hits_before: tuple[int, int]  # the sandbox's limit hits (cgroup.limit_hits) just before it started
    notices: list[str]  # what the model must be told


@dataclass(eq=False)
class _Run:
    """A command in flight, so terminate, expiry, the quota watch and stop_op can kill it."""

    channel: Channel | None  # to the supervisor that started it (sandbox/env.py); None until it is asked
    op_id: str | None = None
    # Why it was killed: "timeout", "expired", "terminated", "workspace", "stopped", "cancelled", or, with
    # `why` saying more, "lost", "restarted" (another command restarted its processes), "unresponsive".
    killed_for: str | None = None
    why: str | None = None

    def kill(self, reason: str) -> None:
        """Have the supervisor kill the command's process group (what it left in the background
        included). Safe from any thread: one short send on the command's own connection."""
        if self.killed_for is None:
            self.killed_for = reason
        if self.channel is not None:
            self.channel.send({"kill": True})


class LocalBackend:
    kind = "local"

    def __init__(self, root: Path, limits: LocalLimits) -> None:
        self.root, self.limits = Path(root).absolute(), limits
        for d in (self.root, self.root / "snapshots", self.root / ".trash", self.root / ".spool"):
            d.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        for d in ("snapshots", ".trash", ".spool"):
            (self.root / d).chmod(0o700)
        write_etc(self.root / ".etc")
        machine = check_machine(self.root, limits)
        self._bwrap, self._cgroups, self._rlimits = machine.bwrap, machine.cgroups, machine.rlimits
        self._owner, self._drop_to, self._seccomp = machine.owner, machine.drop_to, machine.seccomp
        self._worker = ops.Proc.of(os.getpid())  # how op records name this process
        assert self._worker is not None
        self._quota = WorkspaceQuota(limits.workspace_mb * MB)
        self.slots = CommandSlots(self.root / ".slots", limits.max_running_commands)
        self._runs: dict[str, set[_Run]] = defaultdict(set)
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._env_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._envs: dict[str, subprocess.Popen[bytes]] = {}  # live sandboxes this worker started, by id
        self._background: dict[str, int] = {}  # the last background count written to each record
        self._watchers: dict[str, asyncio.Task[None]] = {}  # the workspace cap between commands, per owned sandbox
        if self._cgroups:
            self._cgroups.sweep_stale()
        self._sweep()

    def _sweep_if_due(self) -> None:
        every = min(SWEEP_EVERY_S, self.limits.ttl_s or SWEEP_EVERY_S)
        if time.monotonic() - self._swept_at >= every:
            self._sweep()

    def _sweep(self) -> None:
        """Wipe expired sandboxes and leftovers of interrupted wipes (a crash mid-operation)."""
        self._swept_at = time.monotonic()
        for d in self.root.iterdir():
            if not d.name.startswith(".") and d.name not in _RESERVED and (d / "meta.json").exists():
                meta = self._read_meta_at(d)
                if meta and not meta.gone and meta.expired():
                    self._mark_gone(meta, "expired")
                if meta and meta.gone:
                    env.stop(d / "env")
                    self._discard(d / "project")
                    self._discard(d / "markers")
        for d in (self.root / ".trash").iterdir():
            shutil.rmtree(d, ignore_errors=True)

    def close(self) -> None:
        """Stop the sandboxes' processes this backend started (as its worker's exit would) and
        release shared machine state (empty cgroup parents). Workspaces stay as they are; the next
        command in a sandbox starts its processes again."""
        for sandbox_id, popen in list(self._envs.items()):
            self._unwatch(sandbox_id)
            env_dir = self._dir(_name_of(sandbox_id)) / "env"
            record = env.read_record(env_dir)
            if record is not None and record.owner != self._worker:  # another worker restarted it: theirs now
                popen.poll()  # ours was killed then: collect it
                continue
            env.stop(env_dir, popen)
        self._envs.clear()
        if self._cgroups:
            self._cgroups.close()

    # ----- metadata --------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self.root / _slug(name)

    def _workspace(self, meta: _Meta) -> Path:
        return self._dir(_name_of(meta.sandbox_id)) / "project"

    def _markers(self, meta: _Meta) -> Path:
        return self._dir(_name_of(meta.sandbox_id)) / "markers"

    def _ops(self, meta: _Meta) -> Path:
        return self._dir(_name_of(meta.sandbox_id)) / "ops"

    def _read_meta(self, name: str) -> _Meta | None:
        return self._read_meta_at(self._dir(name))

    @staticmethod
    def _read_meta_at(home: Path) -> _Meta | None:
        try:
            return _Meta.model_validate_json((home / "meta.json").read_bytes())
        except FileNotFoundError:
            return None

    def _write_meta(self, name: str, meta: _Meta) -> None:
        path = self._dir(name) / "meta.json"
        tmp = path.with_name(f".meta.{secrets.token_hex(4)}.tmp")
        with open(tmp, "w") as f:
            f.write(meta.model_dump_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _mark_gone(self, meta: _Meta, reason: str) -> None:
        """Gone first, wiped second: a crash in between leaves a gone sandbox, never a half-live one."""
        name = _name_of(meta.sandbox_id)
        self._write_meta(name, meta.model_copy(update={"gone": reason}))
        for run in list(self._runs.get(meta.sandbox_id, ())):
            run.kill(reason)
        env.stop(self._dir(name) / "env", self._envs.pop(meta.sandbox_id, None))  # background processes too
        self._unwatch(meta.sandbox_id)
        self._background.pop(meta.sandbox_id, None)
        self._quota.forget(meta.sandbox_id)
        self._discard(self._dir(name) / "project")
        self._discard(self._dir(name) / "markers")

    def _discard(self, path: Path) -> None:
        """Move a directory aside at once, then delete it."""
        trash = self.root / ".trash" / f"{path.parent.name}-{secrets.token_hex(4)}"
        try:
            path.rename(trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    async def _live(self, sandbox_id: str) -> _Meta:
        """The live sandbox `sandbox_id`, or SandboxGone (wiping it if it just expired)."""
        name = _name_of(sandbox_id)
        meta = self._read_meta(name) if name else None
        if meta is None:
            raise SandboxGone(f"sandbox {sandbox_id} does not exist")
        if meta.sandbox_id != sandbox_id:
            raise SandboxGone(f"sandbox {sandbox_id} is gone (its name now belongs to {meta.sandbox_id})")
        if meta.gone:
            raise SandboxGone(f"sandbox {sandbox_id} is gone ({meta.gone})")
        if meta.expired():
            async with self._locks[name]:
                await asyncio.to_thread(self._mark_gone, meta, "expired")
            raise SandboxGone(f"sandbox {sandbox_id} is gone (expired at {meta.expires_at:.0f})")
        return meta

    def _info(self, meta: _Meta) -> SandboxInfo:
        return SandboxInfo(sandbox_id=meta.sandbox_id, expires_at=meta.expires_at)

    # ----- lifecycle -------------------------------------------------------------------

    async def create(self, name: str, snapshot_id: str | None = None) -> SandboxInfo:
        archive_path = self._snapshot_path(snapshot_id) if snapshot_id is not None else None
        async with self._locks[name]:
            await asyncio.to_thread(self._sweep_if_due)
            meta = self._read_meta(name)
            if meta and not meta.gone and not meta.expired():
                return self._info(meta)  # a retry after a create that was never recorded
            if meta and not meta.gone:
                await asyncio.to_thread(self._mark_gone, meta, "expired")
            if archive_path and not archive_path.exists():
                raise SnapshotMissing(f"snapshot {snapshot_id} does not exist")
            generation, now = (meta.generation if meta else 0) + 1, time.time()
            fresh = _Meta(sandbox_id=f"{name}~{generation}", generation=generation, created_at=now,
                          expires_at=now + self.limits.ttl_s if self.limits.ttl_s else None)
            await asyncio.to_thread(self._build, name, archive_path, fresh)
            await asyncio.to_thread(self._ensure_env, fresh)  # its processes start now, not with the first command
            self._watch_between_commands(fresh)
            return self._info(fresh)

    def _build(self, name: str, archive_path: Path | None, meta: _Meta) -> None:
        home = self._dir(name)
        home.mkdir(mode=0o700, exist_ok=True)
        staging = home / "new"
        shutil.rmtree(staging, ignore_errors=True)  # left by a create that crashed
        staging.mkdir(mode=0o700)
        (staging / archive.WORKSPACE).mkdir()
        (staging / archive.MARKERS).mkdir()
        if archive_path:
            archive.restore_snapshot(archive_path, staging, self._owner)
        os.chown(staging / archive.WORKSPACE, *self._owner)
        (staging / archive.WORKSPACE).chmod(0o755)
        (staging / archive.MARKERS).chmod(0o700)
        for part in ("project", "markers"):
            self._discard(home / part)
        (staging / archive.WORKSPACE).rename(home / "project")
        (staging / archive.MARKERS).rename(home / "markers")
        staging.rmdir()
        self._write_meta(name, meta)

    async def terminate(self, sandbox_id: str) -> None:
        name = _name_of(sandbox_id)
        if not name:
            return
        async with self._locks[name]:
            meta = self._read_meta(name)
            if meta and meta.sandbox_id == sandbox_id and not meta.gone:
                await asyncio.to_thread(self._mark_gone, meta, "terminated")
            elif meta and meta.gone:  # finish a wipe a crash interrupted
                await asyncio.to_thread(self._discard, self._dir(name) / "project")

    def _snapshot_path(self, snapshot_id: str) -> Path:
        return self.root / "snapshots" / f"{_slug(snapshot_id)}.tar.zst"

    async def snapshot(self, sandbox_id: str, snapshot_name: str) -> str:
        path = self._snapshot_path(snapshot_name)
        if path.exists():
            return snapshot_name  # already taken: a retry after an unrecorded success
        meta = await self._live(sandbox_id)
        # Under the sandbox's lock, so an expiry wipe (see _live) cannot run under the archiver.
        async with self._locks[_name_of(sandbox_id)]:
            meta = await asyncio.to_thread(self._read_meta, _name_of(sandbox_id)) or meta
            if meta.gone:
                raise SandboxGone(f"sandbox {sandbox_id} is gone ({meta.gone})")
            await asyncio.to_thread(archive.write_snapshot, self._workspace(meta), self._markers(meta), path)
        return snapshot_name

    async def delete_snapshot(self, snapshot_id: str) -> None:
        self._snapshot_path(snapshot_id).unlink(missing_ok=True)

    async def import_snapshot(self, snapshot_name: str, tree: bytes) -> str:
        path = self._snapshot_path(snapshot_name)
        if not path.exists():
            await asyncio.to_thread(archive.snapshot_of_tree, tree, path)
        return snapshot_name

    async def snapshot_tree(self, snapshot_id: str) -> bytes:
        path = self._snapshot_path(snapshot_id)
        try:
            return await asyncio.to_thread(archive.tree_of_snapshot, path)
        except FileNotFoundError:
            raise SnapshotMissing(f"snapshot {snapshot_id} does not exist") from None

    async def workspace_tree(self, sandbox_id: str) -> bytes:
        meta = await self._live(sandbox_id)
        async with self._locks[_name_of(sandbox_id)]:  # as for a snapshot: no expiry wipe underneath
            meta = await asyncio.to_thread(self._read_meta, _name_of(sandbox_id)) or meta
            if meta.gone:
                raise SandboxGone(f"sandbox {sandbox_id} is gone ({meta.gone})")
            return await asyncio.to_thread(archive.tree_of_workspace, self._workspace(meta))

    # ----- files -----------------------------------------------------------------------

    async def write_file(self, sandbox_id: str, path: str, content: str) -> None:
        meta = await self._live(sandbox_id)
        workspace, data = self._workspace(meta), content.encode()
        paths.split_path(path)  # reject bad paths before measuring anything
        await self._reserve(meta.sandbox_id, workspace, len(data) - paths.existing_size(workspace, path), path)
        await asyncio.to_thread(paths.write_atomic, workspace, path, [data], self._owner)

    async def _reserve(self, sandbox_id: str, workspace: Path, delta: int, what: str) -> None:
        """WorkspaceFull unless `delta` more bytes fit under the cap; counts them if they do."""
        if delta <= 0:
            return
        usage = await self._quota.usage(sandbox_id, workspace)
        if usage + delta > self._quota.cap:
            usage = await self._quota.measure(sandbox_id, workspace)  # the cache is an upper bound
        if usage + delta > self._quota.cap:
            raise WorkspaceFull(f"writing {what} needs {delta} more bytes, but the workspace holds {usage} "
                                f"of its {self._quota.cap} byte cap; delete files first")
        self._quota.grew(sandbox_id, delta)

    async def read_file(self, sandbox_id: str, path: str, max_bytes: int) -> str:
        meta = await self._live(sandbox_id)
        data, size = await asyncio.to_thread(paths.read_bytes, self._workspace(meta), path, max_bytes)
        text = data.decode("utf-8", errors="replace")
        if size > len(data):
            text += f"\n... [truncated: showing the first {len(data)} of {size} bytes]"
        return text

    async def list_files(self, sandbox_id: str, path: str, max_entries: int) -> list[FileEntry]:
        meta = await self._live(sandbox_id)
        return await asyncio.to_thread(paths.list_tree, self._workspace(meta), path, max_entries)

    # ----- markers ---------------------------------------------------------------------

    async def write_marker(self, sandbox_id: str, name: str, data: str, *, durable: bool = True) -> None:
        markers.check_name(name)
        meta = await self._live(sandbox_id)
        await asyncio.to_thread(markers.write, self._markers(meta), name, data, durable)

    async def create_marker(self, sandbox_id: str, name: str, data: str) -> bool:
        markers.check_name(name)
        meta = await self._live(sandbox_id)
        return await asyncio.to_thread(markers.create, self._markers(meta), name, data)

    async def read_marker(self, sandbox_id: str, name: str) -> str | None:
        markers.check_name(name)
        meta = await self._live(sandbox_id)
        return await asyncio.to_thread(markers.read, self._markers(meta), name)

    async def delete_markers(self, sandbox_id: str, prefix: str) -> int:
        markers.check_prefix(prefix)
        meta = await self._live(sandbox_id)
        # The operations go too: no attempt of them will come again, so no stop marks are needed.
        await asyncio.to_thread(ops.forget, self._ops(meta), prefix)
        return await asyncio.to_thread(markers.delete, self._markers(meta), prefix)

    # ----- commands --------------------------------------------------------------------

    async def exec(self, sandbox_id: str, command: str, timeout_s: float, op_id: str | None = None) -> ExecResult:
        async with self.slots.slot(sandbox_id):  # the host-wide cap on commands running at once
            return await self._exec(sandbox_id, command, timeout_s, op_id)

    async def _exec(self, sandbox_id: str, command: str, timeout_s: float, op_id: str | None) -> ExecResult:
        if op_id is not None:
            markers.check_name(op_id)
        meta = await self._live(sandbox_id)
        workspace, limits = self._workspace(meta), self.limits
        # A command cannot outlive its sandbox: the deadline is the earlier of the two.
        left = meta.expires_at - time.time() if meta.expires_at is not None else None
        wait_s = min(timeout_s, left) if left is not None else timeout_s
        stopped_by = "expired" if left is not None and left < timeout_s else "timeout"

        out = StreamCapture(limits.output_head_bytes, limits.output_tail_bytes, limits.max_output_mb * MB,
                            self.root / ".spool")
        err = StreamCapture(limits.output_head_bytes, limits.output_tail_bytes, limits.max_output_mb * MB,
                            self.root / ".spool")
        recorded = False  # under op_id, in <name>/ops/, for stop_op
        run: _Run | None = None
        pipes: list[asyncio.BaseTransport] = []
        readers: asyncio.Future[list[None]] | None = None
        exited: dict[str, Any] | None = None
        try:
            if op_id is not None:
                recorded = ops.begin(self._ops(meta), op_id, ops.OpRecord(sandbox_id=sandbox_id, worker=self._worker))
                if not recorded:
                    return ExecResult(exit_code=128 + signal.SIGKILL, stdout="", stderr=_NOT_STARTED)
            run = _Run(None, op_id)
            self._runs[sandbox_id].add(run)
            start = await self._start(meta, run, command)
            channel, record, group, notices = run.channel, start.record, _group_of(start.record), start.notices
            assert channel is not None  # _start opened it
            usage, over_cap = 0, False
            if start.running:
                streams = []
                for fd in channel.take_fds():  # stdout, stderr
                    stream, transport = await _read_pipe(fd)
                    streams.append(stream)
                    pipes.append(transport)
                if len(streams) != 2:
                    raise RuntimeError(f"the sandbox's supervisor handed over {len(streams)} output pipes, not 2")
                async with self._quota.watch(sandbox_id, workspace, partial(run.kill, "workspace")) as watch:
                    readers = asyncio.gather(pump(streams[0], out), pump(streams[1], err))
                    try:
                        try:
                            exited = await self._answer(meta, channel, time.monotonic() + max(wait_s, 0))
                        except TimeoutError:
                            run.kill(stopped_by)
                            exited = await self._answer(meta, channel, time.monotonic() + _KILL_WAIT_S)
                    except env.EnvLost:
                        exited = None  # the sandbox's processes were stopped under the command
                    except (env.EnvUnresponsive, TimeoutError):  # it stopped answering: restart them all
                        exited, frozen = None, await self._restart_frozen(meta, run)
                        if run.killed_for is None:
                            run.killed_for, run.why = "unresponsive", frozen
                        else:
                            notices.append(frozen)
                    try:
                        await asyncio.wait_for(asyncio.shield(readers), _DRAIN_AFTER_EXIT_S)
                    except TimeoutError:
                        pass  # a background process holds the output open: the supervisor drains it from now on
                usage, over_cap = watch.usage, watch.exceeded
            if exited is None:
                current = self._read_meta(_name_of(sandbox_id))
                if current is None or current.sandbox_id != sandbox_id or current.gone:
                    run.killed_for = run.killed_for or "terminated"
                elif run.killed_for is None:
                    run.killed_for, run.why = "lost", _lost_cause(self._env_dir(meta), record)
            oom, forks = _hits_since(group, start.hits_before)
            if forks:
                note, exited = await self._after_process_limit(meta, run, forks, exited)
                notices.append(note)
            if run.killed_for in ("expired", "terminated"):
                if run.killed_for == "expired":
                    async with self._locks[_name_of(sandbox_id)]:
                        await asyncio.to_thread(self._mark_gone, meta, "expired")
                raise SandboxGone(f"sandbox {sandbox_id} is gone ({run.killed_for} while the command ran)")
            code = _exit_code(exited)
            background = exited.get("background") if isinstance(exited, dict) else None
            if isinstance(background, int):
                await self._note_background(meta, background)
            result = await self._result(meta, command, timeout_s, code, run, out, err, usage, over_cap, oom,
                                        notices)
            return result.model_copy(update={"background": background if isinstance(background, int) else None})
        finally:
            if readers is not None and not readers.done():
                readers.cancel()
                readers.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody awaits it
            if run is not None:
                if exited is None and run.killed_for is None:  # cancelled: the caller gave up on this attempt
                    run.kill("cancelled")
                    await _until_ended(run)
                self._runs[sandbox_id].discard(run)
                if not self._runs[sandbox_id]:
                    del self._runs[sandbox_id]
            for pipe in pipes:
                pipe.close()
            if run is not None and run.channel is not None:
                run.channel.close()  # the supervisor kills the command if it still runs, and drains its output
            if recorded:  # only now: the command is gone, or this worker could not tell
                ops.end(self._ops(meta), op_id)
            out.close()
            err.close()

    async def stop_op(self, sandbox_id: str, op_id: str) -> None:
        markers.check_name(op_id)
        for run in list(self._runs.get(sandbox_id, ())):  # started by this worker: a shortcut
            if run.op_id == op_id:
                run.kill("stopped")
        # The record decides, wherever the command was started; a gone sandbox is checked after,
        # so even then nothing keeps running.
        if name := _name_of(sandbox_id):
            await ops.stop(self._dir(name) / "ops", op_id, sandbox_id, partial(self._stop_op_in_env, sandbox_id, op_id))
        await self._live(sandbox_id)

    async def _stop_op_in_env(self, sandbox_id: str, op_id: str) -> None:
        """Have the supervisor stop what runs under `op_id`; one that answers no ping either is
        frozen, and the sandbox's processes are stopped (the next command says so)."""
        env_dir = self._dir(_name_of(sandbox_id)) / "env"
        try:
            await env.stop_op(env_dir, op_id, ops.STOP_WAIT_S)
        except (TimeoutError, env.EnvUnresponsive):
            meta = self._read_meta(_name_of(sandbox_id))
            if await env.ping(env_dir, self.limits.supervisor_timeout_s) or meta is None or meta.gone:
                raise
            await asyncio.to_thread(self._stop_env, meta, _FROZEN)

    async def _start(self, meta: _Meta, run: _Run, command: str) -> _Start:
        """Ask the sandbox's supervisor to start `command` (on `run.channel`).

        Twice the sandbox's processes are stopped and started afresh, and the command started
        in the fresh ones, each time sure that it has not run: when the supervisor refuses it
        because the sandbox's processes fill its process limit (it refuses before it forks), and
        when the supervisor answers nothing, not even a ping, and never read the request
        (Channel.unread). One that read it and froze may have started it: that is reported."""
        notices: list[str] = []
        for attempt in range(2):
            if attempt and run.channel is not None:
                run.channel.close()
            try:
                run.channel, notice = await self._channel(meta)
            except env.EnvUnresponsive:  # its backlog is full: nothing was sent
                notices.append(await self._restart_frozen(meta, run) + "; the command ran in the fresh ones")
                run.channel, notice = await self._channel(meta)
            notices += [notice] if notice else []
            record = env.read_record(self._env_dir(meta))
            group = _group_of(record)
            hits_before = group.limit_hits() if group else (0, 0)
            run.channel.send({"run": command, "op": run.op_id})
            try:
                answer = await self._answer(meta, run.channel)  # {"pid": n}, with the output pipes
            except env.EnvLost:  # the sandbox's processes were stopped before the command could start
                return _Start(False, record, hits_before, notices)
            except env.EnvUnresponsive:
                unread = run.channel.unread() > 0
                frozen = await self._restart_frozen(meta, run)
                if not unread or attempt:
                    run.killed_for, run.why = "unresponsive", frozen
                    return _Start(False, record, hits_before, notices)
                notices.append(frozen + "; the command had not started, and ran in the fresh ones")
                continue
            if "unstarted" not in answer:
                return _Start(True, record, hits_before, notices)
            background = answer.get("background")
            stopped = f" ({background})" if isinstance(background, int) else ""
            if attempt:
                break
            await self._restart(meta, _FULL, run)
            notices.append(f"the processes that earlier commands left running in the background{stopped} filled the "
                           f"sandbox's limit of {self.limits.pids_max} processes, so this command could not start; "
                           "they were all stopped, and it ran in fresh ones")
        raise RuntimeError("the sandbox's supervisor could not start a command in fresh processes")

    async def _answer(self, meta: _Meta, channel: Channel, deadline: float | None = None) -> dict[str, Any]:
        """The supervisor's next answer on `channel`. While it is late the supervisor is pinged,
        every `supervisor_timeout_s`: EnvUnresponsive when a ping goes unanswered too (frozen),
        TimeoutError at `deadline` (time.monotonic())."""
        every = self.limits.supervisor_timeout_s
        while True:
            wait = every if deadline is None else min(every, deadline - time.monotonic())
            if wait <= 0:
                raise TimeoutError
            try:
                return await asyncio.wait_for(channel.line(), wait)
            except TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
            if not await env.ping(self._env_dir(meta), every):
                raise env.EnvUnresponsive(f"the sandbox's supervisor answered no ping within {every:g} s")

    async def _restart_frozen(self, meta: _Meta, run: _Run) -> str:
        """Stop every process of a sandbox whose supervisor answers nothing (SIGKILL reaches
        stopped processes too) and start fresh ones. Returns what the model is told."""
        record = env.read_record(self._env_dir(meta))
        await self._restart(meta, _FROZEN, run)
        among = f" ({record.background} left running in the background among them)" if record and \
            record.background else ""
        return (f"the sandbox's supervisor answered nothing, not even a ping, for "
                f"{2 * self.limits.supervisor_timeout_s:g} s, so every process of the sandbox was stopped{among} and "
                "started afresh")

    async def _after_process_limit(self, meta: _Meta, run: _Run, forks: int,
                                   exited: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
        """The sandbox refused forks while the command ran. What the command left running in its
        process group goes (a fork bomb leaves its whole tree there); if what runs in the
        background still holds most of the limit after that (a bomb that left the group), all
        of it goes too. Returns what the model is told, and the exit report with the background
        count brought up to date."""
        limit = self.limits.pids_max
        note = f"process limit reached: {forks} fork(s) refused at {limit} processes"
        if exited is None or run.channel is None:
            return note, exited  # the sandbox's processes were stopped under it: nothing of it is left
        run.channel.send({"kill_group": True})
        try:
            answer = await asyncio.wait_for(run.channel.line(), _KILL_WAIT_S)
        except (env.EnvLost, TimeoutError):
            return note, exited
        killed, background = answer.get("killed"), answer.get("background")
        if isinstance(killed, int) and killed:
            note += f"; the {killed} process(es) the command left running in the background were stopped"
        group = _group_of(env.read_record(self._env_dir(meta)))
        if group is not None and group.processes() > limit // 2:
            await self._restart(meta, _FULL, run)
            note += (f"; processes left running in the background ({background}) still "
                     "held most of the limit after that, so they were all stopped")
            background = 0
        return note, {**exited, "background": background}

    # ----- the live environment (sandbox/env.py) ----------------------------------------

    def _env_dir(self, meta: _Meta) -> Path:
        return self._dir(_name_of(meta.sandbox_id)) / "env"

    async def _channel(self, meta: _Meta) -> tuple[Channel, str | None]:
        """A connection to the sandbox's environment, starting one if there is none (the notice
        then says what the lost one took with it)."""
        try:
            return await Channel.open(self._env_dir(meta)), None
        except env.EnvLost:
            pass
        async with self._env_locks[meta.sandbox_id]:
            notice = await asyncio.to_thread(self._ensure_env, meta)
        self._watch_between_commands(meta)
        return await Channel.open(self._env_dir(meta)), notice

    def _ensure_env(self, meta: _Meta) -> str | None:
        """Start the sandbox's environment unless one answers (blocking; one start on the machine
        at a time per sandbox, whatever worker asks). Returns what the model must be told."""
        env_dir = self._env_dir(meta)
        env_dir.mkdir(mode=0o700, exist_ok=True)
        with open(env_dir.parent / "env.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if env.answers(env_dir):
                return None
            old = env.read_record(env_dir)
            why = env.take_stop_reason(env_dir)
            env.stop(env_dir, self._envs.pop(meta.sandbox_id, None))
            self._start_env(meta, env_dir)
        if why is not None:
            return f"processes that earlier commands left running in the background were stopped: {why}"
        if old is None or old.sandbox_id != meta.sandbox_id or not old.background:
            return None
        return (f"the sandbox's processes were restarted ({_cause(old)}): {old.background} process(es) that "
                "earlier commands left running in the background were stopped. Files are unaffected; start "
                "them again if you need them.")

    def _start_env(self, meta: _Meta, env_dir: Path) -> None:
        limits, workspace = self.limits, self._workspace(meta)
        listener = env.listen(env_dir)
        group = self._cgroups.create(limits.pids_max, limits.memory_mb * MB) if self._cgroups else None
        fds = group.open_procs() if group else []
        seccomp = [seccomp_filter_fd()] if self._seccomp else []  # its descriptor, for bwrap to read
        try:
            supervise = [str(listener.fileno()), MOUNT_POINT, json.dumps(COMMAND_ENV)]
            if self._bwrap:
                program = ["/usr/bin/python3", "-I", "-S", SUPERVISOR, *supervise]
                argv, stage = sandboxed(self._bwrap, workspace, self.root / ".etc", "", limits.tmp_mb * MB,
                                        staged=self._drop_to is not None, program=program,
                                        seccomp_fd=seccomp[0] if seccomp else None)
                launch_env, cwd = LAUNCHER_ENV, None
            else:  # allowed unprotected: the host uid may not reach the root, so source and cwd come from here
                supervise[1] = "."
                source = (self.root / ".etc" / "supervisor.py").read_text()
                argv, stage = ["/usr/bin/python3", "-I", "-S", "-c", source, *supervise], []
                launch_env, cwd = COMMAND_ENV, workspace
            with open(env_dir / "log", "ab") as log:  # the supervisor's own complaints, if any
                popen = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=launch_env, cwd=cwd,
                    pass_fds=[listener.fileno(), *seccomp], start_new_session=True,
                    preexec_fn=partial(prepare_child, fds, self._rlimits, self._drop_to, os.getpid(), stage))
        except BaseException:
            if group is not None:
                group.remove()
            raise
        finally:
            for fd in fds + seccomp:
                os.close(fd)
            listener.close()  # the supervisor holds it now: when the sandbox dies, connecting fails
        self._envs[meta.sandbox_id] = popen
        env.write_record(env_dir, env.EnvRecord(sandbox_id=meta.sandbox_id, owner=self._worker,
                                                leader=ops.Proc.of(popen.pid),
                                                groups=[str(d) for d in group.dirs.values()] if group else []))

    def _watch_between_commands(self, meta: _Meta) -> None:
        """The workspace cap, for what runs in the background between commands: this worker
        owns the environment it started, so it watches it (commands are watched by their exec)."""
        if meta.sandbox_id in self._envs and meta.sandbox_id not in self._watchers:
            self._watchers[meta.sandbox_id] = asyncio.get_running_loop().create_task(self._watch(meta))

    async def _watch(self, meta: _Meta) -> None:
        over = asyncio.Event()
        self._quota.forget(meta.sandbox_id)  # measured afresh: a stopped filler may have written on
        async with self._quota.watch(meta.sandbox_id, self._workspace(meta), over.set):
            await over.wait()
        # Over the cap: stop everything the sandbox runs (a command running now says why).
        for run in list(self._runs.get(meta.sandbox_id, ())):
            run.kill("workspace")
        self._watchers.pop(meta.sandbox_id, None)
        await asyncio.to_thread(self._stop_env, meta, f"the workspace grew past its {self.limits.workspace_mb} MB "
                                                      "cap; delete files before writing more")

    async def _restart(self, meta: _Meta, why: str, spare: _Run) -> None:
        await asyncio.to_thread(self._restart_env, meta, why, spare)
        self._watch_between_commands(meta)

    def _restart_env(self, meta: _Meta, why: str, spare: _Run) -> None:
        """Stop every process of the sandbox and start fresh ones now (blocking): the command
        `spare` tells the model with its result, so the next command does not. Other commands of
        this worker that run there are killed, and say `why`."""
        for run in list(self._runs.get(meta.sandbox_id, ())):
            if run is not spare and run.killed_for is None:
                run.killed_for, run.why = "restarted", why
        env_dir = self._env_dir(meta)
        with open(env_dir.parent / "env.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            env.stop(env_dir, self._envs.pop(meta.sandbox_id, None))
            self._start_env(meta, env_dir)

    def _stop_env(self, meta: _Meta, why: str) -> None:
        env_dir = self._env_dir(meta)
        with open(env_dir.parent / "env.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            env.stop(env_dir, self._envs.pop(meta.sandbox_id, None), why=why)

    def _unwatch(self, sandbox_id: str) -> None:
        if (watcher := self._watchers.pop(sandbox_id, None)) is not None:
            watcher.cancel()

    async def _note_background(self, meta: _Meta, background: int) -> None:
        """Keep the count of background processes in the record when it changes (rarely), so a
        restart after a loss can tell whether it stopped any."""
        if self._background.get(meta.sandbox_id) == background:
            return
        self._background[meta.sandbox_id] = background
        await asyncio.to_thread(self._write_background, meta, background)

    def _write_background(self, meta: _Meta, background: int) -> None:
        env_dir = self._env_dir(meta)
        with open(env_dir.parent / "env.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            record = env.read_record(env_dir)
            if record is not None and record.sandbox_id == meta.sandbox_id and record.background != background:
                env.write_record(env_dir, record.model_copy(update={"background": background}))

    async def _result(self, meta: _Meta, command: str, timeout_s: float, exit_code: int, run: _Run,
                      out: StreamCapture, err: StreamCapture, usage: int, over_cap: bool, oom: int,
                      notices: list[str]) -> ExecResult:
        limits, notes, killed_for = self.limits, list(notices), run.killed_for
        if killed_for == "timeout":
            exit_code = TIMEOUT_EXIT_CODE
            notes.append(f"timed out after {timeout_s:g} s; the command and everything it started were killed")
        if oom:
            notes.append(f"out of memory: the {limits.memory_mb} MB limit was hit and {oom} process(es) were killed")
        if killed_for == "workspace":
            notes.append(f"killed: the workspace grew past its {limits.workspace_mb} MB cap")
        if killed_for == "stopped":
            notes.append("stopped: another attempt of this operation stopped it")
        if killed_for in ("lost", "restarted"):
            notes.append(f"killed: the sandbox's processes were stopped while it ran ({run.why}); anything it "
                         "left in the background was stopped too")
        if killed_for == "unresponsive":
            notes.append(f"killed: {run.why}; the command's processes went with them")
        if over_cap:
            notes.append(f"the workspace is over its cap ({usage // MB} MB of {limits.workspace_mb} MB); "
                         "delete files before writing more")

        saved_in = None
        if out.truncated or err.truncated:
            path = full_log_path()
            size = out.spooled + err.spooled + len(command.encode()) + 200
            try:
                await self._reserve(meta.sandbox_id, self._workspace(meta), size, "the full output")
                await asyncio.to_thread(paths.write_atomic, self._workspace(meta), path,
                                        full_log(command, out, err), self._owner)
                saved_in = path
            except (WorkspaceFull, PathRejected, FileMissing) as e:
                notes.append(f"full output not saved: {e}")
            else:
                try:
                    await asyncio.to_thread(paths.keep_newest, self._workspace(meta), OUTPUTS_DIR,
                                            KEEP_OUTPUTS, OUTPUT_NAME, path.rpartition("/")[2])
                except (PathRejected, FileMissing):
                    pass  # the command moved the directory away meanwhile: nothing of ours to prune
        return exec_result(exit_code, out, err, timed_out=killed_for == "timeout", saved_in=saved_in,
                           notes=notes)


def _group_of(record: env.EnvRecord | None) -> CommandGroup | None:
    if record is None or not record.groups:
        return None
    return CommandGroup({c: Path(d) for c, d in zip(CONTROLLERS, record.groups, strict=False)})


def _hits_since(group: CommandGroup | None, before: tuple[int, int]) -> tuple[int, int]:
    """(OOM kills, refused forks) in the sandbox since `before`: the command's, as near as can be told."""
    if group is None:
        return 0, 0
    oom, forks = group.limit_hits()
    return max(oom - before[0], 0), max(forks - before[1], 0)


def _cause(record: env.EnvRecord) -> str:
    """Why the processes of an environment that is gone stopped, as far as can be told."""
    if not record.owner.running():
        return "the worker process that held them stopped"
    return "the sandbox's supervisor stopped"


def _lost_cause(env_dir: Path, record: env.EnvRecord | None) -> str:
    """Why the environment a command ran in (`record`) went away under it."""
    if record is not None and not record.owner.running():
        return "the worker process that held them stopped"
    now = env.read_record(env_dir)
    if record is None or now is None:
        return "they were stopped"
    if now.leader != record.leader:
        return "they were restarted"
    return _cause(record)


def _exit_code(exited: dict[str, Any] | None) -> int:
    """The supervisor's report (128+N for signal N); a command lost with its sandbox's processes: 137."""
    code = exited.get("exit") if exited is not None else None
    return code if isinstance(code, int) else 128 + signal.SIGKILL


async def _read_pipe(fd: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    """An output pipe the supervisor handed over, as a stream (read with sandbox/output.pump)."""
    reader = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
    return reader, transport


async def _until_ended(run: _Run) -> None:
    """After a kill on cancellation: wait (briefly) for the supervisor to report the command gone."""
    if run.channel is None:
        return  # it was never asked to start it
    try:
        async with asyncio.timeout(_KILL_WAIT_S):
            while "exit" not in await run.channel.line():
                pass
    except (env.EnvLost, TimeoutError):
        pass
