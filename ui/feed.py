"""Server-sent events for a session: the durable event log first, then live events and deltas.

The event log (`Events.read`) is the source of truth. A client says where it is with
`Last-Event-ID` (or `?after=` on first load) and gets exactly the events after that, read page by
page from the log, then the live ones. Live events come from one poller per session (`Feed`),
shared by all of that session's clients. A client checks the sequence numbers it forwards: an
event it has already sent is skipped, and a gap (it joined while the poller was elsewhere) is
filled from the log, so every client sees every event once, in order.

Deltas (live model text, posted by the worker to /internal/deltas) are not in the log. They go
to the session's clients as `event: delta` without an `id`, so they never move a client's
Last-Event-ID. The hub also keeps each open round's text so far, so a client that connects
mid-round (a reload) gets it at once; a round's text is dropped as soon as its journaled
`model_round` (or the plan, or the task's end) shows up in the log, or after LIVE_TTL_S
without a delta (a session nobody watches has no log reader to settle it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from ui.ingress import Ingress

log = logging.getLogger("ui.feed")

PAGE = 500  # events per Events.read call (the handler's maximum)
QUEUE_LIMIT = 2_000  # items a slow client may lag behind before it is dropped (it reconnects)
LIVE_TTL_S = 300.0  # a round's live text with no delta for this long is forgotten
SWEEP_EVERY_S = 10.0  # how often a delta also looks for such rounds, in every session
FINISHING = ("final_answer", "error", "interrupted")

Item = tuple[str, dict[str, Any]]  # ("event", event) | ("delta", delta) | ("overflow", {})


def sse(data: dict[str, Any], event: str, event_id: int | None = None) -> str:
    """One server-sent event. JSON has no raw newlines, so `data` is a single line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class Feed:
    """One session's poller and the queues of the clients watching it."""

    def __init__(self, hub: Hub, session: str) -> None:
        self.hub = hub
        self.session = session
        self.queues: set[asyncio.Queue[Item]] = set()
        self.position: int | None = None  # the last seq the poller has seen
        self.task: asyncio.Task[None] | None = None

    def subscribe(self) -> asyncio.Queue[Item]:
        queue: asyncio.Queue[Item] = asyncio.Queue(QUEUE_LIMIT)
        self.queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Item]) -> None:
        self.queues.discard(queue)

    def start(self, position: int) -> None:
        """Poll from `position` on, unless already polling (its clients fill their own gaps)."""
        if self.task is None or self.task.done():
            self.position = position
            self.task = asyncio.create_task(self._poll(), name=f"feed {self.session}")

    def publish(self, item: Item) -> None:
        for queue in list(self.queues):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                if item[0] == "event":  # a client that misses events must resume from the log
                    self.queues.discard(queue)
                    queue.get_nowait()
                    queue.put_nowait(("overflow", {}))

    async def _poll(self) -> None:
        while self.queues:
            assert self.position is not None
            answer = await self.hub.ingress.read_events(self.session, self.position, PAGE)
            try:
                if not answer.ok:
                    raise ValueError(f"{answer.status}: {answer.body[:200]!r}")
                events = answer.json()["events"]
            except (ValueError, KeyError) as error:  # Restate restarting, say: clients wait a little
                log.warning("Events.read for %s failed: %s", self.session, error)
                await asyncio.sleep(1.0)
                continue
            for event in events:
                self.position = event["seq"]
                self.hub.settle(self.session, event)
                self.publish(("event", event))
            if len(events) < PAGE:
                await asyncio.sleep(self.hub.poll_interval)
        # No await between the check above and this: a client that subscribes from now on
        # gets a new Feed.
        self.hub.feeds.pop(self.session, None)


