"""`Agent`: a virtual object keyed by session id. It keeps the chat history and starts,
interrupts and replaces tasks. It never runs model or tool work itself.

Exclusive handlers serialise everything that changes the session, so a message, an
interrupt and a task report can never interleave. Tasks report through ingress-private
handlers, and a report from any task other than the current one is ignored: a late report
from an interrupted task can never clear or overwrite its replacement.
"""

from __future__ import annotations

import asyncio
import shlex
from datetime import timedelta
from typing import TypeVar

import restate
from pydantic import BaseModel
from restate import ObjectContext, ObjectSharedContext, TerminalError
from restate.serde import BytesSerde

from app import retry, sandbox_service, snapshots, task
from app.backend import backend
from app.config import settings
from app.errors import bad_request, conflict, is_cancellation, not_found
from app.events import emit
from app.models import (
    AdoptIn, ApprovalDecision, ApprovalRequest, ApprovalsOut, Checkpoint, Checkpoints, CheckpointsOut,
    ConversationTurn, ForkIn, ForkOut, History, HistoryEntry, HoldIn, RestoreIn, RewindIn, RewindOut,
    HistoryOut, InterruptOut, LastTask, MessageIn, MessageOut, PendingApprovals, PlanItem,
    ProgressReport, ResolveApprovalIn, RunningTask, StatusOut, SteerIn, SteerMessage, SteerOut,
    TaskInput, TaskOutcome, Verdict, Author, CheckpointIn, DiffIn, DiffOut, DiffSide, ExecIn, ExportIn, ExportOut,
    ExportRecord, Exports, GitSourceIn, ImportOut, Source, TreeDiffIn,
)
from app.repo import archives, git
from app.stored import load
from app.validation import check_key, no_input, parse

MAX_HISTORY = 500  # entries kept in state; older ones are dropped

agent_object = restate.VirtualObject("Agent", invocation_retry_policy=retry.INVOCATION_RETRY)


async def _history(ctx: ObjectContext | ObjectSharedContext) -> list[HistoryEntry]:
    stored = await load(ctx, "history", History)
    return stored.entries if stored else []


def _append(ctx: ObjectContext, history: list[HistoryEntry], role: str, text: str,
            task_id: str | None, verdict: Verdict | None = None) -> None:
    seq = history[-1].seq + 1 if history else 1
    history.append(HistoryEntry(seq=seq, role=role, text=text, task_id=task_id,  # type: ignore[arg-type]
                                verdict=verdict))
    del history[:-MAX_HISTORY]
    ctx.set("history", History(entries=history))


async def _record_outcome(ctx: ObjectContext, history: list[HistoryEntry], outcome: TaskOutcome) -> None:
    """Write a finished task into the history and make the session idle.

    Its pending approvals go too: nobody is waiting for those answers any more.
    """
    role = "agent" if outcome.status == "done" else "event"
    _append(ctx, history, role, outcome.text, outcome.task_id, outcome.verdict)
    kind = {"done": "final_answer", "failed": "error"}.get(outcome.status, "interrupted")
    emit(ctx, ctx.key(), kind, outcome.text, outcome.task_id,  # type: ignore[arg-type]
         detail=outcome.verdict.model_dump_json() if outcome.verdict else None)
    ctx.set("last", LastTask(plan=outcome.plan, usage=outcome.usage, verdict=outcome.verdict))
    ctx.clear("current")
    await _drop_approvals(ctx, outcome.task_id)


def _cancelled_plan(current: RunningTask) -> list[PlanItem]:
    return [PlanItem(title=p.title, status="cancelled" if p.status in ("pending", "running") else p.status)
            for p in current.plan]


async def _stop(ctx: ObjectContext, history: list[HistoryEntry], current: RunningTask) -> None:
    """Cancel the current task and wait, bounded, for its compensations to finish.

    The task may already have finished with its report still queued behind this handler;
    then the attach returns its outcome and we record that instead of an interruption.
    """
    ctx.cancel_invocation(current.invocation_id)
    wait = timedelta(seconds=await retry.setting(ctx, "interrupt_wait_s"))
    try:
        which, value = await restate.select(
            done=ctx.attach_invocation(current.invocation_id, type_hint=TaskOutcome),
            timeout=ctx.sleep(wait, name="wait for interrupted task cleanup"),
        )
    except TerminalError as error:
        reason = "task interrupted" if is_cancellation(error) else f"task failed: {error.message}"
        await _record_outcome(ctx, history, TaskOutcome(task_id=current.task_id, status="interrupted", text=reason,
                                                  plan=_cancelled_plan(current)))
        return
    if which == "done":
        await _record_outcome(ctx, history, value)
    else:
        await _record_outcome(ctx, history, TaskOutcome(
            task_id=current.task_id, status="interrupted",
            text=f"task interrupted (its cleanup was still running after {wait.total_seconds():.0f} s)",
            plan=_cancelled_plan(current)))


