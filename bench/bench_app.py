"""The product's deployment plus a small `Bench` service, so benchmarks run in the same worker.

    hypercorn bench.bench_app:app

`Bench` is only for measuring: raw journaled steps, a ticking loop to crash, and a way to
reach the (ingress-private) Sandbox.exec, Sandbox.write_file and Sandbox.checkpoint handlers
from outside (the eval writes a case's starting files with it: bench/eval/).
"""

from __future__ import annotations

import time
from datetime import timedelta

import restate
from pydantic import BaseModel
from restate import Context, RunOptions

from app import main as product
from app import retry, sandbox_service
from app.models import CheckpointIn, CheckpointOut, ExecIn, ExecOut, FileOpOut, WriteFileIn

# The product's own retry policy, so a crash benchmark sees the recovery our services get.
bench = restate.Service("Bench", invocation_retry_policy=retry.INVOCATION_RETRY)


class StepsIn(BaseModel):
    n: int


class TicksIn(BaseModel):
    path: str  # file that each tick appends its wall-clock time to
    count: int
    interval_ms: int = 20


class SandboxExecIn(BaseModel):
    session: str
    op_id: str
    command: str
    timeout_s: float = 60


async def _nothing(i: int) -> int:
    return i


class JournalWorkIn(BaseModel):
    steps: int  # trivial journaled steps
    calls: int  # request-response calls to a trivial handler (each one more invocation)
    sends: int  # one-way sends to it


@bench.handler()
async def noop(ctx: Context, i: int) -> int:
    """The target of `journal_work`'s calls and sends: an invocation that does nothing."""
    return i


@bench.handler()
async def journal_work(ctx: Context, req: JournalWorkIn) -> int:
    """Raw Restate doing a task's journal work (bench/load.py counts it from a real task): its
    steps, its calls and its one-way sends, with no model, no sandbox and no state."""
    for i in range(req.steps):
        await ctx.run_typed(f"step {i}", _nothing, RunOptions(type_hint=int), i)
    for i in range(req.calls):
        await ctx.service_call(noop, arg=i)
    for i in range(req.sends):
        ctx.service_send(noop, arg=i)
    return req.steps + req.calls + req.sends


@bench.handler()
async def steps(ctx: Context, req: StepsIn) -> int:
    """`n` trivial journaled steps in a row: the cost of one `ctx.run_typed`."""
    for i in range(req.n):
        await ctx.run_typed(f"step {i}", _nothing, RunOptions(type_hint=int), i)
    return req.n


async def _append_now(path: str) -> float:
    now = time.time()
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{now!r}\n")
    return now


@bench.handler()
async def ticks(ctx: Context, req: TicksIn) -> int:
    """Each tick is a step that appends time.time() to a file, then a durable 20 ms sleep."""
    for i in range(req.count):
        await ctx.run_typed(f"tick {i}", _append_now, RunOptions(type_hint=float), req.path)
        await ctx.sleep(timedelta(milliseconds=req.interval_ms), name=f"after tick {i}")
    return req.count


@bench.handler()
async def sandbox_exec(ctx: Context, req: SandboxExecIn) -> ExecOut:
    """Run a command through the Sandbox object exactly as a Task's tool call does."""
    return await ctx.object_call(sandbox_service.exec, key=req.session,
                                 arg=ExecIn(op_id=req.op_id, command=req.command, timeout_s=req.timeout_s))


class SandboxWriteIn(BaseModel):
    session: str
    op_id: str
    path: str
    content: str


@bench.handler()
async def sandbox_write(ctx: Context, req: SandboxWriteIn) -> FileOpOut:
    """Write a workspace file through the Sandbox object exactly as a Task's write_file does."""
    return await ctx.object_call(sandbox_service.write_file, key=req.session,
                                 arg=WriteFileIn(op_id=req.op_id, path=req.path, content=req.content))


class CheckpointBenchIn(BaseModel):
    session: str
    checkpoint_id: str


@bench.handler()
async def sandbox_checkpoint(ctx: Context, req: CheckpointBenchIn) -> CheckpointOut:
    """Take a checkpoint exactly as a Task does at the end of a step."""
    return await ctx.object_call(sandbox_service.checkpoint, key=req.session,
                                 arg=CheckpointIn(checkpoint_id=req.checkpoint_id, mode="every"))


# Exactly what the product serves (importing app.main also builds the sandbox backend, as the
# product does).
PRODUCT_SERVICES = product.SERVICES

app = restate.app(services=[*PRODUCT_SERVICES, bench])

