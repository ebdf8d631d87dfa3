"""The model step's retry policy is the one `app/retry.py: model_step` documents.

A provider that answers 503 is retried with a growing backoff, a 429's Retry-After is honoured,
a 408 is retried, and the round that finally succeeds is recorded once. The unit tests pin
which provider answers are terminal and which are retried.
"""

from __future__ import annotations

from datetime import timedelta

import httpx2
import openai
import pytest
from restate import TerminalError
from restate.exceptions import RetryableError

from app import retry
from app.errors import classify_llm_error
from app.models import ModelTurn
from tests.agent_helpers import events, send_message, wait_idle
from tests.fakes.retry_scripts import FLAKY_503S, RETRY_AFTER_S
from tests.fakes.scripts import current_step

SCRIPT = "tests.fakes.retry_scripts:flaky_provider"


def test_provider_errors_back_off_then_the_round_is_recorded_once(stack_factory):
    stack = stack_factory(SCRIPT)
    send_message(stack, "flaky", "say done")
    final = wait_idle(stack, "flaky", timeout=90)
    assert [p["status"] for p in final["plan"]] == ["done"]

    attempts = [e for e in stack.llm_requests() if current_step(e["request"]) == 1]
    statuses = [e["reply"].get("status", 200) for e in attempts]
    assert statuses == [503] * FLAKY_503S + [429, 408, 200]  # the 408 was retried
    gaps = [later["time"] - earlier["time"] for earlier, later in zip(attempts, attempts[1:])]
    print("gaps between attempts (s):", [round(g, 3) for g in gaps])

    # After each 503 (no Retry-After) the step's exponential backoff applies: 200 ms, 400 ms,
    # 800 ms, 1.6 s. The last one is beyond INVOCATION_RETRY's 1 s cap, so it is the step's own.
    options = retry.model_step(ModelTurn)
    expected = [options.initial_retry_interval.total_seconds() * options.retry_interval_factor ** i
                for i in range(FLAKY_503S)]
    backoff = gaps[:FLAKY_503S]
    for gap, wanted in zip(backoff, expected):
        assert wanted * 0.8 <= gap <= wanted * 2 + 0.5, (backoff, expected)
    assert all(later > earlier * 1.3 for earlier, later in zip(backoff, backoff[1:])), backoff

    # After the 429 the provider's Retry-After decides, not the backoff (which would be 3.2 s).
    assert RETRY_AFTER_S - 0.05 <= gaps[FLAKY_503S] < RETRY_AFTER_S + 1.0, gaps

    # One successful round: counted once in the usage, one model_round event.
    assert final["last_usage"]["rounds"] == 2  # the plan and step 1's only round
    stack.wait_until(lambda: events(stack, "flaky")[-1]["kind"] == "final_answer", message="final event")
    assert len(events(stack, "flaky", "model_round")) == 1


# --- which provider answers are terminal ---------------------------------------------------------

REQUEST = httpx2.Request("POST", "http://model.test/v1/chat/completions")


def status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    response = httpx2.Response(status, headers=headers, request=REQUEST)
    return openai.APIStatusError(f"Error code: {status}", response=response, body=None)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_request_the_provider_rejects_is_terminal(status: int) -> None:
    outcome = classify_llm_error(status_error(status))
    assert isinstance(outcome, TerminalError)
    assert f"({status})" in outcome.message


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_without_retry_after_the_step_backoff_applies(status: int) -> None:
    # A plain exception: Restate retries it with model_step's interval and factor, which a
    # RetryableError would bypass.
    outcome = classify_llm_error(status_error(status))
    assert not isinstance(outcome, (TerminalError, RetryableError))


@pytest.mark.parametrize("headers, seconds", [
    ({"retry-after": "2"}, 2.0),
    ({"retry-after": "0.5"}, 0.5),
    ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
    ({"retry-after": "86400"}, 300.0),  # capped
])
def test_retry_after_is_honoured(headers: dict[str, str], seconds: float) -> None:
    outcome = classify_llm_error(status_error(429, headers))
    assert isinstance(outcome, RetryableError)
    assert outcome.retry_after == timedelta(seconds=seconds)


def test_an_unreadable_retry_after_falls_back_to_the_backoff() -> None:
    outcome = classify_llm_error(status_error(503, {"retry-after": "soon"}))
    assert not isinstance(outcome, (TerminalError, RetryableError))


def test_the_provider_may_say_whether_to_retry() -> None:
    assert isinstance(classify_llm_error(status_error(503, {"x-should-retry": "false"})), TerminalError)
    assert not isinstance(classify_llm_error(status_error(400, {"x-should-retry": "true"})), TerminalError)


@pytest.mark.parametrize("error", [
    openai.APIConnectionError(request=REQUEST),
    openai.APITimeoutError(request=REQUEST),
])
def test_connection_errors_and_timeouts_are_retried(error: openai.OpenAIError) -> None:
    assert not isinstance(classify_llm_error(error), (TerminalError, RetryableError))
