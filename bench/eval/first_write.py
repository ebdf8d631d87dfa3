"""The agent's first model round on HumanEval cases, and nothing else: a fast probe of the
prompt and the tool-call format (about 6 minutes for HumanEval/0-39 with the 1.5B, against
40 for the whole eval).

    .venv/bin/python -m bench.eval.first_write --base-url http://127.0.0.1:9090/v1
    .venv/bin/python -m bench.eval.first_write --base-url URL --cases humaneval:0-9 --model-name NAME

The request is the one the product sends for a one-step request's first round (the loop's
system prompt, the step's prompt, the tools in structured mode: app/llm.py's rendering and
`response_format`), at temperature 0. Its `write_file` is judged by the case's hidden test
(bench/eval/judge.py); `tools.python_notes` says whether the write's result would have told the
model that the file does not parse or holds a stub. One line per case, then the totals.

Not the agent's pass rate (later rounds fix or break things): what its first write is worth.

`--rewrites N` also plays the finish check's rewrites (app/finish_check.py): while a write's
docstring examples fail (`python3 -m doctest`, as the finish check runs them), ask for the file
again with the rewrite's own request, at most N times (the product makes up to
MAX_REWRITES); the case's verdict is then the last write's. It shows what the rewrites add,
in minutes rather than a whole eval.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import time

import openai

from app import tools
from app.llm import _structured_messages
from app.finish_check import MAX_REWRITES, REWRITE_AGAIN, REWRITE_SYSTEM, REWRITE_TEMPERATURES, code_in, rewrite_prompt
from app.loop import SYSTEM_PROMPT, step_prompt
from app.models import PlanStep
from app.structured_tools import StructuredAnswerError, response_format_for, to_tool_calls
from app.task import step_context
from app.validation import workspace_relative
from bench.eval.cases import SOLUTION_FILE, parse_selection
from bench.eval.judge import judge
from bench.eval.own_cases import OWN_CASES

MAX_TOKENS = 2048  # the offline model's answer room with its 8,192-token window
EXAMPLES_COMMAND = f"python3 -m doctest {SOLUTION_FILE}"
RUN_EXAMPLES = f"import subprocess, sys\nsys.exit(subprocess.run({EXAMPLES_COMMAND.split()!r}).returncode)\n"
REPORT_LINES = 200


def first_round(case_message: str) -> list[dict]:
    """The messages of a one-step request's first round, before the structured-mode rendering."""
    step = PlanStep(title=case_message.strip().splitlines()[0][:120])
    context = step_context(f"user: {case_message}", [step], [])
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": step_prompt(context, 1, step, [])}]  # the workspace is empty


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.eval.first_write", description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="a llama.cpp server that is already running")
    parser.add_argument("--model-name", default="local")
    parser.add_argument("--cases", default="humaneval:0-39")
    parser.add_argument("--rewrites", type=int, default=0,
                        help=f"rewrites per case while the examples fail (the product makes up to {MAX_REWRITES})")
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key="unused", max_retries=0, timeout=600)
    counts = {"pass": 0, "fail": 0, "no write": 0, "noted": 0, "first pass": 0}
    for case in parse_selection(args.cases, OWN_CASES):
        started = time.monotonic()
        first = first_round(case.message)
        written, tokens = ask(client, args.model_name, first)
        verdicts: list[str] = []
        for rewrite in range(args.rewrites + 1):
            if written is None:
                verdict, notes, examples = "no write", [], None
            else:
                verdict = "pass" if judge({SOLUTION_FILE: written}, case.hidden_test).passed else "fail"
                notes = tools.python_notes(SOLUTION_FILE, written)
                examples = judge({SOLUTION_FILE: written}, RUN_EXAMPLES, lines=REPORT_LINES)
            verdicts.append(verdict + ("*" if examples is not None and not examples.passed else ""))
            if examples is None or examples.passed or rewrite == args.rewrites:
                break
            code, used = rewritten(client, args.model_name, first[1]["content"], examples.detail, rewrite + 1)
            tokens += used
            written = code if code is not None else written
        wall = time.monotonic() - started
        counts[verdict] += 1
        counts["noted"] += bool(notes)
        counts["first pass"] += verdicts[0].startswith("pass")
        print(f"{case.name}\t{verdict}{' (noted)' if notes else ''}\t{' '.join(verdicts)}\t{wall:.1f} s\t{tokens} tokens",
              flush=True)
    total = sum(counts[k] for k in ("pass", "fail", "no write"))
    print(f"first writes that pass: {counts['first pass']}/{total}; after up to {args.rewrites} rewrite(s): "
          f"pass {counts['pass']}, fail {counts['fail']}, no write {counts['no write']}; "
          f"a note on the last write's result: {counts['noted']} (* = its examples failed)")
    return 0


def ask(client: openai.OpenAI, model: str, messages: list[dict]) -> tuple[str | None, int]:
    """One structured-mode round at temperature 0: the content of its write of solution.py
    (None: no such write), and the tokens it took."""
    answer = client.chat.completions.create(
        model=model, temperature=0, max_tokens=MAX_TOKENS,
        messages=_structured_messages(messages, tools.SCHEMAS),
        response_format=response_format_for(tools.SCHEMAS),
    )
    tokens = answer.usage.completion_tokens if answer.usage else 0
    try:
        call = to_tool_calls(answer.choices[0].message.content or "", "probe")[0]["function"]
        written = json.loads(call["arguments"]) if call["name"] == "write_file" else {}
    except (StructuredAnswerError, ValueError):
        written = {}
    path = written.get("path")
    if isinstance(path, str):  # `/project/x` and `./x` are `x`, as for the tool
        path = posixpath.normpath(workspace_relative(path))
    if path != SOLUTION_FILE or not isinstance(written.get("content"), str):
        return None, tokens
    return written["content"], tokens


def rewritten(client: openai.OpenAI, model: str, request: str, report: str, number: int) -> tuple[str | None, int]:
    """The finish check's rewrite request number `number` (app/finish_check.py): its code, if any."""
    prompt = rewrite_prompt(request, SOLUTION_FILE, report, syntax=False)
    if number > 1:
        prompt += REWRITE_AGAIN.format(number=number)
    temperature = REWRITE_TEMPERATURES[number - 1]
    answer = client.chat.completions.create(
        model=model, temperature=0 if temperature is None else temperature, max_tokens=MAX_TOKENS,
        messages=[{"role": "system", "content": REWRITE_SYSTEM}, {"role": "user", "content": prompt}],
    )
    tokens = answer.usage.completion_tokens if answer.usage else 0
    return code_in(answer.choices[0].message.content or ""), tokens


if __name__ == "__main__":
    raise SystemExit(main())