class Hub:
    """Every session's feed, and the live text of rounds in flight."""

    def __init__(self, ingress: Ingress, poll_interval: float = 0.1, heartbeat: float = 10.0) -> None:
        self.ingress = ingress
        self.poll_interval = poll_interval
        self.heartbeat = heartbeat
        self.feeds: dict[str, Feed] = {}
        # session -> ref -> {"ref", "task_id", "attempt", "text", "at"}
        self.live: dict[str, dict[str, dict[str, Any]]] = {}
        self._swept = 0.0

    def feed(self, session: str) -> Feed:
        if session not in self.feeds:
            self.feeds[session] = Feed(self, session)
        return self.feeds[session]

    # --- deltas --------------------------------------------------------------------------------

    def delta(self, delta: dict[str, Any]) -> None:
        """A batch of live text from the worker: remember it and pass it on."""
        session, ref = delta["session"], delta["ref"]
        now = time.monotonic()
        self._forget_idle(now)
        rounds = self.live.setdefault(session, {})
        current = rounds.get(ref)
        if current is None or current["attempt"] != delta["attempt"]:
            current = rounds[ref] = {"ref": ref, "task_id": delta.get("task_id"),
                                     "attempt": delta["attempt"], "text": ""}
        current["text"] += delta["text"]
        current["at"] = now
        if session in self.feeds:
            self.feeds[session].publish(("delta", {k: delta.get(k) for k in ("ref", "task_id", "attempt", "text")}))

    def _forget_idle(self, now: float) -> None:
        """Drop every round that had no delta for LIVE_TTL_S, in any session. Only a watched
        session's log settles its rounds; an unwatched one's (driven through the ingress, or
        whose watchers left) would otherwise be kept for good, as would a round whose worker
        died."""
        if now - self._swept < SWEEP_EVERY_S:
            return
        self._swept = now
        for session, rounds in list(self.live.items()):
            for ref in [r for r, v in rounds.items() if now - v["at"] > LIVE_TTL_S]:
                del rounds[ref]
            if not rounds:
                del self.live[session]

    def settle(self, session: str, event: dict[str, Any]) -> None:
        """A journaled event supersedes the live text of the round(s) it records."""
        rounds = self.live.get(session)
        if not rounds:
            return
        kind, task_id = event["kind"], event.get("task_id")
        for ref, live in list(rounds.items()):
            same_task = live["task_id"] == task_id
            if ((kind == "model_round" and ref == event.get("ref"))
                    or (kind == "plan" and same_task and ref.startswith("plan"))
                    or (kind in FINISHING and same_task)):
                del rounds[ref]
        if not rounds:
            del self.live[session]

    def live_rounds(self, session: str) -> list[dict[str, Any]]:
        return [{k: v[k] for k in ("ref", "task_id", "attempt", "text")} for v in self.live.get(session, {}).values()]

    # --- one client ----------------------------------------------------------------------------

    async def stream(self, session: str, after: int) -> AsyncIterator[str]:
        """The SSE body for one client that has seen every event up to `after`."""
        feed = self.feed(session)
        queue = feed.subscribe()  # first, so nothing the poller reads from now on is missed
        try:
            yield "retry: 1000\n\n"
            last = after
            first = True
            async for event, meta in self._read_log(session, after):
                if first and meta is not None:
                    yield sse(meta, "meta")
                    first = False
                if event is not None:
                    yield sse(event, event["kind"], event["seq"])
                    last = event["seq"]
            # The rounds in flight, as they stand now; the deltas queued meanwhile are in there.
            queued = [queue.get_nowait() for _ in range(queue.qsize())]
            for item in queued:
                if item[0] != "delta":
                    queue.put_nowait(item)
            for live in self.live_rounds(session):
                yield sse({**live, "snapshot": True}, "delta")
            feed.start(last)
            while True:
                try:
                    kind, item = await asyncio.wait_for(queue.get(), self.heartbeat)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if kind == "overflow":
                    return  # the client reconnects with its Last-Event-ID and catches up
                if kind == "delta":
                    yield sse(item, "delta")
                    continue
                if item["seq"] <= last:
                    continue
                if item["seq"] > last + 1:  # joined while the poller was further back: fill in
                    async for event, _ in self._read_log(session, last, until=item["seq"] - 1):
                        if event is not None:
                            yield sse(event, event["kind"], event["seq"])
                            last = event["seq"]
                yield sse(item, item["kind"], item["seq"])
                last = item["seq"]
        finally:
            feed.unsubscribe(queue)

    async def _read_log(self, session: str, after: int, until: int | None = None
                        ) -> AsyncIterator[tuple[dict[str, Any] | None, dict[str, Any] | None]]:
        """(event, meta) for the log's events after `after` (up to `until`), page by page.

        While the ingress is unavailable it waits and tries again; the client stays connected.
        """
        while True:
            answer = await self.ingress.read_events(session, after, PAGE)
            if not answer.ok:
                log.warning("Events.read for %s failed (%s): %s", session, answer.status, answer.body[:200])
                await asyncio.sleep(1.0)
                continue
            page = answer.json()
            meta = {"next_seq": page["next_seq"], "compacted": page["compacted"]}
            events = [e for e in page["events"] if until is None or e["seq"] <= until]
            yield None, meta
            for event in events:
                self.settle(session, event)
                yield event, None
                after = event["seq"]
            if len(page["events"]) < PAGE or len(events) < len(page["events"]):
                return
