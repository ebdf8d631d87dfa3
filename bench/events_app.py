"""The deployment for the events benchmark (bench/events.py), served as `bench.events_app:app`.

It is the product plus `Bench` (bench/bench_app.py) plus `EventsBench.burst`, which records n
events in one handler so the log's append throughput can be timed on its own. With
BENCH_NO_EVENTS=1 the product's services record no events at all (their `emit` does nothing):
the baseline for what the event log costs a task.
"""

from __future__ import annotations

import os

import restate
from pydantic import BaseModel
from restate import Context

from app import agent, sandbox_service, taskrun
from app.events import emit
from bench.bench_app import PRODUCT_SERVICES, bench

if os.environ.get("BENCH_NO_EVENTS") == "1":
    def _no_event(*args: object, **kwargs: object) -> None:
        return None

    for module in (agent, sandbox_service):  # every module that records events
        module.emit = _no_event  # type: ignore[attr-defined]
    taskrun.emit_all = _no_event  # type: ignore[attr-defined]  # the Task's events (loop, task)

events_bench = restate.Service("EventsBench")


class BurstIn(BaseModel):
    session: str
    count: int


@events_bench.handler()
async def burst(ctx: Context, req: BurstIn) -> int:
    """Record `count` events for `session`, as fast as one handler can send them."""
    for i in range(req.count):
        emit(ctx, req.session, "tool_result", f"burst event {i}", "bench", detail="x" * 200, ref=f"burst/{i}")
    return req.count


app = restate.app(services=[*PRODUCT_SERVICES, bench, events_bench])
