"""The one place that decides which errors are terminal, retryable, or fed back to the model.

Restate retries any exception except `TerminalError`. So the rule is: raise `TerminalError`
only when a retry cannot help (bad input, a model request the provider rejects), and let
everything transient propagate so the journal resumes from the last completed step.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING

from restate import TerminalError
from restate.exceptions import RetryableError

from sandbox.protocol import FileMissing, PathRejected, SandboxGone, WorkspaceFull

if TYPE_CHECKING:
    import openai  # imported where it is used: see app/llm.py

# How Restate itself reports a cancellation: the SDK raises TerminalError(409, "cancelled") at
# the cancelled invocation's next await, and a call whose callee was cancelled or killed fails
# with 409 "canceled" / "killed" (restate_types::errors). Status 409 alone is not enough:
# handlers may answer 409 for their own conflicts, and mistaking one of those for a
# cancellation would end a task as "interrupted" for nothing.
_CANCELLED_STATUS = 409
_CANCELLED_MESSAGES = frozenset({"cancelled", "canceled", "killed"})
# Sandbox handlers reject bad tool input with these; the loop turns them into tool errors.
TOOL_INPUT_ERRORS = frozenset({400, 404, 413})


def bad_request(message: str) -> TerminalError:
    return TerminalError(message, status_code=400)


def not_found(message: str) -> TerminalError:
    return TerminalError(message, status_code=404)


def conflict(message: str) -> TerminalError:
    return TerminalError(message, status_code=409)


def is_cancellation(error: TerminalError) -> bool:
    """Whether Restate cancelled (or killed) this invocation or a call it was waiting on."""
    return error.status_code == _CANCELLED_STATUS and error.message.strip().lower() in _CANCELLED_MESSAGES


def is_tool_input_error(error: TerminalError) -> bool:
    """A sandbox call refused the model's arguments: report it to the model, don't fail the task."""
    return error.status_code in TOOL_INPUT_ERRORS


# Provider answers that mean "come back later", as the openai client's own `_should_retry`
# has them: request timeout, lock timeout, rate limit, and every 5xx.
RETRYABLE_MODEL_STATUSES = frozenset({408, 409, 429})
# A provider's Retry-After is honoured up to this; past it the step simply asks again.
MAX_RETRY_AFTER = timedelta(minutes=5)


def _provider_says_retry(error: openai.APIStatusError) -> bool:
    should = error.response.headers.get("x-should-retry")  # OpenAI's explicit verdict wins
    if should in ("true", "false"):
        return should == "true"
    return error.status_code in RETRYABLE_MODEL_STATUSES or error.status_code >= 500


def _retry_after(error: openai.APIStatusError) -> timedelta | None:
    """The wait the provider asked for (OpenAI's retry-after-ms, else Retry-After), capped.

    None when it asked for none, or for something unreadable such as an HTTP date: then the
    step's own backoff decides.
    """
    for header, unit in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            seconds = float(error.response.headers.get(header, "")) * unit
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds > 0:
            return timedelta(seconds=min(seconds, MAX_RETRY_AFTER.total_seconds()))
    return None


def classify_llm_error(error: Exception) -> Exception:
    """Map an `openai` exception to what the journaled model step should raise.

    408, 409, 429 and 5xx are the provider asking us to come back later; timeouts and dropped
    connections are transient too. Any other 4xx means the request itself is wrong (bad key,
    unknown model, context too long): retrying would only repeat the failure, so it is
    terminal and the task fails with the provider's reason.

    How long to wait: inside `ctx.run_typed` a `RetryableError` is retried after exactly its
    `retry_after` and bypasses the step's interval and factor, so it is raised only when the
    provider named a delay. Otherwise the openai error itself propagates as a plain exception
    and `retry.model_step`'s exponential backoff (200 ms doubling to 30 s) applies.
    """
    import openai

    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        if not _provider_says_retry(error):
            detail = getattr(error, "message", None) or str(error)
            return TerminalError(f"model request rejected ({status}): {detail}", status_code=502)
        retry_after = _retry_after(error)
        if retry_after is None:
            return error
        return RetryableError(f"model server answered {status}, asking to retry in "
                              f"{retry_after.total_seconds():g} s", retry_after=retry_after)
    return error  # timeouts, connection errors, anything unexpected: retry with the backoff


# Sandbox failures, mapped inside the journaled step so the mapping itself is replayed.
GONE = 410


def sandbox_failure(error: Exception) -> Exception:
    """Turn a backend error into what the step should raise.

    Path and size errors are the caller's fault and final (4xx, in-band for the model). A gone
    sandbox is final *for this step* (410): the Sandbox object reacts by recreating it from the
    last snapshot. Anything else is an infrastructure hiccup and is retried; that includes
    `SandboxUnavailable` (an outage the provider did not confirm as a death), which must never
    become a 410, or a live sandbox would be replaced and its recent work rolled back.
    """
    if isinstance(error, (PathRejected, ValueError)):
        return TerminalError(str(error), status_code=400)  # a bad argument: retrying cannot help
    if isinstance(error, FileMissing):
        return TerminalError(str(error), status_code=404)
    if isinstance(error, WorkspaceFull):
        return TerminalError(str(error), status_code=413)
    if isinstance(error, SandboxGone):
        return TerminalError(str(error) or "sandbox is gone", status_code=GONE)
    return error


def is_gone(error: TerminalError) -> bool:
    return error.status_code == GONE