T = TypeVar("T", MessageIn, SteerIn)


async def _user_text(ctx: ObjectContext, raw: bytes, model: type[T], what: str) -> T:
    """Validate the session key and a user's text: a 400 naming the problem, nothing changed."""
    check_key(ctx.key())
    limit = await retry.setting(ctx, "max_message_chars")
    req = parse(raw, model, max_bytes=limit * 4 + 1024)
    if len(req.text) > limit:
        raise bad_request(f"{what} is {len(req.text)} characters; the limit is {limit}")
    return req


@agent_object.handler(input_serde=BytesSerde())
async def message(ctx: ObjectContext, raw: bytes) -> MessageOut:
    """Append a user message and start a task for it, interrupting the running one."""
    req = await _user_text(ctx, raw, MessageIn, "message")

    history = await _history(ctx)
    current = await load(ctx, "current", RunningTask)
    if current is not None:
        await _stop(ctx, history, current)

    task_id = str(ctx.uuid())
    _append(ctx, history, "user", req.text, task_id)
    emit(ctx, ctx.key(), "user_message", req.text, task_id)
    await _start_task(ctx, history, task_id)
    return MessageOut(task_id=task_id)


async def _start_task(ctx: ObjectContext, history: list[HistoryEntry], task_id: str) -> None:
    """Start a Task with the whole conversation and make it the current one."""
    conversation = [ConversationTurn(role=h.role, text=h.text) for h in history if not h.rewound]
    # One-way: the task outlives this handler, and the Agent must stay free for its reports.
    handle = ctx.workflow_send(task.run, key=task_id,
                               arg=TaskInput(session_id=ctx.key(), task_id=task_id, conversation=conversation))
    ctx.set("current", RunningTask(task_id=task_id, invocation_id=await handle.invocation_id()))


@agent_object.handler(input_serde=BytesSerde())
async def interrupt(ctx: ObjectContext, raw: bytes) -> InterruptOut:
    """Stop the running task without starting a new one."""
    no_input(raw)
    history = await _history(ctx)
    if not history:
        raise not_found(f"unknown session {ctx.key()!r}")
    current = await load(ctx, "current", RunningTask)
    if current is None:
        return InterruptOut(interrupted=False)
    await _stop(ctx, history, current)
    return InterruptOut(interrupted=True, task_id=current.task_id)


async def _end_workspace(ctx: ObjectContext) -> tuple[list[HistoryEntry], RunningTask | None]:
    """Stop the running task (404 for an unknown session), then end the sandbox and its
    snapshots, and release the checkpoints' (their workspaces are what this ends). A call, not
    a send: when it returns, the workspace is really gone. The history and the stopped task."""
    history = await _history(ctx)
    if not history:
        raise not_found(f"unknown session {ctx.key()!r}")
    current = await load(ctx, "current", RunningTask)
    if current is not None:
        await _stop(ctx, history, current)
    await ctx.object_call(sandbox_service.reset, key=ctx.key(), arg=b"")
    await _drop_checkpoints(ctx, await _checkpoints(ctx))
    return history, current


@agent_object.handler(input_serde=BytesSerde())
async def reset(ctx: ObjectContext, raw: bytes) -> InterruptOut:
    """Start the workspace over: stop the running task, then terminate the sandbox and delete
    its snapshots. The chat history stays. Repeating it is a no-op."""
    no_input(raw)
    history, current = await _end_workspace(ctx)
    _append(ctx, history, "event", "workspace reset", None)
    emit(ctx, ctx.key(), "interrupted", "workspace reset")
    return InterruptOut(interrupted=current is not None, task_id=current.task_id if current else None)


@agent_object.handler(kind="shared", input_serde=BytesSerde())
async def history(ctx: ObjectSharedContext, raw: bytes) -> HistoryOut:
    no_input(raw)
    entries = await _history(ctx)
    if not entries:
        raise not_found(f"unknown session {ctx.key()!r}")
    return HistoryOut(messages=entries)


@agent_object.handler(kind="shared", input_serde=BytesSerde())
async def status(ctx: ObjectSharedContext, raw: bytes) -> StatusOut:
    no_input(raw)
    if not await _history(ctx):
        raise not_found(f"unknown session {ctx.key()!r}")
    current = await load(ctx, "current", RunningTask)
    last = await load(ctx, "last", LastTask)
    last_usage = last.usage if last else None
    last_verdict = last.verdict if last else None
    source = await load(ctx, "source", Source)
    if current is None:
        return StatusOut(state="idle", plan=last.plan if last else [], last_usage=last_usage,
                         last_verdict=last_verdict, source=source)
    return StatusOut(state="running", task_id=current.task_id, plan=current.plan, last_usage=last_usage,
                     last_verdict=last_verdict, source=source)


