"""`Sandbox`: a virtual object keyed by session id that owns the sandbox's lifecycle.

The state machine lives here; backends (sandbox/) only perform vendor operations. Every
backend call is a journaled step, so a replay never repeats a completed operation, and the
backend's deterministic names make a retried in-flight operation find its own earlier work.

    none ──create──▶ running ──idle timer──▶ suspended ──next op──▶ running (restored)
                      │  ▲                                               ▲
                      │  └── restart timer (TTL - margin): snapshot, terminate, create
                      └── backend confirms gone ──▶ terminate, recreate from last snapshot ──┘
    any ──reset──▶ released (terminated, snapshots deleted)

Durable timers are delayed self-sends. There is one restart chain: a timer carries the
generation it was scheduled for, recreating cancels the old timer, and a timer for an older
generation is a no-op. The idle timer is one delayed self-send too, moved lazily: operations
record when they ended, and a timer that fires early sets itself again for the rest of the period.

Exclusive handlers are ingress-private: only the Task (and timers) drive the sandbox. The
shared read-only handlers are public so users can inspect the workspace while a command runs;
on a suspended sandbox they go through the exclusive path, which brings it back.

A rollback is never silent. Only a sandbox the backend *confirms* gone is replaced (an outage
is retried, never mistaken for a death); the abandoned sandbox is terminated so it can never
run on unseen; and the operation's result carries a `notice` that the tools put in front of
the tool result the model sees, plus a `sandbox` event in the session's log.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Awaitable, Callable, Generic, TypeVar

import restate
from pydantic import BaseModel
from restate import ObjectContext, ObjectSharedContext, TerminalError
from restate.serde import BytesSerde

from app import retry, snapshots
from app.backend import backend, command_slots
from app.errors import is_cancellation, is_gone, not_found, sandbox_failure
from app.events import emit
from app.models import (
    AcquireIn, CheckpointIn, CheckpointOut, CommandSlotsOut, EditFileIn, ExecIn, ExecOut, FileEntryOut, FileOpOut, HoldIn,
    ListFilesOut, NoSandbox, PathIn, ReadFileOut, Released, ReleaseIn, RestoreIn, RestoreOut, Running, SandboxInfoOut,
    SandboxState, Suspended, TimerIn, WriteFileIn, FileDiff, TreeDiffIn, TreeDiffOut,
)
from app.repo import trees
from app.once import edit_once, exec_once, task_markers, write_once
from app.stored import load
from app.validation import check_key, no_input, parse
from sandbox import ExecResult, SandboxGone, SandboxInfo

T = TypeVar("T")

MAX_READ_BYTES = 256_000
MAX_LIST_ENTRIES = 2_000
# Snapshots kept per session: the newest is what a restore uses; one more in case the newest
# turns out unusable. Older ones are deleted as soon as a newer one is recorded.
KEEP_SNAPSHOTS = 2

sandbox_object = restate.VirtualObject(
    "Sandbox",
    invocation_retry_policy=retry.INVOCATION_RETRY,
    inactivity_timeout=retry.LONG_STEP_INACTIVITY,
    abort_timeout=retry.LONG_STEP_ABORT,
)


async def _load(ctx: ObjectContext | ObjectSharedContext) -> SandboxState:
    return await load(ctx, "state", SandboxState) or SandboxState()


async def _step(ctx: ObjectContext | ObjectSharedContext, name: str, type_hint: type[T],
                action: Callable[[], Awaitable[T]]) -> T:
    """Run one backend operation as a journaled step, mapping backend errors inside it."""

    async def guarded() -> T:
        try:
            return await action()
        except Exception as error:  # noqa: BLE001 - mapped to terminal/retryable right here
            raise sandbox_failure(error) from error

    return await ctx.run_typed(name, guarded, retry.sandbox_step(type_hint))


class _Timed(BaseModel, Generic[T]):
    """An operation's result and the worker's clock when it ended, journaled together: the
    idle period starts there, and reading the clock in its own step would cost a round trip."""

    value: T
    ended_at: float


async def _timed(action: Callable[[], Awaitable[T]]) -> _Timed[T]:
    value = await action()
    return _Timed(value=value, ended_at=time.time())


@dataclass(frozen=True)
class Done(Generic[T]):
    """An operation's result and what the model must be told about the sandbox before it."""

    value: T
    notice: str | None = None


