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
"""

from __future__ import annotations

import argparse
import json
import time

import openai

from app import tools
from app.llm import _structured_messages
from app.loop import SYSTEM_PROMPT, step_prompt
from app.models import PlanStep
from app.structured_tools import StructuredAnswerError, response_format_for, to_tool_calls
from app.task import step_context
from bench.eval.cases import SOLUTION_FILE, parse_selection
from bench.eval.judge import judge
from bench.eval.own_cases import OWN_CASES

MAX_TOKENS = 2048  # the offline model's answer room with its 8,192-token window


def first_round(case_message: str) -> list[dict]:
    """The messages of a one-step request's first round, before the structured-mode rendering."""
    step = PlanStep(title=case_message.strip().splitlines()[0][:120])
    context = step_context(f"user: {case_message}", [step], [])
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": step_prompt(context, 1, step)}]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.eval.first_write", description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="a llama.cpp server that is already running")
    parser.add_argument("--model-name", default="local")
    parser.add_argument("--cases", default="humaneval:0-39")
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key="unused", max_retries=0, timeout=600)
    counts = {"pass": 0, "fail": 0, "no write": 0, "noted": 0}
    for case in parse_selection(args.cases, OWN_CASES):
        started = time.monotonic()
        answer = client.chat.completions.create(
            model=args.model_name, temperature=0, max_tokens=MAX_TOKENS,
            messages=_structured_messages(first_round(case.message), tools.SCHEMAS),
            response_format=response_format_for(tools.SCHEMAS),
        )
        wall = time.monotonic() - started
        try:
            call = to_tool_calls(answer.choices[0].message.content or "", "probe")[0]["function"]
            written = json.loads(call["arguments"]) if call["name"] == "write_file" else {}
        except (StructuredAnswerError, ValueError):
            written = {}
        if written.get("path") != SOLUTION_FILE or not isinstance(written.get("content"), str):
            verdict, notes = "no write", []
        else:
            verdict = "pass" if judge({SOLUTION_FILE: written["content"]}, case.hidden_test).passed else "fail"
            notes = tools.python_notes(SOLUTION_FILE, written["content"])
        counts[verdict] += 1
        counts["noted"] += bool(notes)
        tokens = answer.usage.completion_tokens if answer.usage else 0
        print(f"{case.name}\t{verdict}{' (noted)' if notes else ''}\t{wall:.1f} s\t{tokens} tokens", flush=True)
    total = sum(counts[k] for k in ("pass", "fail", "no write"))
    print(f"first writes that pass: {counts['pass']}/{total}; fail: {counts['fail']}; no write: "
          f"{counts['no write']}; a note on the write's result: {counts['noted']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