@agent_object.handler(ingress_private=True)
async def task_progress(ctx: ObjectContext, report: ProgressReport) -> None:
    current = await load(ctx, "current", RunningTask)
    if current is None or current.task_id != report.task_id:
        return  # stale: from a task that is no longer current
    current.plan = report.plan
    ctx.set("current", current)


@agent_object.handler(ingress_private=True)
async def task_finished(ctx: ObjectContext, outcome: TaskOutcome) -> None:
    current = await load(ctx, "current", RunningTask)
    if current is None or current.task_id != outcome.task_id:
        return  # stale: this task was interrupted and already accounted for
    history = await _history(ctx)
    await _record_outcome(ctx, history, outcome)
    if outcome.status == "done" and outcome.steering_read < len(current.steering):
        # Steering arrived after the task's last model round: it is already in the history as
        # the user's words, so it becomes the next task's input instead of being lost.
        await _start_task(ctx, history, str(ctx.uuid()))


# ---------------------------------------------------------------- steering and approvals


@agent_object.handler(input_serde=BytesSerde())
async def steer(ctx: ObjectContext, raw: bytes) -> SteerOut:
    """Guide the running task without interrupting it (picked up at its next model round)."""
    req = await _user_text(ctx, raw, SteerIn, "steering")
    history = await _history(ctx)
    current = await load(ctx, "current", RunningTask)
    if current is None:
        task_id = str(ctx.uuid())
        _append(ctx, history, "user", req.text, task_id)
        emit(ctx, ctx.key(), "user_message", req.text, task_id)
        await _start_task(ctx, history, task_id)
        return SteerOut(task_id=task_id, delivered_to="new_task")
    _append(ctx, history, "user", req.text, current.task_id)
    emit(ctx, ctx.key(), "steering", req.text, current.task_id)
    # One-way: Task.steer only resolves a promise; the Agent need not wait for it.
    ctx.workflow_send(task.steer, key=current.task_id,
                      arg=SteerMessage(index=len(current.steering), text=req.text))
    current.steering.append(req.text)
    ctx.set("current", current)
    return SteerOut(task_id=current.task_id, delivered_to="running_task")


async def _pending(ctx: ObjectContext | ObjectSharedContext) -> PendingApprovals:
    return await load(ctx, "approvals", PendingApprovals) or PendingApprovals()


async def _drop_approvals(ctx: ObjectContext, task_id: str) -> None:
    pending = await _pending(ctx)
    kept = [a for a in pending.items if a.task_id != task_id]
    if len(kept) != len(pending.items):
        ctx.set("approvals", PendingApprovals(items=kept))


@agent_object.handler(kind="shared", input_serde=BytesSerde())
async def approvals(ctx: ObjectSharedContext, raw: bytes) -> ApprovalsOut:
    """Tool calls and budget extensions waiting for the user's decision."""
    no_input(raw)
    if not await _history(ctx):
        raise not_found(f"unknown session {ctx.key()!r}")
    return ApprovalsOut(approvals=(await _pending(ctx)).items)


@agent_object.handler(input_serde=BytesSerde())
async def resolve_approval(ctx: ObjectContext, raw: bytes) -> ApprovalDecision:
    """Approve or deny one pending approval. Resolving it a second time is a 409."""
    req = parse(raw, ResolveApprovalIn)
    pending = await _pending(ctx)
    match = next((a for a in pending.items if a.approval_id == req.approval_id), None)
    if match is None:
        raise conflict(f"approval {req.approval_id!r} is not pending: it was already resolved, "
                       "timed out, or never existed")
    pending.items.remove(match)
    ctx.set("approvals", pending)
    decision = ApprovalDecision(approval_id=req.approval_id, decision=req.decision, reason=req.reason)
    verb = "approved" if req.decision == "approve" else "denied"
    text = f"{verb}: {match.summary}" + (f" ({req.reason})" if req.reason else "")
    _append(ctx, await _history(ctx), "event", text, match.task_id)
    emit(ctx, ctx.key(), "approval_resolved", text, match.task_id, ref=match.approval_id)
    # One-way: Task.decide only resolves the promise the task is suspended on.
    ctx.workflow_send(task.decide, key=match.task_id, arg=decision)
    return decision


@agent_object.handler(ingress_private=True)
async def approval_requested(ctx: ObjectContext, request: ApprovalRequest) -> None:
    current = await load(ctx, "current", RunningTask)
    if current is None or current.task_id != request.task_id:
        return  # from a task that is no longer current
    pending = await _pending(ctx)
    if all(a.approval_id != request.approval_id for a in pending.items):
        pending.items.append(request)
        ctx.set("approvals", pending)
        text = f"approval needed: {request.summary} ({request.reason})"
        _append(ctx, await _history(ctx), "event", text, request.task_id)
        emit(ctx, ctx.key(), "approval_requested", text, request.task_id, ref=request.approval_id)


