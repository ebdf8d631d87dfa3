"""The one retry policy module: how Restate re-drives invocations and journaled steps."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from restate import InvocationRetryPolicy, RunOptions
from restate.serde import BytesSerde

T = TypeVar("T")

# Restate's default backoff grows to a minute, so a worker restarted after a crash could sit
# idle for up to a minute before its invocations resume. Capped at 0.5 s, a restarted worker
# picks its work up within half a second (a quarter on average; the supervisor also asks
# Restate to retry at once, stack/processes.py: retry_now). Retrying a refused connection
# twice a second costs Restate next to nothing. The attempt budget is about three hours of
# outage at the cap, and then the invocation pauses, so an operator can resume it instead of
# losing it.
RETRY_CAP = timedelta(milliseconds=500)
INVOCATION_RETRY = InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    exponentiation_factor=2.0,
    max_interval=RETRY_CAP,
    max_attempts=int(timedelta(hours=3) / RETRY_CAP),
    on_max_attempts="pause",
)

# Handlers may run long steps (a model round on a CPU, a command with a long timeout).
# Restate asks an invocation to suspend after `inactivity_timeout` without journal progress,
# and aborts it `abort_timeout` later; both must exceed the longest single step, or the
# step would be cut off and re-run.
LONG_STEP_INACTIVITY = timedelta(minutes=10)
LONG_STEP_ABORT = timedelta(minutes=5)


def model_step(type_hint: type[T]) -> RunOptions[T]:
    """A model round: transient provider failures back off inside the step, up to 30 s apart."""
    return RunOptions(
        type_hint=type_hint,
        initial_retry_interval=timedelta(milliseconds=200),
        max_retry_interval=timedelta(seconds=30),
        retry_interval_factor=2.0,
        max_duration=timedelta(minutes=30),
    )


def sandbox_step(type_hint: type[T]) -> RunOptions[T]:
    """A backend operation: infrastructure hiccups are retried, backing off to 10 s apart, for
    up to 5 minutes, so a provider outage of that length is ridden out (sandbox/protocol.py:
    SandboxUnavailable is never taken for a dead sandbox); then the step fails. A `bytes`
    result is journaled as it is (the default serde would try JSON)."""
    return RunOptions(
        type_hint=type_hint,
        **({"serde": BytesSerde()} if type_hint is bytes else {}),  # type: ignore[dict-item]
        initial_retry_interval=timedelta(milliseconds=100),
        max_retry_interval=timedelta(seconds=10),
        retry_interval_factor=2.0,
        max_duration=timedelta(minutes=5),
    )


def local_step(type_hint: type[T]) -> RunOptions[T]:
    """A step that only reads this process (its settings, say): it fails only if the process
    is misconfigured, so a few quick attempts are enough."""
    return RunOptions(type_hint=type_hint, initial_retry_interval=timedelta(milliseconds=100),
                      max_retry_interval=timedelta(seconds=1), max_attempts=5)


async def setting(ctx: Any, name: str) -> Any:
    """One setting (app/config.py), read in a journaled step: a handler replayed by a worker
    whose environment differs takes the value the first attempt took. Only for plain values
    (numbers, names): nothing secret goes into the journal."""
    from app.config import settings  # here, not at import: the brain and tests import this module

    kind = type(getattr(settings(), name))
    assert kind in (int, float, str, bool), name

    async def read() -> Any:
        return getattr(settings(), name)

    return await ctx.run_typed(f"setting {name}", read, RunOptions(type_hint=kind))
