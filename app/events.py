"""`Events`: a virtual object keyed by session id holding the session's durable event log.

Everything a watcher wants to see (messages, the plan, steps, model rounds, tool calls and
results, approvals, steering, interruptions, answers, errors, sandbox rollbacks) is appended here with a
per-session sequence number. Producers append by one-way send from their own journal, so each
event is recorded exactly once even when the producer's attempt is retried. It is a separate
object from `Agent` so that recording never waits behind the Agent's lock.

Storage is paged (PAGE_SIZE events per state key), so an append rewrites one small page, not
the whole log. Retention is bounded: past MAX_EVENTS the oldest page is dropped and folded
into a per-kind count, reported by `read` as `compacted`.
"""

from __future__ import annotations

from typing import Literal

import restate
from pydantic import BaseModel, Field
from restate import ObjectContext, ObjectSharedContext
from restate.serde import BytesSerde

from app import retry
from app.stored import Stored, load
from app.validation import parse

PAGE_SIZE = 50
MAX_EVENTS = 2_000
MAX_DETAIL = 4_000

EventKind = Literal[
    "user_message", "steering", "plan", "step_started", "step_finished", "model_round",
    "tool_call", "tool_result", "approval_requested", "approval_resolved", "interrupted",
    "final_answer", "error", "sandbox", "rewound", "forked", "rewrite", "check", "imported", "exported",
]


class EventIn(Stored):
    kind: EventKind
    text: str
    task_id: str | None = None
    detail: str | None = None  # e.g. a tool's output, truncated
    ref: str | None = None  # e.g. "step 2: tests, round 3" (ties live deltas to their round)


class EventsIn(Stored):
    events: list[EventIn] = Field(min_length=1)


class Event(EventIn):
    seq: int
    time: float


class Page(Stored):
    events: list[Event] = []


class LogMeta(Stored):
    next_seq: int = 1
    first_page: int = 0
    compacted: dict[str, int] = {}  # kind -> count of dropped events


class ReadIn(BaseModel):
    after: int = Field(default=0, ge=0)
    limit: int = Field(default=200, ge=1, le=500)


class ReadOut(BaseModel):
    events: list[Event]
    next_seq: int  # the seq the next event will get
    compacted: dict[str, int]


# Lazy state: pages are fetched on demand, so a long log does not ride along with every
# append (a preload list needs a newer discovery protocol than this SDK speaks).
events_object = restate.VirtualObject("Events", invocation_retry_policy=retry.INVOCATION_RETRY,
                                      state_preload=False)


def _page_of(seq: int) -> int:
    return (seq - 1) // PAGE_SIZE


def event(kind: EventKind, text: str, task_id: str | None = None, detail: str | None = None,
          ref: str | None = None) -> EventIn:
    """An event to record, with its text and detail cut to MAX_DETAIL."""
    if detail is not None and len(detail) > MAX_DETAIL:
        detail = detail[:MAX_DETAIL] + f"\n... [{len(detail) - MAX_DETAIL} more characters]"
    return EventIn(kind=kind, text=text[:MAX_DETAIL], task_id=task_id, detail=detail, ref=ref)


def emit(ctx: restate.Context, session_id: str, kind: EventKind, text: str, task_id: str | None = None,
         detail: str | None = None, ref: str | None = None) -> None:
    """Record an event for the session: a one-way send, journaled once by the caller."""
    ctx.object_send(append, key=session_id, arg=event(kind, text, task_id, detail, ref))


def emit_all(ctx: restate.Context, session_id: str, events: list[EventIn]) -> None:
    """Record several events in one append (one invocation of the log, not one each)."""
    if len(events) == 1:
        ctx.object_send(append, key=session_id, arg=events[0])
    elif events:
        ctx.object_send(append_all, key=session_id, arg=EventsIn(events=events))


@events_object.handler(ingress_private=True)
async def append(ctx: ObjectContext, event: EventIn) -> int:
    return await _append(ctx, [event])


@events_object.handler(ingress_private=True)
async def append_all(ctx: ObjectContext, batch: EventsIn) -> int:
    """Append the events in order, under one clock reading; the last one's seq."""
    return await _append(ctx, batch.events)


async def _append(ctx: ObjectContext, events: list[EventIn]) -> int:
    meta = await load(ctx, "meta", LogMeta) or LogMeta()
    first = meta.next_seq
    pages = {page_no: await load(ctx, f"page:{page_no}", Page) or Page()
             for page_no in sorted({_page_of(first + i) for i in range(len(events))})}
    now = await ctx.time()
    for seq, event in enumerate(events, start=first):
        pages[_page_of(seq)].events.append(Event(seq=seq, time=now, **event.model_dump()))
    for page_no, page in pages.items():
        ctx.set(f"page:{page_no}", page)
    meta.next_seq = first + len(events)
    while (_page_of(meta.next_seq - 1) - meta.first_page + 1) * PAGE_SIZE > MAX_EVENTS + PAGE_SIZE:
        dropped = await load(ctx, f"page:{meta.first_page}", Page) or Page()
        for old in dropped.events:
            meta.compacted[old.kind] = meta.compacted.get(old.kind, 0) + 1
        ctx.clear(f"page:{meta.first_page}")
        meta.first_page += 1
    ctx.set("meta", meta)
    return meta.next_seq - 1


@events_object.handler(kind="shared", input_serde=BytesSerde())
async def read(ctx: ObjectSharedContext, raw: bytes) -> ReadOut:
    """Events with seq > `after`, oldest first, at most `limit`. Poll with the last seq seen."""
    req = parse(raw, ReadIn)
    meta = await load(ctx, "meta", LogMeta) or LogMeta()
    out: list[Event] = []
    page_no = max(_page_of(req.after + 1), meta.first_page)
    while len(out) < req.limit and page_no <= _page_of(meta.next_seq - 1) and meta.next_seq > 1:
        page = await load(ctx, f"page:{page_no}", Page) or Page()
        out.extend(e for e in page.events if e.seq > req.after)
        page_no += 1
    return ReadOut(events=out[:req.limit], next_seq=meta.next_seq, compacted=meta.compacted)