# ---------------------------------------------------------------- transitions


async def _ensure_running(ctx: ObjectContext, state: SandboxState, *, restart: bool = False) -> Running:
    """The live sandbox, creating it (or restoring the last snapshot) if there is none. If the
    snapshot is gone, the workspace starts empty and `state.pending_notice` says so."""
    current = state.current
    if isinstance(current, Running):
        return current
    generation = current.generation + 1
    snapshot_id = current.snapshot_id
    name = f"{ctx.key()}-g{generation}"  # deterministic, so a retried create finds its own
    try:
        info = await _step(ctx, f"create sandbox {name}", SandboxInfo, lambda: backend().create(name, snapshot_id))
    except TerminalError as error:
        if snapshot_id is None or error.status_code != 404:
            raise
        # The snapshot is gone (deleted by hand, lost with its disk). A fresh workspace is the
        # only way forward; the loss is counted, and told to the model and the user.
        state.snapshots_lost += 1
        state.changed, state.checkpoint_snapshot = True, None
        snapshot_id = None
        info = await _step(ctx, f"create sandbox {name} (fresh)", SandboxInfo, lambda: backend().create(name, None))
        state.pending_notice = _join(state.pending_notice, (
            "The sandbox's saved workspace could not be found, so it was started over with an empty "
            "workspace: every file from earlier work is gone."))
        emit(ctx, ctx.key(), "sandbox", "workspace lost: the sandbox started over empty")
    running = Running(sandbox_id=info.sandbox_id, generation=generation,
                      expires_at=info.expires_at, snapshot_id=snapshot_id)
    state.creates += 1
    state.restores += 1 if snapshot_id and not restart else 0
    if running.expires_at is not None:
        running.restart_timer = await _schedule_restart(ctx, running)
    state.current = running
    ctx.set("state", state)
    return running


def sandbox_says(notice: str) -> str:
    """A notice (a rollback, a snapshot that could not be found) as the model reads it, wherever
    it is told: after an operation's error or result, in a step's first prompt, on its own."""
    return f"[sandbox] {notice}"


def _join(*notices: str | None) -> str | None:
    return " ".join(n for n in notices if n) or None


async def _schedule_restart(ctx: ObjectContext, running: Running) -> str:
    """The durable timer: a delayed self-send at TTL minus a margin."""
    now = await ctx.time()
    ttl = max(running.expires_at - now, 0.0)
    margin = min(await retry.setting(ctx, "sandbox_restart_margin_s"), ttl / 3)
    handle = ctx.object_send(restart, key=ctx.key(), arg=TimerIn(generation=running.generation),
                             send_delay=timedelta(seconds=max(ttl - margin, 0.1)))
    return await handle.invocation_id()


def _leave_running(ctx: ObjectContext, state: SandboxState, phase: Suspended | Released | NoSandbox,
                   inside_timer: bool = False) -> None:
    """Move out of `running`, cancelling its restart timer (unless we are that timer)."""
    if isinstance(state.current, Running) and state.current.restart_timer and not inside_timer:
        ctx.cancel_invocation(state.current.restart_timer)
    state.current = phase
    ctx.set("state", state)


def _holder(ctx: ObjectContext) -> HoldIn:
    return HoldIn(holder=f"sandbox:{ctx.key()}")


async def _snapshot(ctx: ObjectContext, state: SandboxState, running: Running, why: str) -> str | None:
    """Snapshot the workspace and make it the base a restore starts from. Nothing to do when
    the base is the last checkpoint's snapshot and nothing changed since."""
    if not state.changed and running.snapshot_id is not None and running.snapshot_id == state.checkpoint_snapshot:
        return running.snapshot_id
    name = f"{ctx.key()}-g{running.generation}-{why}"
    try:
        snapshot_id = await _step(ctx, f"snapshot {name}", str,
                                  lambda: backend().snapshot(running.sandbox_id, name))
    except TerminalError as error:
        if not is_gone(error):
            raise
        return running.snapshot_id  # already dead: the last snapshot is all there is
    await _make_base(ctx, state, running, snapshot_id)
    return snapshot_id


