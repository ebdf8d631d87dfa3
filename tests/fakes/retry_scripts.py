"""A model that fails the way real providers do before it answers, for the retry-policy test.

Step 1's first round is answered, attempt by attempt: 503 without Retry-After `FLAKY_503S`
times (the step's own exponential backoff must space these out), then 429 with
`Retry-After: RETRY_AFTER_S` (the provider's delay must be honoured), then 408 (a request
timeout: retryable, as the openai client itself treats it), then the answer.
"""

from __future__ import annotations

from tests.fakes.scripts import error, finish, scripted

FLAKY_503S = 4
RETRY_AFTER_S = 2.0

flaky_provider = scripted(
    plan=[("Say done", "Finish at once.")],
    step_actions={1: [[
        *[error(503, message="overloaded") for _ in range(FLAKY_503S)],
        error(429, retry_after=RETRY_AFTER_S, message="slow down"),
        error(408, message="request timed out"),
        finish("done after the provider recovered"),
    ]]},
)