@agent_object.handler(ingress_private=True)
async def approval_closed(ctx: ObjectContext, decision: ApprovalDecision) -> None:
    """The task stopped waiting (timeout): the approval is no longer pending."""
    pending = await _pending(ctx)
    match = next((a for a in pending.items if a.approval_id == decision.approval_id), None)
    if match is not None:
        pending.items.remove(match)
        ctx.set("approvals", pending)
        _append(ctx, await _history(ctx), "event", f"approval timed out: {match.summary}", match.task_id)
        emit(ctx, ctx.key(), "approval_resolved", f"timed out: {match.summary}", match.task_id,
             ref=match.approval_id)


# ---------------------------------------------------------------- checkpoints, rewind, fork


MAX_CHECKPOINTS = 200  # kept per session; the oldest go first, releasing their snapshots


async def _checkpoints(ctx: ObjectContext | ObjectSharedContext) -> list[Checkpoint]:
    stored = await load(ctx, "checkpoints", Checkpoints)
    return stored.items if stored else []


async def _drop_checkpoints(ctx: ObjectContext, points: list[Checkpoint]) -> None:
    """Forget checkpoints of this session and release their snapshots (a snapshot is deleted
    once no checkpoint of any session, and no sandbox, holds it: app/snapshots.py)."""
    kept = [p for p in await _checkpoints(ctx) if p not in points]
    ctx.set("checkpoints", Checkpoints(items=kept))
    for point in points:
        await ctx.object_call(snapshots.release, key=point.snapshot_id,
                              arg=HoldIn(holder=f"checkpoint:{ctx.key()}/{point.checkpoint_id}"))


@agent_object.handler(ingress_private=True)
async def checkpoint_recorded(ctx: ObjectContext, point: Checkpoint) -> None:
    """A task finished a step and kept its workspace: hold the snapshot for it and remember
    where the conversation was.

    Only the current task's checkpoints count. A report from a task that was interrupted,
    rewound or reset since would pair its workspace with a conversation that has moved on.
    """
    current = await load(ctx, "current", RunningTask)
    if current is None or current.task_id != point.task_id:
        return
    history = await _history(ctx)
    points = await _checkpoints(ctx)
    if any(p.checkpoint_id == point.checkpoint_id for p in points):
        return
    try:
        await ctx.object_call(snapshots.hold, key=point.snapshot_id,
                              arg=HoldIn(holder=f"checkpoint:{ctx.key()}/{point.checkpoint_id}"))
    except TerminalError as error:
        if error.status_code != 404:
            raise
        return  # the sandbox let go of it before we got here (many steps later): no checkpoint
    point = point.model_copy(update={"history_seq": history[-1].seq if history else 0})
    ctx.set("checkpoints", Checkpoints(items=[*points, point]))
    if len(points) + 1 > MAX_CHECKPOINTS:
        await _drop_checkpoints(ctx, points[:len(points) + 1 - MAX_CHECKPOINTS])


@agent_object.handler(kind="shared", input_serde=BytesSerde())
async def checkpoints(ctx: ObjectSharedContext, raw: bytes) -> CheckpointsOut:
    """Every checkpoint of this session, oldest first (its own and those a fork inherited)."""
    no_input(raw)
    if not await _history(ctx):
        raise not_found(f"unknown session {ctx.key()!r}")
    return CheckpointsOut(checkpoints=await _checkpoints(ctx))


async def _go_to(ctx: ObjectContext, checkpoint_id: str, verb: str) -> tuple[list[HistoryEntry], list[Checkpoint], int]:
    """The session's history and checkpoints, and where `checkpoint_id` is among them, for a
    rewind or fork to it: 404 for an unknown session or checkpoint, 409 for a rewound one."""
    history = await _history(ctx)
    if not history:
        raise not_found(f"unknown session {ctx.key()!r}")
    points = await _checkpoints(ctx)
    index = next((i for i, p in enumerate(points) if p.checkpoint_id == checkpoint_id), None)
    if index is None:
        raise not_found(f"session {ctx.key()!r} has no checkpoint {checkpoint_id!r}")
    if points[index].rewound:
        raise conflict(f"checkpoint {checkpoint_id!r} was rewound; {verb} an earlier one")
    return history, points, index


