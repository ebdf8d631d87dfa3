"""A scripted "model" for the eval's smoke test (tests/test_eval_smoke.py), served by the
scripted LLM as `bench.eval.scripted:reference_agent`.

As an agent it writes the case's reference files, one write_file per round, runs nothing and
finishes: every case it is given should pass. Asked single-shot (no tools), it answers with the
function's stub returning None: HumanEval cases should fail. So one run shows the judge
telling a pass from a fail on both paths. A pure function of the request, like every script.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from bench.eval.cases import TUNING_RANGE, Case, humaneval_cases
from bench.eval.own_cases import OWN_CASES
from tests.fakes.scripted_llm import Reply
from tests.fakes.scripts import (
    current_step, finish, is_planning, make_plan, message_text, offered_tools, rounds_in_step, text, write,
)


@lru_cache(maxsize=1)
def _cases() -> list[Case]:
    return humaneval_cases(list(TUNING_RANGE)) + OWN_CASES


def _case_in(request: dict[str, Any]) -> Case | None:
    said = "\n".join(message_text(m) for m in request.get("messages", []) if m.get("role") == "user")
    return next((c for c in _cases() if c.message in said or (c.prompt and c.prompt.strip() in said)), None)


def reference_agent(request: dict[str, Any]) -> Reply:
    case = _case_in(request)
    if case is None:
        return text("I do not know this case.")
    if not offered_tools(request):  # the single-shot baseline
        return text(f"```python\n{case.prompt.rstrip()}\n    return None\n```")
    if is_planning(request):
        return make_plan([("Solve it", case.message)])
    if current_step(request) is None:
        return text("Done.")
    files = list(case.reference.items())
    done = rounds_in_step(request)
    if done < len(files):
        return write(*files[done])
    return finish(f"wrote {', '.join(name for name, _ in files)}")