async def _make_base(ctx: ObjectContext, state: SandboxState, phase: Running | Suspended, snapshot_id: str) -> None:
    """Hold `snapshot_id` for this sandbox (app/snapshots.py) and restore from it from now on;
    the sandbox lets go of all but its newest KEEP_SNAPSHOTS (deleted once nobody else, such
    as a checkpoint, holds them)."""
    if snapshot_id not in state.snapshots:
        # Held before it goes into state, so nothing can delete it while state points at it.
        await ctx.object_call(snapshots.hold, key=snapshot_id, arg=_holder(ctx))
        state.snapshots.append(snapshot_id)
    phase.snapshot_id = snapshot_id
    ctx.set("state", state)
    for old in [s for s in state.snapshots[:-KEEP_SNAPSHOTS] if s != snapshot_id]:
        await _release_snapshot(ctx, state, old)


async def _release_snapshot(ctx: ObjectContext, state: SandboxState, snapshot_id: str) -> None:
    await ctx.object_call(snapshots.release, key=snapshot_id, arg=_holder(ctx))
    state.snapshots.remove(snapshot_id)
    ctx.set("state", state)


async def _terminate(ctx: ObjectContext, running: Running) -> None:
    await _step(ctx, f"terminate {running.sandbox_id}", bool, lambda: _call(backend().terminate(running.sandbox_id)))


async def _call(operation: Awaitable[object]) -> bool:
    """A backend operation with nothing to return, as a step result."""
    await operation
    return True


async def _with_sandbox(ctx: ObjectContext, label: str, type_hint: type[T],
                        op: Callable[[str], Awaitable[T]], *, changes: bool = False) -> Done[T]:
    """Run `op` against the live sandbox; if the backend confirms it gone, replace it once from
    its last snapshot and say so in the result's notice. `changes`: the operation may change
    the workspace (so the next checkpoint needs a new snapshot)."""
    state = await _load(ctx)
    if changes and not state.changed:
        state.changed = True  # before the operation: a crash inside it may have changed things too
        ctx.set("state", state)
    rollback = None
    for attempt in (1, 2):
        running = await _ensure_running(ctx, state)
        try:
            timed = await _step(ctx, label if attempt == 1 else f"{label} (recreated)", _Timed[type_hint],
                                lambda: _timed(lambda: op(running.sandbox_id)))
        except TerminalError as error:
            if is_cancellation(error):
                # Nobody reads a cancelled operation's result: what the model must be told waits
                # for the next operation (a rollback just made included).
                if rollback:
                    state.pending_notice = _join(state.pending_notice, rollback)
                    ctx.set("state", state)
                raise
            if not is_gone(error) or attempt == 2:
                notice = _take_notice(ctx, state, rollback)
                await _active_until(ctx, state, await ctx.time())
                if notice:  # the operation failed on the replacement: the rollback is still news
                    raise TerminalError(f"{error.message}\n{sandbox_says(notice)}", status_code=error.status_code) from error
                raise
            rollback = await _abandon(ctx, state, running)
            continue
        if isinstance(timed.value, ExecResult) and timed.value.background != 0:  # None: the backend cannot tell
            state.background = True
        notice = _take_notice(ctx, state, rollback)
        await _active_until(ctx, state, timed.ended_at)
        return Done(timed.value, notice)
    raise AssertionError("unreachable")


async def _abandon(ctx: ObjectContext, state: SandboxState, running: Running) -> str:
    """The backend confirmed the sandbox gone (TTL, crash): terminate whatever may be left of
    it, so it can never run on unseen, and fall back to its last snapshot. Returns the notice."""
    await _terminate(ctx, running)
    state.rollbacks += 1
    state.background = False  # its notice says so
    _leave_running(ctx, state, Suspended(generation=running.generation, snapshot_id=running.snapshot_id))
    restored = "the last snapshot" if running.snapshot_id else "an empty workspace (there was no snapshot)"
    emit(ctx, ctx.key(), "sandbox", f"sandbox lost; restored from {restored}",
         detail=f"sandbox {running.sandbox_id} ended unexpectedly; workspace rolled back to {running.snapshot_id or 'nothing'}")
    return (f"The sandbox was lost (it ended unexpectedly) and was replaced from {restored}. Changes "
            "made after that point are gone, and background processes were stopped. Check the files "
            "you need before going on.")