@agent_object.handler(input_serde=BytesSerde())
async def rewind(ctx: ObjectContext, raw: bytes) -> RewindOut:
    """Go back to a checkpoint: stop the running task (its cleanup runs), put the workspace
    back as that step left it, and mark every later history entry as rewound (kept, shown,
    no longer seen by the model). The next message continues from there.

    The order is fixed and each part is journaled: a crash in between resumes here and
    finishes the rewind, so the workspace and the history never come from different points.
    """
    req = parse(raw, RewindIn)
    history, points, index = await _go_to(ctx, req.checkpoint, "rewind to")
    point = points[index]
    current = await load(ctx, "current", RunningTask)
    if current is not None:
        await _stop(ctx, history, current)
        history = await _history(ctx)
    restored = await ctx.object_call(sandbox_service.restore, key=ctx.key(),
                                     arg=RestoreIn(snapshot_id=point.snapshot_id))
    rewound = 0
    for entry in history:
        if entry.seq > point.history_seq and not entry.rewound:
            entry.rewound = True
            rewound += 1
    newly = [later for later in points[index + 1:] if not later.rewound]
    for later in newly:
        later.rewound = True
    ctx.set("checkpoints", Checkpoints(items=points))
    for later in newly:  # shown, never rewound to or forked from again: their workspaces can go
        await ctx.object_call(snapshots.release, key=later.snapshot_id,
                              arg=HoldIn(holder=f"checkpoint:{ctx.key()}/{later.checkpoint_id}"))
    text = f"rewound to step {point.step} ({point.title})" + (f"; {restored.notice}" if restored.notice else "")
    _append(ctx, history, "event", text, point.task_id)
    emit(ctx, ctx.key(), "rewound", text, point.task_id, ref=point.checkpoint_id)
    return RewindOut(checkpoint=point.checkpoint_id, interrupted=current is not None, rewound_entries=rewound)


@agent_object.handler(input_serde=BytesSerde())
async def fork(ctx: ObjectContext, raw: bytes) -> ForkOut:
    """Start a new session from a checkpoint: its history is this one's up to the checkpoint,
    its workspace that checkpoint's snapshot. This session is not changed and may keep running."""
    req = parse(raw, ForkIn)
    history, points, index = await _go_to(ctx, req.checkpoint, "fork from")
    point = points[index]
    new = check_key(req.session) if req.session else f"{ctx.key()[:40]}-fork-{str(ctx.uuid())[:8]}"
    if new == ctx.key():
        raise bad_request("a fork needs a session id of its own")
    # Asked through a shared handler first: two sessions forking into each other would
    # otherwise each wait for the other's lock in `adopt`.
    try:
        await ctx.object_call(status, key=new, arg=b"")
    except TerminalError as error:
        if error.status_code != 404:
            raise
    else:
        raise conflict(f"session {new!r} already exists; fork into a new session id")
    inherited = [p for p in points[:index + 1] if not p.rewound]
    kept = [h for h in history if h.seq <= point.history_seq and not h.rewound]
    # A call: the new session refuses (409) if it exists, and then nothing has changed.
    await ctx.object_call(adopt, key=new, arg=AdoptIn(parent=ctx.key(), checkpoint=point, history=kept,
                                                      checkpoints=inherited))
    return ForkOut(session=new, checkpoint=point.checkpoint_id)


@agent_object.handler(ingress_private=True)
async def adopt(ctx: ObjectContext, req: AdoptIn) -> None:
    """Become a fork of `req.parent`. Every change is journaled in this one invocation, so a
    crash resumes it to the end; until its history is written the session does not exist."""
    if await _history(ctx):
        raise conflict(f"session {ctx.key()!r} already exists; fork into a new session id")
    points = [p.model_copy(update={"session_id": ctx.key()}) for p in req.checkpoints]
    ctx.set("checkpoints", Checkpoints(items=points))  # first, so a failure below can let go of them
    try:
        for point in points:  # held before the parent's lock is released and it may drop its own
            await ctx.object_call(snapshots.hold, key=point.snapshot_id,
                                  arg=HoldIn(holder=f"checkpoint:{ctx.key()}/{point.checkpoint_id}"))
        restored = await ctx.object_call(sandbox_service.restore, key=ctx.key(),
                                         arg=RestoreIn(snapshot_id=req.checkpoint.snapshot_id))
    except TerminalError:
        # No fork after all: let go of the holds (releasing an unheld one is a no-op) and of any
        # sandbox the restore began, which no session would own (its reset is a no-op otherwise).
        await _drop_checkpoints(ctx, points)
        await ctx.object_call(sandbox_service.reset, key=ctx.key(), arg=b"")
        raise
    history = list(req.history)
    text = (f"forked from session {req.parent} at step {req.checkpoint.step} ({req.checkpoint.title})"
            + (f"; {restored.notice}" if restored.notice else ""))
    _append(ctx, history, "event", text, req.checkpoint.task_id)
    emit(ctx, ctx.key(), "forked", text, req.checkpoint.task_id, ref=req.checkpoint.checkpoint_id)


