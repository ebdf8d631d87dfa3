"""The local backend: a sandbox is a directory on this machine, a command is a bubblewrap run.

Layout under `root`:

    <name>/meta.json               who the sandbox is: id, generation, created/expires, gone?
    <name>/project/                the workspace, bound read-write at /project
    <name>/markers/                its markers, out of every command's reach (sandbox/markers.py)
    <name>/ops/                    commands running under an op id (sandbox/ops.py)
    snapshots/<snapshot>.tar.zst   snapshots: workspace and markers (sandbox/archive.py)
    .etc/                          the sandbox's own passwd, group, hosts
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
import hashlib
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

from pydantic import BaseModel

from sandbox import archive, markers, ops, paths
from sandbox.bwrap import COMMAND_ENV, LAUNCHER_ENV, sandboxed, unprotected_argv, write_etc
from sandbox.cgroup import CommandGroup
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
from sandbox.slots import CommandSlots
from sandbox.spawn import prepare_child

logger = logging.getLogger(__name__)

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_RESERVED = {"snapshots"}
_DRAIN_AFTER_EXIT_S = 2.0  # the pipes close when the sandbox's PID namespace dies
_NOT_STARTED = "[sandbox] not started: another attempt of this operation stopped it first\n"


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


@dataclass(eq=False)
class _Run:
    """A command in flight, so terminate and expiry can kill it."""

    proc: asyncio.subprocess.Process
    group: CommandGroup | None
    op_id: str | None = None
    killed_for: str | None = None  # "timeout", "expired", "terminated", "workspace", "stopped"

    def kill(self, reason: str) -> None:
        if self.killed_for is None:
            self.killed_for = reason
        # The command's process group holds the reaper and bwrap, PID 1 of the command's PID
        # namespace: killing them makes the kernel kill every process the command started.
        # Everything in the cgroup is killed as well, in case the namespace is not there
        # (no bubblewrap) or not finished (a command still starting).
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in self.group.pids() if self.group else ():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


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
        self._owner, self._drop_to = machine.owner, machine.drop_to
        self._worker = ops.Proc.of(os.getpid())  # how op records name this process
        assert self._worker is not None
        self._quota = WorkspaceQuota(limits.workspace_mb * MB)
        self.slots = CommandSlots(self.root / ".slots", limits.max_running_commands)
        self._runs: dict[str, set[_Run]] = defaultdict(set)
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        if self._cgroups:
            self._cgroups.sweep_stale()
        self._sweep()

    def _sweep(self) -> None:
        """Wipe expired sandboxes and leftovers of interrupted wipes (a crash mid-operation)."""
        for d in self.root.iterdir():
            if not d.name.startswith(".") and d.name not in _RESERVED and (d / "meta.json").exists():
                meta = self._read_meta_at(d)
                if meta and not meta.gone and meta.expired():
                    self._mark_gone(meta, "expired")
                if meta and meta.gone:
                    self._discard(d / "project")
                    self._discard(d / "markers")
        for d in (self.root / ".trash").iterdir():
            shutil.rmtree(d, ignore_errors=True)

    def close(self) -> None:
        """Release shared machine state (empty cgroup parents). Sandboxes stay as they are."""
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
            await asyncio.to_thread(self._sweep)
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
        group = self._cgroups.create(limits.pids_max, limits.memory_mb * MB) if self._cgroups else None
        record = ops.OpRecord(sandbox_id=sandbox_id, worker=self._worker,
                              groups=[str(d) for d in group.dirs.values()] if group else [])
        recorded = False  # under op_id, in <name>/ops/, for stop_op
        run: _Run | None = None
        readers: asyncio.Future[list[None]] | None = None
        try:
            if op_id is not None:
                recorded = ops.begin(self._ops(meta), op_id, record)
                if not recorded:
                    return ExecResult(exit_code=128 + signal.SIGKILL, stdout="", stderr=_NOT_STARTED)
            spawning = asyncio.ensure_future(self._spawn(workspace, command, group, op_id))
            try:
                run = await asyncio.shield(spawning)
            except asyncio.CancelledError:
                # Let the start finish (milliseconds), so the finally below kills it properly:
                # asyncio's own cleanup would kill bwrap alone, mid-setup, and then wait forever.
                run = await spawning
                raise
            if recorded:
                ops.started(self._ops(meta), op_id, record, run.proc.pid)
            self._runs[sandbox_id].add(run)
            async with self._quota.watch(sandbox_id, workspace, partial(run.kill, "workspace")) as watch:
                assert run.proc.stdout is not None and run.proc.stderr is not None
                readers = asyncio.gather(pump(run.proc.stdout, out), pump(run.proc.stderr, err))
                try:
                    await asyncio.wait_for(run.proc.wait(), max(wait_s, 0))
                except TimeoutError:
                    run.kill(stopped_by)
                    await run.proc.wait()
                try:
                    await asyncio.wait_for(asyncio.shield(readers), _DRAIN_AFTER_EXIT_S)
                except TimeoutError:
                    pass  # only without bubblewrap can a background process hold the pipes open
            oom, forks = group.limit_hits() if group else (0, 0)
            if run.killed_for in ("expired", "terminated"):
                if run.killed_for == "expired":
                    async with self._locks[_name_of(sandbox_id)]:
                        await asyncio.to_thread(self._mark_gone, meta, "expired")
                raise SandboxGone(f"sandbox {sandbox_id} is gone ({run.killed_for} while the command ran)")
            return await self._result(meta, command, timeout_s, run, out, err, watch.usage, watch.exceeded,
                                      oom, forks)
        finally:
            if readers is not None and not readers.done():
                readers.cancel()
                readers.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody awaits it
            if run is not None:
                if run.proc.returncode is None:  # cancelled: the caller gave up on this attempt
                    run.kill("cancelled")
                self._runs[sandbox_id].discard(run)
                if not self._runs[sandbox_id]:
                    del self._runs[sandbox_id]
            if group is not None:
                try:
                    await asyncio.to_thread(group.remove)
                except OSError as e:  # left for the sweep when this worker is gone
                    logger.warning("could not remove the cgroup of a finished command: %s", e)
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
            await ops.stop(self._dir(name) / "ops", op_id, sandbox_id)
        await self._live(sandbox_id)

    async def _spawn(self, workspace: Path, command: str, group: CommandGroup | None, op_id: str | None) -> _Run:
        stage: list[tuple[str, str]] = []
        if self._bwrap:
            argv, stage = sandboxed(self._bwrap, workspace, self.root / ".etc", command, self.limits.tmp_mb * MB,
                                    staged=self._drop_to is not None)
            env, cwd = LAUNCHER_ENV, None
        else:
            argv, env, cwd = unprotected_argv(command), COMMAND_ENV, workspace
        fds = group.open_procs() if group else []
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, cwd=cwd, start_new_session=True,
                preexec_fn=partial(prepare_child, fds, self._rlimits, self._drop_to, os.getpid(), stage))
        finally:
            for fd in fds:
                os.close(fd)
        return _Run(proc, group, op_id)

    async def _result(self, meta: _Meta, command: str, timeout_s: float, run: _Run, out: StreamCapture,
                      err: StreamCapture, usage: int, over_cap: bool, oom: int, forks: int) -> ExecResult:
        limits, notes = self.limits, []
        code = run.proc.returncode if run.proc.returncode is not None else -signal.SIGKILL
        exit_code = 128 - code if code < 0 else code  # killed by signal N -> 128+N, as a shell reports it
        if run.killed_for == "timeout":
            exit_code = TIMEOUT_EXIT_CODE
            notes.append(f"timed out after {timeout_s:g} s; the command and everything it started were killed")
        if oom:
            notes.append(f"out of memory: the {limits.memory_mb} MB limit was hit and {oom} process(es) were killed")
        if forks:
            notes.append(f"process limit reached: {forks} fork(s) refused at {limits.pids_max} processes")
        if run.killed_for == "workspace":
            notes.append(f"killed: the workspace grew past its {limits.workspace_mb} MB cap")
        if run.killed_for == "stopped":
            notes.append("stopped: another attempt of this operation stopped it")
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
        return exec_result(exit_code, out, err, timed_out=run.killed_for == "timeout", saved_in=saved_in,
                           notes=notes)