def _stopping_background(state: SandboxState, why: str) -> None:
    """The sandbox is about to be stopped and brought back from a snapshot: files come back,
    processes do not. The model is told with the next operation's result."""
    if state.background:
        state.background = False
        state.pending_notice = _join(state.pending_notice, (
            f"The sandbox was {why} and brought back from a snapshot: files are as they were, but "
            "processes that commands left running in the background (servers, watchers) were stopped. "
            "Start them again if you need them."))


def _take_notice(ctx: ObjectContext, state: SandboxState, rollback: str | None) -> str | None:
    """What this operation's result must tell the model; told once."""
    notice = _join(state.pending_notice, rollback)
    if state.pending_notice:
        state.pending_notice = None
        ctx.set("state", state)
    return notice


async def _active_until(ctx: ObjectContext, state: SandboxState, ended_at: float) -> None:
    """After an operation: the idle period starts when it ended, so a long command is not
    followed by an immediate suspension.

    The idle timer is armed once and moved lazily: an operation only records when it ended,
    and a timer that fires early (`suspend_if_idle`) sets itself again for the rest of the
    period. Cancelling and re-arming a timer on every command cost each one a cancellation, a
    new delayed invocation and a round trip for its id.
    """
    state.last_active = ended_at
    if state.idle_timer is None:
        state.idle_timer = await _arm_idle_timer(ctx, await retry.setting(ctx, "sandbox_idle_s"))
    ctx.set("state", state)


async def _arm_idle_timer(ctx: ObjectContext, delay_s: float) -> str:
    handle = ctx.object_send(suspend_if_idle, key=ctx.key(), arg=TimerIn(),
                             send_delay=timedelta(seconds=max(delay_s, 0.1)))
    return await handle.invocation_id()


# ---------------------------------------------------------------- task-facing handlers


@sandbox_object.handler(ingress_private=True)
async def acquire(ctx: ObjectContext, req: AcquireIn) -> None:
    """Make sure a live sandbox exists and record which task holds it."""
    check_key(ctx.key())
    state = await _load(ctx)
    await _ensure_running(ctx, state)
    state.lease = req.task_id
    await _active_until(ctx, state, await ctx.time())


@sandbox_object.handler(ingress_private=True)
async def release(ctx: ObjectContext, req: ReleaseIn) -> None:
    """Park the sandbox: the lease ends, the workspace stays for the session's next task, and
    the idle timer suspends it (snapshot, terminate) if nothing else comes.

    The task's operation markers go: its journal now holds every result, so no retry will
    ask for them again. Only the holder's release counts, so a late release from an
    interrupted task cannot take the sandbox from the task that replaced it. Repeating a
    release is a no-op.
    """
    state = await _load(ctx)
    if state.lease != req.task_id:
        return
    if isinstance(state.current, Running):
        sid = state.current.sandbox_id
        try:
            await _step(ctx, f"forget operations of {req.task_id}", int,
                        lambda: backend().delete_markers(sid, task_markers(req.task_id)))
        except TerminalError as error:
            if not is_gone(error):
                raise  # a gone sandbox took its markers with it
    state.lease = None
    ctx.set("state", state)


@sandbox_object.handler(ingress_private=True)
async def exec(ctx: ObjectContext, req: ExecIn) -> ExecOut:
    done = await _with_sandbox(ctx, f"exec {req.op_id}", ExecOut,
                               lambda sid: exec_once(backend(), sid, req.op_id, req.command, req.timeout_s),
                               changes=True)
    return done.value.model_copy(update={"notice": done.notice})


@sandbox_object.handler(ingress_private=True)
async def write_file(ctx: ObjectContext, req: WriteFileIn) -> FileOpOut:
    done = await _with_sandbox(ctx, f"write {req.op_id}", FileOpOut, lambda sid: write_once(backend(), sid, req),
                               changes=True)
    return done.value.model_copy(update={"notice": done.notice})


@sandbox_object.handler(ingress_private=True)
async def edit_file(ctx: ObjectContext, req: EditFileIn) -> FileOpOut:
    """Replace exact text, exactly once per operation id (app/once.py)."""
    done = await _with_sandbox(ctx, f"edit {req.op_id}", FileOpOut, lambda sid: edit_once(backend(), sid, req),
                               changes=True)
    return done.value.model_copy(update={"notice": done.notice})