@agent_object.handler(input_serde=BytesSerde())
async def delete(ctx: ObjectContext, raw: bytes) -> InterruptOut:
    """Delete the session: stop its task, end its sandbox, release its checkpoints' snapshots
    and forget its history. Afterwards the session is unknown (404)."""
    no_input(raw)
    _, current = await _end_workspace(ctx)
    ctx.clear_all()
    return InterruptOut(interrupted=current is not None, task_id=current.task_id if current else None)


# ---------------------------------------------------------------- the user's own code


def _refusal(error: Exception) -> TerminalError:
    """An import or export refused for what the request asked: its status, nothing retried."""
    status = getattr(error, "status", 400)
    return TerminalError(getattr(error, "message", str(error)), status_code=status)


class _Imported(BaseModel):
    snapshot_id: str
    files: int
    bytes: int
    stripped: str | None = None
    commit: str | None = None
    ref: str | None = None


async def _bring_in(name: str, raw: bytes, source: GitSourceIn | None) -> _Imported:
    """Check the archive (or clone the source) and make it a snapshot: the one step of an import."""
    limits = settings()
    try:
        clone = await asyncio.to_thread(git.clone, source.git, source.ref) if source else None
        tree = await asyncio.to_thread(archives.normalize, clone.tree if clone else raw,
                                       max_bytes=limits.import_max_bytes, max_files=limits.import_max_files)
    except (archives.Refused, git.GitRefused) as error:
        raise _refusal(error) from None
    snapshot_id = await backend().import_snapshot(name, tree.tar)
    return _Imported(snapshot_id=snapshot_id, files=tree.files, bytes=tree.bytes, stripped=tree.stripped,
                     commit=clone.commit if clone else None, ref=clone.ref if clone else None)


def _git_source(raw: bytes) -> GitSourceIn | None:
    """A JSON body names a git source; anything else is an archive."""
    if raw.lstrip()[:1] != b"{":
        return None
    return parse(raw, GitSourceIn, max_bytes=10_000)


@agent_object.handler(name="import", input_serde=BytesSerde(), accept="*/*")
async def import_(ctx: ObjectContext, raw: bytes) -> ImportOut:
    """Replace the workspace with an archive (the request body) or a git clone (`{"git", "ref"}`)
    and make it the session's baseline checkpoint. One journaled step makes the snapshot; the
    workspace is swapped by `Sandbox/restore`, so a crash leaves the old workspace or the whole
    new one. Refused (nothing changed) while a task runs, and for any entry that could leave
    the workspace (app/repo/archives.py)."""
    check_key(ctx.key())
    raw = raw or b""
    cap = await retry.setting(ctx, "import_max_bytes")
    if len(raw) > cap:
        raise TerminalError(f"the archive is {len(raw)} bytes; the limit is {cap} "
                            "(AGENT_IMPORT_MAX_BYTES)", status_code=413)
    source = _git_source(raw)
    if source is None and not raw:
        raise bad_request("send an archive (.tar, .tar.gz, .zip) as the body, or {\"git\": URL, \"ref\": REF}")
    if await load(ctx, "current", RunningTask) is not None:
        raise conflict("a task is running: interrupt it or wait for it to end, then import")
    import_id = f"import-{str(ctx.uuid())[:8]}"
    what = f"clone {source.git}" if source else "archive"

    async def bring_in() -> _Imported:
        return await _bring_in(f"{ctx.key()}-{import_id}", raw, source)

    done = await ctx.run_typed(f"import {what}", bring_in, retry.sandbox_step(_Imported))
    restored = await ctx.object_call(sandbox_service.restore, key=ctx.key(),
                                     arg=RestoreIn(snapshot_id=done.snapshot_id))
    if restored.notice:  # the snapshot vanished between the two steps: nothing was imported
        raise TerminalError(f"the import could not be restored: {restored.notice}", status_code=500)
    label = (f"{source.git}@{done.ref or done.commit[:12]}" if source and done.commit
             else f"an archive ({done.files} files)")
    history = await _history(ctx)
    text = f"imported {label}" + (f", without its top directory {done.stripped}/" if done.stripped else "")
    _append(ctx, history, "event", text, None)
    point = Checkpoint(checkpoint_id=import_id, session_id=ctx.key(), task_id=import_id, step=0,
                       title=f"imported {label}", history_seq=history[-1].seq, snapshot_id=done.snapshot_id,
                       time=await ctx.time())
    await ctx.object_call(snapshots.hold, key=done.snapshot_id,
                          arg=HoldIn(holder=f"checkpoint:{ctx.key()}/{import_id}"))
    ctx.set("checkpoints", Checkpoints(items=[*await _checkpoints(ctx), point]))
    src = Source(kind="git" if source else "archive", url=source.git if source else None, ref=done.ref,
                 commit=done.commit, files=done.files, bytes=done.bytes, stripped=done.stripped, checkpoint=import_id)
    ctx.set("source", src)
    emit(ctx, ctx.key(), "imported", text, None, ref=import_id)
    return ImportOut(session=ctx.key(), **src.model_dump())


