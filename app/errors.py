"""The one place that decides which errors are terminal, retryable, or fed back to the model.

Restate retries any exception except `TerminalError`. So the rule is: raise `TerminalError`
only when a retry cannot help (bad input, a model request the provider rejects), and let
everything transient propagate so the journal resumes from the last completed step.
"""

from __future__ import annotations

from datetime import timedelta

import openai
from restate import TerminalError
from restate.exceptions import RetryableError

from sandbox.protocol import FileMissing, PathRejected, SandboxGone, WorkspaceFull

# A cancelled invocation sees TerminalError(409) at its next await.
CANCELLED = 409
# Sandbox handlers reject bad tool input with these; the loop turns them into tool errors.
TOOL_INPUT_ERRORS = frozenset({400, 404, 413})


def bad_request(message: str) -> TerminalError:
    return TerminalError(message, status_code=400)


def not_found(message: str) -> TerminalError:
    return TerminalError(message, status_code=404)


def conflict(message: str) -> TerminalError:
    return TerminalError(message, status_code=409)


def is_cancellation(error: TerminalError) -> bool:
    return error.status_code == CANCELLED


def is_tool_input_error(error: TerminalError) -> bool:
    """A sandbox call refused the model's arguments: report it to the model, don't fail the task."""
    return error.status_code in TOOL_INPUT_ERRORS


def _retry_after(error: openai.APIStatusError) -> timedelta | None:
    raw = error.response.headers.get("retry-after") if error.response is not None else None
    try:
        return timedelta(seconds=min(float(raw), 300.0)) if raw else None
    except ValueError:
        return None  # an HTTP date; let the step's own backoff decide


def classify_llm_error(error: Exception) -> Exception:
    """Map an `openai` exception to what the journaled model step should raise.

    429 and 5xx are the provider asking us to come back later (honouring Retry-After);
    timeouts and dropped connections are transient too. Any other 4xx means the request
    itself is wrong (bad key, unknown model, context too long): retrying would only repeat
    the failure, so it is terminal and the task fails with the provider's reason.
    """
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        if status == 429 or status >= 500:
            return RetryableError(f"model server answered {status}", retry_after=_retry_after(error))
        detail = getattr(error, "message", None) or str(error)
        return TerminalError(f"model request rejected ({status}): {detail}", status_code=502)
    return error  # timeouts, connection errors, anything unexpected: retry


# Sandbox failures, mapped inside the journaled step so the mapping itself is replayed.
GONE = 410


def sandbox_failure(error: Exception) -> Exception:
    """Turn a backend error into what the step should raise.

    Path and size errors are the caller's fault and final (4xx, in-band for the model). A gone
    sandbox is final *for this step* (410): the Sandbox object reacts by recreating it from the
    last snapshot. Anything else is an infrastructure hiccup and is retried.
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