@sandbox_object.handler(ingress_private=True)
async def read_for_task(ctx: ObjectContext, req: PathIn) -> ReadFileOut:
    """`read_file` for a task: through the exclusive path, so a suspended sandbox comes back."""
    done = await _with_sandbox(ctx, f"read {req.path}", str,
                               lambda sid: backend().read_file(sid, req.path, MAX_READ_BYTES))
    return ReadFileOut(path=req.path, content=done.value, notice=done.notice)


@sandbox_object.handler(ingress_private=True)
async def list_for_task(ctx: ObjectContext, req: PathIn) -> ListFilesOut:
    """`list_files` for a task: through the exclusive path, so a suspended sandbox comes back."""
    done = await _with_sandbox(ctx, f"list {req.path}", ListFilesOut, lambda sid: _listing(sid, req.path))
    return done.value.model_copy(update={"notice": done.notice})


async def _listing(sandbox_id: str, path: str) -> ListFilesOut:
    entries = await backend().list_files(sandbox_id, path, MAX_LIST_ENTRIES)
    return ListFilesOut(path=path, entries=[FileEntryOut.model_validate(e.model_dump()) for e in entries])


@sandbox_object.handler(ingress_private=True, input_serde=BytesSerde())
async def reset(ctx: ObjectContext, raw: bytes) -> None:
    """Terminate the sandbox and delete every snapshot. Repeating it is a no-op."""
    no_input(raw)
    state = await _load(ctx)
    if isinstance(state.current, Released):
        return
    if isinstance(state.current, Running):
        await _terminate(ctx, state.current)
    for snapshot_id in list(state.snapshots):
        await _release_snapshot(ctx, state, snapshot_id)  # checkpoints may still hold them
    if state.idle_timer:
        ctx.cancel_invocation(state.idle_timer)
        state.idle_timer = None
    state.lease = None
    state.changed, state.checkpoint_snapshot, state.background = True, None, False
    _leave_running(ctx, state, Released(generation=state.current.generation))


@sandbox_object.handler(ingress_private=True)
async def checkpoint(ctx: ObjectContext, req: CheckpointIn) -> CheckpointOut:
    """The snapshot for a checkpoint at the end of a step: always one this sandbox holds as a
    base (so it lives until the Agent holds it for the checkpoint, app/agent.py).

    An unchanged workspace reuses the previous checkpoint's snapshot (mode "every") or gets no
    checkpoint at all (mode "changed"). A new snapshot becomes the sandbox's base, so a sandbox
    lost later comes back as of this step.
    """
    state = await _load(ctx)
    if not state.changed and state.checkpoint_snapshot is not None:
        if req.mode == "changed":
            return CheckpointOut(snapshot_id=None)
        snapshot_id = state.checkpoint_snapshot  # the same workspace: share that snapshot
    else:
        current = state.current
        if isinstance(current, Running):
            snapshot_id = await _snapshot(ctx, state, current, f"cp-{req.checkpoint_id}")
        else:  # suspended right after the step: its snapshot is this workspace (or there is none)
            snapshot_id = current.snapshot_id
        if snapshot_id is None:
            return CheckpointOut(snapshot_id=None)
    state.changed = False
    state.checkpoint_snapshot = snapshot_id
    ctx.set("state", state)
    return CheckpointOut(snapshot_id=snapshot_id)


@sandbox_object.handler(ingress_private=True)
async def restore(ctx: ObjectContext, req: RestoreIn) -> RestoreOut:
    """Replace the workspace with `snapshot_id` (a checkpoint's): the running sandbox, if any,
    is terminated, and the next generation starts from the snapshot, held as the new base."""
    check_key(ctx.key())
    state = await _load(ctx)
    current = state.current
    suspended = Suspended(generation=current.generation, snapshot_id=current.snapshot_id)
    await _make_base(ctx, state, suspended, req.snapshot_id)
    if isinstance(current, Running):
        state.background = False  # a rewind starts a new sandbox from the checkpoint, and says so
        await _terminate(ctx, current)
    # The commitment: from here the workspace *is* the snapshot, whatever happens next. Starting
    # the new sandbox is only eager; if it fails for good, the next operation starts it from the
    # same base, so a rewind or fork that got here never has to be undone (and never half-is).
    _leave_running(ctx, state, suspended)
    state.changed, state.checkpoint_snapshot = False, req.snapshot_id
    ctx.set("state", state)
    try:
        await _ensure_running(ctx, state)
    except TerminalError as error:
        if is_cancellation(error):
            raise
        return RestoreOut(notice=(f"The restored workspace's sandbox could not be started yet ({error.message}); "
                                  "the next operation starts it from the same snapshot."))
    if state.pending_notice is not None:  # the snapshot was gone: it started empty, changed since
        state.changed, state.checkpoint_snapshot = True, None
    await _active_until(ctx, state, await ctx.time())
    return RestoreOut(notice=state.pending_notice)