def _label(point: Checkpoint | None) -> str:
    if point is None:
        return "an empty workspace"
    if point.step == 0:
        return point.title
    return f"step {point.step} of task {point.task_id[:8]} ({point.title})"


@agent_object.handler(kind="shared", input_serde=BytesSerde())
async def diff(ctx: ObjectSharedContext, raw: bytes) -> DiffOut:
    """The unified diff of the workspace against the baseline (the last import, or nothing),
    against a checkpoint (`against`), or of one task (`task`): git's own, `git apply`-able."""
    req = parse(raw, DiffIn)
    history = await _history(ctx)
    if not history:
        raise not_found(f"unknown session {ctx.key()!r}")
    if req.task and req.against:
        raise bad_request("ask for the diff of a task or against a checkpoint, not both")
    points = await _checkpoints(ctx)
    current = await load(ctx, "current", RunningTask)
    live: Checkpoint | None = None  # target None: the live workspace
    if req.task:
        mine = [i for i, p in enumerate(points) if p.task_id == req.task]
        running = current is not None and current.task_id == req.task
        if not mine and not running and not any(h.task_id == req.task for h in history):
            raise not_found(f"session {ctx.key()!r} has no task {req.task!r}")
        first = mine[0] if mine else len(points)
        base = next((p for p in reversed(points[:first]) if not p.rewound), None)
        target = None if running or not mine else points[mine[-1]]
        if not running and not mine:
            target = base  # it kept no checkpoint: nothing to show
    elif req.against:
        base = next((p for p in points if p.checkpoint_id == req.against), None)
        if base is None:
            raise not_found(f"session {ctx.key()!r} has no checkpoint {req.against!r}")
        target = live
    else:
        source = await load(ctx, "source", Source)
        base = next((p for p in points if source and p.checkpoint_id == source.checkpoint), None)
        target = live
    out = await ctx.object_call(sandbox_service.tree_diff, key=ctx.key(), arg=TreeDiffIn(
        base=base.snapshot_id if base else None, target=target.snapshot_id if target else None,
        live=target is None and not (req.task and not running), binary=req.binary))
    return DiffOut(base=DiffSide(checkpoint=base.checkpoint_id if base else None, label=_label(base)),
                   target=DiffSide(checkpoint=target.checkpoint_id if target else None,
                                   label=_label(target) if target else "the workspace"),
                   files=out.files, added=sum(f.added for f in out.files), removed=sum(f.removed for f in out.files),
                   patch=out.patch, truncated=out.truncated)


class _Exported(BaseModel):
    commit: str
    files: int
    pushed: bool
    already: bool


