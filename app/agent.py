"""`Agent`: a virtual object keyed by session id. It keeps the chat history and starts,
interrupts and replaces tasks. It never runs model or tool work itself.

Exclusive handlers serialise everything that changes the session, so a message, an
interrupt and a task report can never interleave. Tasks report through ingress-private
handlers, and a report from any task other than the current one is ignored: a late report
from an interrupted task can never clear or overwrite its replacement.
"""

from __future__ import annotations

from datetime import timedelta

import restate
from restate import ObjectContext, ObjectSharedContext, TerminalError
from restate.serde import BytesSerde

from app import retry, task
from app.config import settings
from app.errors import bad_request, is_cancellation, not_found
from app.models import (
    ConversationTurn, History, HistoryEntry, HistoryOut, LastTask, InterruptOut, MessageIn, MessageOut,
    PlanItem, ProgressReport, RunningTask, StatusOut, TaskInput, TaskOutcome,
)
from app.validation import check_key, parse

MAX_HISTORY = 500  # entries kept in state; older ones are dropped

agent_object = restate.VirtualObject("Agent", invocation_retry_policy=retry.INVOCATION_RETRY)


async def _history(ctx: ObjectContext | ObjectSharedContext) -> list[HistoryEntry]:
    stored = await ctx.get("history", type_hint=History)
    return stored.entries if stored else []


def _append(ctx: ObjectContext, history: list[HistoryEntry], role: str, text: str,
            task_id: str | None) -> None:
    seq = history[-1].seq + 1 if history else 1
    history.append(HistoryEntry(seq=seq, role=role, text=text, task_id=task_id))  # type: ignore[arg-type]
    del history[:-MAX_HISTORY]
    ctx.set("history", History(entries=history))


def _record_outcome(ctx: ObjectContext, history: list[HistoryEntry], outcome: TaskOutcome) -> None:
    """Write a finished task into the history and make the session idle."""
    role = "agent" if outcome.status == "done" else "event"
    _append(ctx, history, role, outcome.text, outcome.task_id)
    ctx.set("last", LastTask(plan=outcome.plan, usage=outcome.usage))
    ctx.clear("current")


def _cancelled_plan(current: RunningTask) -> list[PlanItem]:
    return [PlanItem(title=p.title, status="cancelled" if p.status in ("pending", "running") else p.status)
            for p in current.plan]


async def _stop(ctx: ObjectContext, history: list[HistoryEntry], current: RunningTask) -> None:
    """Cancel the current task and wait, bounded, for its compensations to finish.

    The task may already have finished with its report still queued behind this handler;
    then the attach returns its outcome and we record that instead of an interruption.
    """
    ctx.cancel_invocation(current.invocation_id)
    wait = timedelta(seconds=settings().interrupt_wait_s)
    try:
        which, value = await restate.select(
            done=ctx.attach_invocation(current.invocation_id, type_hint=TaskOutcome),
            timeout=ctx.sleep(wait, name="wait for interrupted task cleanup"),
        )
    except TerminalError as error:
        reason = "task interrupted" if is_cancellation(error) else f"task failed: {error.message}"
        _record_outcome(ctx, history, TaskOutcome(task_id=current.task_id, status="interrupted", text=reason,
                                                  plan=_cancelled_plan(current)))
        return
    if which == "done":
        _record_outcome(ctx, history, value)
    else:
        _record_outcome(ctx, history, TaskOutcome(
            task_id=current.task_id, status="interrupted",
            text=f"task interrupted (its cleanup was still running after {wait.total_seconds():.0f} s)",
            plan=_cancelled_plan(current)))


@agent_object.handler(input_serde=BytesSerde())
async def message(ctx: ObjectContext, raw: bytes) -> MessageOut:
    """Append a user message and start a task for it, interrupting the running one."""
    check_key(ctx.key())
    limit = settings().max_message_chars
    req = parse(raw, MessageIn, max_bytes=limit * 4 + 1024)
    if len(req.text) > limit:
        raise bad_request(f"message is {len(req.text)} characters; the limit is {limit}")

    history = await _history(ctx)
    current = await ctx.get("current", type_hint=RunningTask)
    if current is not None:
        await _stop(ctx, history, current)

    task_id = str(ctx.uuid())
    _append(ctx, history, "user", req.text, task_id)
    conversation = [ConversationTurn(role=h.role, text=h.text) for h in history]
    # One-way: the task outlives this handler, and the Agent must stay free for its reports.
    handle = ctx.workflow_send(task.run, key=task_id,
                               arg=TaskInput(session_id=ctx.key(), task_id=task_id, conversation=conversation))
    ctx.set("current", RunningTask(task_id=task_id, invocation_id=await handle.invocation_id()))
    return MessageOut(task_id=task_id)


@agent_object.handler()
async def interrupt(ctx: ObjectContext) -> InterruptOut:
    """Stop the running task without starting a new one."""
    history = await _history(ctx)
    if not history:
        raise not_found(f"unknown session {ctx.key()!r}")
    current = await ctx.get("current", type_hint=RunningTask)
    if current is None:
        return InterruptOut(interrupted=False)
    await _stop(ctx, history, current)
    return InterruptOut(interrupted=True, task_id=current.task_id)


@agent_object.handler(kind="shared")
async def history(ctx: ObjectSharedContext) -> HistoryOut:
    entries = await _history(ctx)
    if not entries:
        raise not_found(f"unknown session {ctx.key()!r}")
    return HistoryOut(messages=entries)


@agent_object.handler(kind="shared")
async def status(ctx: ObjectSharedContext) -> StatusOut:
    if not await _history(ctx):
        raise not_found(f"unknown session {ctx.key()!r}")
    current = await ctx.get("current", type_hint=RunningTask)
    last = await ctx.get("last", type_hint=LastTask)
    last_usage = last.usage if last else None
    if current is None:
        return StatusOut(state="idle", plan=last.plan if last else [], last_usage=last_usage)
    return StatusOut(state="running", task_id=current.task_id, plan=current.plan, last_usage=last_usage)


@agent_object.handler(ingress_private=True)
async def task_progress(ctx: ObjectContext, report: ProgressReport) -> None:
    current = await ctx.get("current", type_hint=RunningTask)
    if current is None or current.task_id != report.task_id:
        return  # stale: from a task that is no longer current
    current.plan = report.plan
    ctx.set("current", current)


@agent_object.handler(ingress_private=True)
async def task_finished(ctx: ObjectContext, outcome: TaskOutcome) -> None:
    current = await ctx.get("current", type_hint=RunningTask)
    if current is None or current.task_id != outcome.task_id:
        return  # stale: this task was interrupted and already accounted for
    _record_outcome(ctx, await _history(ctx), outcome)
