"""A scripted "model" for the eval's smoke test (tests/test_eval_smoke.py), served by the
scripted LLM as `bench.eval.scripted:reference_agent`.

As an agent it writes the files where the case's reference differs from its starting files, one
write_file per round (reading a starting file first, as an agent must before it writes over one),
runs nothing and finishes: every case it is given should pass. Asked single-shot (no tools), it
answers a HumanEval case with the function's stub returning None, which should fail, and an own
case with the same reference files, each as a fenced block under its path, which should pass.
So one run shows the judge telling a pass from a fail on both paths, and the single-shot answer
parsed into files. A pure function of the request, like every script.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from bench.eval.cases import TUNING_RANGE, Case, humaneval_cases
from bench.eval.own_cases import OWN_CASES
from tests.fakes.scripted_llm import Reply
from tests.fakes.scripts import (
    current_step, finish, is_planning, make_plan, message_text, offered_tools, read, rounds_in_step, text, write,
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
        if case.group == "humaneval":
            return text(f"```python\n{case.prompt.rstrip()}\n    return None\n```")
        return text("\n\n".join(f"{path}\n```\n{content}```" for path, content in changed_files(case)))
    if is_planning(request):
        return make_plan([("Solve it", case.message)])
    if current_step(request) is None:
        return text("Done.")
    actions = [action for path, content in changed_files(case)
               for action in ([read(path)] if path in case.files else []) + [write(path, content)]]
    done = rounds_in_step(request)
    if done < len(actions):
        return actions[done]
    return finish(f"wrote {', '.join(path for path, _ in changed_files(case))}")


def changed_files(case: Case) -> list[tuple[str, str]]:
    """The reference's files that are new or differ from the starting files."""
    return [(path, content) for path, content in case.reference.items() if case.files.get(path) != content]