@agent_object.handler(input_serde=BytesSerde())
async def export(ctx: ObjectContext, raw: bytes) -> ExportOut:
    """Commit the workspace's change onto the imported commit as a new branch, in the
    workspace's repository and (with `push`) on the origin, with the worker's credentials.

    The commit is made twice, alike: in the sandbox (so `git log` there shows it) and, from
    the same files, in a fresh clone on the worker, which never runs git on the workspace's
    `.git`. Equal inputs (journaled time included) make equal ids; a mismatch pushes nothing.
    Repeating an export with the same body answers the same commit and pushes nothing new."""
    req = parse(raw, ExportIn)
    history = await _history(ctx)
    if not history:
        raise not_found(f"unknown session {ctx.key()!r}")
    source = await load(ctx, "source", Source)
    if source is None or source.kind != "git" or not source.commit or not source.url:
        raise conflict("only a git import can be exported as a branch; download the .patch "
                       "(Agent/{s}/diff with binary) or the .tar.gz (Agent/{s}/archive) instead")
    if await load(ctx, "current", RunningTask) is not None:
        raise conflict("a task is running: interrupt it or wait for it to end, then export")
    try:
        git.check_branch(req.branch)
    except git.GitRefused as error:
        raise _refusal(error) from None
    exports = await load(ctx, "exports", Exports) or Exports()
    earlier = next((e for e in exports.items if e.out.branch == req.branch), None)
    if earlier is not None and (earlier.out.pushed or not req.push):
        return earlier.out  # exported already: the same answer, nothing made or pushed again
    if earlier is not None:  # made before without a push: push that very commit now
        record = earlier.model_copy(update={"push": True})
    else:
        author = req.author or Author(name=await retry.setting(ctx, "export_author_name"),
                                      email=await retry.setting(ctx, "export_author_email"))
        export_id = f"export-{str(ctx.uuid())[:8]}"
        snap = await ctx.object_call(sandbox_service.checkpoint, key=ctx.key(),
                                     arg=CheckpointIn(checkpoint_id=export_id, mode="every"))
        if snap.snapshot_id is None:
            raise conflict("nothing to export: the session has no workspace")
        record = ExportRecord(
            export_id=export_id, snapshot_id=snap.snapshot_id, when=int(await ctx.time()), author=author,
            message=req.message or f"Changes made by the coding agent in session {ctx.key()}", push=req.push,
            out=ExportOut(branch=req.branch, commit="", base_commit=source.commit, pushed=False, remote=source.url,
                          files=0, note=""))
        made = await ctx.object_call(sandbox_service.exec, key=ctx.key(), arg=ExecIn(
            op_id=f"{export_id}/commit", timeout_s=120,
            command=commit_script(source.commit, req.branch, record.message, (author.name, author.email), record.when)))
        record.in_workspace = made.stdout.strip() if made.exit_code == 0 else None
        record.workspace_error = None if made.exit_code == 0 else (made.stderr.strip()[-300:] or "no git there")
    url, base = source.url, source.commit

    async def build() -> _Exported:
        tree = await backend().snapshot_tree(record.snapshot_id)
        who = (record.author.name, record.author.email)
        try:
            made = await asyncio.to_thread(git.export, url, base, tree, req.branch, record.message, who, record.when, False)
            if record.in_workspace is not None and record.in_workspace != made.commit:
                raise git.GitRefused(409, (
                    f"the workspace's git made commit {record.in_workspace[:12]} but the same files make "
                    f"{made.commit[:12]} outside the sandbox (its .git configuration changes how files are "
                    "stored); nothing was pushed"))
            if record.push:
                made = await asyncio.to_thread(git.export, url, base, tree, req.branch, record.message, who,
                                               record.when, True)
        except git.GitRefused as error:
            raise _refusal(error) from None
        return _Exported(commit=made.commit, files=made.files, pushed=made.pushed, already=made.already)

    done = await ctx.run_typed(f"export {req.branch}" + (" and push" if record.push else ""), build,
                               retry.sandbox_step(_Exported))
    where = ("in the workspace" if record.in_workspace
             else f"(not in the workspace: its git could not record it: {record.workspace_error})")
    note = (f"committed {done.files} file(s) as {done.commit[:12]} on branch {req.branch} {where}"
            + (f"; pushed to {url}" if done.pushed and not done.already else "")
            + (f"; {url} already had it" if done.already else "")
            + ("" if record.push else "; not pushed (export again with push to push it)"))
    record.out = record.out.model_copy(update={"commit": done.commit, "pushed": done.pushed, "files": done.files,
                                               "note": note})
    ctx.set("exports", Exports(items=[*(e for e in exports.items if e.out.branch != req.branch), record]))
    _append(ctx, history, "event", note, None)
    emit(ctx, ctx.key(), "exported", note, None, ref=done.commit)
    return record.out


def commit_script(base: str, branch: str, message: str, author: tuple[str, str], when: int) -> str:
    """The shell that makes the export's commit in the workspace's own repository, from the
    files as they are, without touching its index, HEAD or working files: plumbing only."""
    name, email = author
    who = " ".join(f"{k}={shlex.quote(v)}" for k, v in (
        ("GIT_AUTHOR_NAME", name), ("GIT_AUTHOR_EMAIL", email), ("GIT_AUTHOR_DATE", f"{when} +0000"),
        ("GIT_COMMITTER_NAME", name), ("GIT_COMMITTER_EMAIL", email), ("GIT_COMMITTER_DATE", f"{when} +0000")))
    ref = shlex.quote(f"refs/heads/{branch}")
    return (
        "set -e; export GIT_INDEX_FILE=\"$(mktemp)\"; trap 'rm -f \"$GIT_INDEX_FILE\"' EXIT; "
        f"export {who}; git read-tree {base}; git add --all .; tree=$(git write-tree); "
        f"commit=$(printf '%s' {shlex.quote(message)} | git commit-tree \"$tree\" -p {base}); "
        f"git update-ref {ref} \"$commit\" '' 2>/dev/null || [ \"$(git rev-parse {ref})\" = \"$commit\" ]; "
        "echo \"$commit\"")


@agent_object.handler(kind="shared", input_serde=BytesSerde(), output_serde=BytesSerde(),
                      content_type="application/gzip")
async def archive(ctx: ObjectSharedContext, raw: bytes) -> bytes:
    """The live workspace as a .tar.gz (`.git` included)."""
    no_input(raw)
    if not await _history(ctx):
        raise not_found(f"unknown session {ctx.key()!r}")
    return await ctx.object_call(sandbox_service.tree_archive, key=ctx.key(), arg=b"")