# ---------------------------------------------------------------- timers


@sandbox_object.handler(ingress_private=True)
async def restart(ctx: ObjectContext, timer: TimerIn) -> None:
    """Before the TTL hits: snapshot, terminate, create from the snapshot, schedule the next."""
    state = await _load(ctx)
    running = state.current
    if not isinstance(running, Running) or running.generation != timer.generation:
        return  # a stale timer from an older generation
    running.restart_timer = None  # this invocation is the timer; nothing to cancel
    snapshot_id = await _snapshot(ctx, state, running, "restart")
    _stopping_background(state, "restarted before its time limit")
    await _terminate(ctx, running)
    _leave_running(ctx, state, Suspended(generation=running.generation, snapshot_id=snapshot_id), inside_timer=True)
    await _ensure_running(ctx, state, restart=True)
    state.restarts += 1
    ctx.set("state", state)


@sandbox_object.handler(ingress_private=True)
async def suspend_if_idle(ctx: ObjectContext, timer: TimerIn) -> None:
    """No operation for the idle period: snapshot and terminate, so it costs no compute. An
    operation since this timer was armed moves it to the end of the new idle period."""
    state = await _load(ctx)
    if ctx.request().id != state.idle_timer:
        return  # not the armed timer: one from before a reset
    if not isinstance(state.current, Running):
        state.idle_timer = None
        ctx.set("state", state)
        return
    left = state.last_active + await retry.setting(ctx, "sandbox_idle_s") - await ctx.time()
    if left > 0:
        state.idle_timer = await _arm_idle_timer(ctx, left)
        ctx.set("state", state)
        return
    running = state.current
    state.idle_timer = None
    snapshot_id = await _snapshot(ctx, state, running, "idle")  # one suspension per generation
    _stopping_background(state, "suspended after being idle")
    await _terminate(ctx, running)
    _leave_running(ctx, state, Suspended(generation=running.generation, snapshot_id=snapshot_id))


# ---------------------------------------------------------------- public, read-only


async def _live_sandbox_id(ctx: ObjectSharedContext) -> str | None:
    """The running sandbox's id; None if it is suspended (the exclusive path resumes it)."""
    state = await _load(ctx)
    if isinstance(state.current, Running):
        return state.current.sandbox_id
    if isinstance(state.current, Suspended):
        return None
    raise not_found(f"session {ctx.key()!r} has no sandbox")


@sandbox_object.handler(kind="shared", input_serde=BytesSerde())
async def read_file(ctx: ObjectSharedContext, raw: bytes) -> ReadFileOut:
    """Read a workspace file (path relative to /project). 400 for unsafe paths, 404 if missing."""
    req = parse(raw, PathIn)
    sid = await _live_sandbox_id(ctx)
    if sid is None:
        return await ctx.object_call(read_for_task, key=ctx.key(), arg=req)
    content = await _step(ctx, f"read {req.path}", str,
                          lambda: backend().read_file(sid, req.path, MAX_READ_BYTES))
    return ReadFileOut(path=req.path, content=content)


@sandbox_object.handler(kind="shared", input_serde=BytesSerde())
async def list_files(ctx: ObjectSharedContext, raw: bytes) -> ListFilesOut:
    """List a workspace directory recursively (path relative to /project)."""
    req = parse(raw, PathIn)
    sid = await _live_sandbox_id(ctx)
    if sid is None:
        return await ctx.object_call(list_for_task, key=ctx.key(), arg=req)
    return await _step(ctx, f"list {req.path}", ListFilesOut, lambda: _listing(sid, req.path))


