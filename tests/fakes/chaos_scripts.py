"""The chaos test's model: 24 side-effecting commands in 3 steps, each appending a unique line.

It is a pure function of the conversation, so replays after crashes get the same answers.
When a command comes back as outcome-unknown (the platform crashed while it ran), the model
does what the tool result asks: it inspects before retrying, with a command that appends the
line only if it is not there yet. Every reply is a little slow, so kills land in model calls too.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.fakes.scripts import current_step, finish, is_planning, make_plan, message_text, run, slow

STEPS = 3
LINES_PER_STEP = 8
MODEL_DELAY_S = 0.15
_LINE = re.compile(r"'line (\d+)'")


def line_text(n: int) -> str:
    return f"line {n:02d}"


def append(n: int):
    return run(f"echo '{line_text(n)}' >> lines.txt; sleep 0.6")


def reconcile(n: int):
    return run(f"grep -qx '{line_text(n)}' lines.txt || echo '{line_text(n)}' >> lines.txt")


def expected_lines(steps: int = STEPS, lines_per_step: int = LINES_PER_STEP) -> list[str]:
    return [line_text(n) for n in range(1, steps * lines_per_step + 1)]


def chaos(request: dict[str, Any]):
    return append_lines(request, STEPS, LINES_PER_STEP, MODEL_DELAY_S)


# The cluster tests' task: the same in 2 steps of 4 lines, with slower model rounds so that a
# kill can land inside one.
SHORT_STEPS, SHORT_LINES_PER_STEP, SHORT_MODEL_DELAY_S = 2, 4, 0.5


def short(request: dict[str, Any]):
    return append_lines(request, SHORT_STEPS, SHORT_LINES_PER_STEP, SHORT_MODEL_DELAY_S)


def append_lines(request: dict[str, Any], steps: int, lines_per_step: int,
                 delay_s: float = MODEL_DELAY_S):
    if is_planning(request):
        return slow(make_plan([(f"Append lines {s * lines_per_step + 1}-{(s + 1) * lines_per_step}",
                                "Append each line once") for s in range(steps)]), delay_s)
    step = current_step(request) or 1
    first = (step - 1) * lines_per_step + 1
    messages = request.get("messages", [])
    calls = [m for m in messages if m.get("role") == "assistant" and m.get("tool_calls")]
    if not calls:
        return slow(append(first), delay_s)
    last_call = json.loads(calls[-1]["tool_calls"][-1]["function"]["arguments"])
    n = int(_LINE.search(last_call["command"]).group(1))
    last_result = message_text(messages[-1]) if messages[-1].get("role") == "tool" else ""
    if "outcome unknown" in last_result:
        return slow(reconcile(n), delay_s)
    if n < first + lines_per_step - 1:
        return slow(append(n + 1), delay_s)
    return slow(finish(f"appended lines {first}-{n}"), delay_s)