async def _tree_source(ctx: ObjectSharedContext) -> tuple[str | None, str | None]:
    """Where the live workspace is: (sandbox id, None) while it runs, (None, snapshot id) while
    it is suspended, (None, None) when there is none."""
    state = await _load(ctx)
    if isinstance(state.current, Running):
        return state.current.sandbox_id, state.current.snapshot_id
    if isinstance(state.current, Suspended):
        return None, state.current.snapshot_id
    return None, None


async def _read_tree(sandbox_id: str | None, snapshot_id: str | None) -> bytes | None:
    """The live workspace as a tree; a sandbox that just ended gives its last snapshot (what
    the next operation will restore), and no sandbox at all gives None (an empty tree)."""
    if sandbox_id is not None:
        try:
            return await backend().workspace_tree(sandbox_id)
        except SandboxGone:
            pass
    return await backend().snapshot_tree(snapshot_id) if snapshot_id else None


@sandbox_object.handler(kind="shared", ingress_private=True)
async def tree_diff(ctx: ObjectSharedContext, req: TreeDiffIn) -> TreeDiffOut:
    """The diff between two snapshots, or a snapshot and the live workspace (app/repo/trees.py),
    in one step: only the diff is journaled, never the trees. Shared: it answers while a
    command runs."""
    sid, last = await _tree_source(ctx) if req.target is None and req.live else (None, None)

    async def compare() -> TreeDiffOut:
        base = await backend().snapshot_tree(req.base) if req.base else None
        target = await backend().snapshot_tree(req.target) if req.target else await _read_tree(sid, last)
        try:
            found = await asyncio.to_thread(trees.diff, base, target, binary=req.binary)
        except trees.TreeError as error:  # git could not read what the workspace holds: not retried
            raise TerminalError(f"the diff could not be made: {error}", status_code=500) from error
        return TreeDiffOut(files=[FileDiff(path=f.path, status=f.status, added=f.added, removed=f.removed,  # type: ignore[arg-type]
                                           binary=f.binary) for f in found.files],
                           patch=found.patch, truncated=found.truncated)

    return await _step(ctx, "diff", TreeDiffOut, compare)


@sandbox_object.handler(kind="shared", ingress_private=True, input_serde=BytesSerde(), output_serde=BytesSerde())
async def tree_archive(ctx: ObjectSharedContext, raw: bytes) -> bytes:
    """The live workspace as a .tar.gz."""
    no_input(raw)
    sid, last = await _tree_source(ctx)

    async def pack() -> bytes:
        tree = await _read_tree(sid, last)
        return await asyncio.to_thread(_gzip, tree or _EMPTY_TAR)

    return await _step(ctx, "archive", bytes, pack)


_EMPTY_TAR = bytes(10240)  # a tar with no members: two zero blocks, padded to a record


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


class _SlotState(BaseModel):
    waiting: bool = False
    use: CommandSlotsOut | None = None  # None: the backend has no command slots (Modal)


async def _slot_state(sandbox_id: str | None) -> _SlotState:
    slots = command_slots()
    if slots is None:
        return _SlotState()
    use = slots.use()
    return _SlotState(waiting=sandbox_id is not None and slots.waiting_for(sandbox_id),
                      use=CommandSlotsOut(total=use.total, in_use=use.in_use, waiting=use.waiting))


@sandbox_object.handler(kind="shared", input_serde=BytesSerde())
async def info(ctx: ObjectSharedContext, raw: bytes) -> SandboxInfoOut:
    """The lifecycle state and its counters (creates, restores, restarts, rollbacks), and
    whether a command waits for one of the host's command slots."""
    no_input(raw)
    state = await _load(ctx)
    cur = state.current
    running_id = cur.sandbox_id if isinstance(cur, Running) else None
    # A step: it reads this host's slot files, which a replay must not read again.
    slots = await ctx.run_typed("command slots", _slot_state, retry.local_step(_SlotState), running_id)
    return SandboxInfoOut(
        state=cur.kind, sandbox_id=cur.sandbox_id if isinstance(cur, Running) else None,
        generation=cur.generation, expires_at=cur.expires_at if isinstance(cur, Running) else None,
        snapshot_id=cur.snapshot_id, lease=state.lease, creates=state.creates,
        restores=state.restores, restarts=state.restarts, snapshots_lost=state.snapshots_lost,
        rollbacks=state.rollbacks, command="waiting for a sandbox slot" if slots.waiting else None,
        slots=slots.use)
