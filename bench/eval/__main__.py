"""python -m bench.eval: the agent on HumanEval/0-39 and our own multi-step cases, judged by
hidden tests, with the same model asked once directly as the baseline. See bench/README.md.

    .venv/bin/python -m bench.eval                       # the offline 1.5B, every case
    .venv/bin/python -m bench.eval --model 0.5b --cases humaneval:0-4,own:cli-flag
    .venv/bin/python -m bench.eval --base-url http://127.0.0.1:8000/v1 --model-name qwen --tool-mode structured
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import openai

from app.config import REPO_ROOT, Settings
from bench.common import CpuShare, log, machine
from bench.eval.cases import parse_selection
from bench.eval.judge import isolated
from bench.eval.own_cases import OWN_CASES
from bench.eval.report import DEFINITIONS, case_table, totals_table
from bench.eval.runner import Outcome, Runner, single_shot
from stack import model, model_server
from tests.client import free_port
from tests.harness import Stack

BENCH_APP = "bench.bench_app:app"


def evaluate(stack: Stack, cases: list, *, baseline: openai.OpenAI | None, model_name: str,
             case_timeout_s: float = 900.0, keep: Path | None = None) -> list[Outcome]:
    """Every case through the product on `stack`, and single-shot on `baseline` unless it is None.
    With `keep`, each outcome is appended there as a JSON line as soon as it is known."""
    runner = Runner(stack, case_timeout_s=case_timeout_s)
    outcomes = []
    for number, case in enumerate(cases, 1):
        outcome = runner.run_case(case)
        if baseline is not None:
            outcome.baseline = single_shot(baseline, model_name, case)
        outcomes.append(outcome)
        if keep is not None:
            with keep.open("a", encoding="utf-8") as f:
                f.write(json.dumps(asdict(outcome)) + "\n")
        base = "" if outcome.baseline is None else f"; single-shot {'pass' if outcome.baseline.passed else 'fail'} " \
                                                   f"in {outcome.baseline.wall_s:.1f} s"
        log(f"[{number}/{len(cases)}] {case.name}: {'PASS' if outcome.passed else 'FAIL'} in {outcome.wall_s:.1f} s, "
            f"{outcome.rounds} rounds, {outcome.tokens} tokens ({outcome.status}, verdict {outcome.verdict}"
            f"{', FALSE SUCCESS' if outcome.false_success else ''}){base}")
    return outcomes


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    return git("rev-parse", "--short", "HEAD") + (" (with uncommitted changes)" if git("status", "--porcelain",
                                                                                      "--untracked-files=no") else "")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(model.PINNED), default="1.5b",
                        help="the offline model to start (default 1.5b); ignored with --base-url")
    parser.add_argument("--base-url", help="an OpenAI-compatible server that is already running")
    parser.add_argument("--model-name", default="", help="the model name to send (with --base-url)")
    parser.add_argument("--tool-mode", choices=["native", "structured"], default="structured",
                        help="with --base-url: how tools are offered (default structured)")
    parser.add_argument("--context-tokens", type=int, default=None,
                        help="with --base-url: the model's context window (default 128000)")
    parser.add_argument("--cases", default="all",
                        help="humaneval:0-39 | humaneval:0,3 | own | own:cli-flag,off-by-one | all (default), "
                        "combined with spaces or ';'")
    parser.add_argument("--held-out", action="store_true", help="allow HumanEval/40+ (acceptance only)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the single-shot baseline")
    parser.add_argument("--case-timeout", type=float, default=900.0, metavar="S")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra worker setting, e.g. AGENT_MAX_ROUNDS=8 (repeatable)")
    parser.add_argument("--label", default="", help="a line saying what this run is (before/after, subset...)")
    parser.add_argument("--out", type=Path, help="also write the report here, and each case's raw result as a line of a .jsonl beside it")
    args = parser.parse_args()
    # A SIGTERM (timeout, kill) unwinds like Ctrl-C, so the stack and the model server are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        cases = parse_selection(args.cases, OWN_CASES, held_out_ok=args.held_out)
    except (ValueError, KeyError) as error:
        parser.error(str(error))

    config = Settings(local_model=args.model, local_model_port=free_port())
    root = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    server = None
    load_start, context = Path("/proc/loadavg").read_text().strip(), machine()
    commit = _commit()  # the code that runs: a commit made while the eval runs is not it
    # Counts the whole run's processes, model server included (they are started inside it).
    with CpuShare() as cpu:
        started = time.monotonic()
        try:
            if args.base_url:
                base_url, name, mode = args.base_url, args.model_name, args.tool_mode
                window = args.context_tokens or 128_000
                about = f"{name} at {base_url}, {mode} tool calls"
            else:
                log(f"starting the offline {args.model} model (log: {root / 'model.log'})")
                server = model_server.start(config, root / "model.log")
                model_server.wait_ready(config.local_model_port, 600, proc=server, log_path=root / "model.log")
                base_url, _, name, mode = config.llm_endpoint()
                about = (f"offline Qwen2.5-Coder-{args.model.upper()} Q4_K_M (llama.cpp via xllamacpp, "
                         f"{config.local_model_threads} threads, ctx {config.local_model_ctx}), {mode} tool calls")
            if server is not None:
                # The worker runs as the product does with no API key: every offline default applies.
                # On a busy machine a round can take minutes: a client timeout would only retry it.
                env = {"OPENAI_BASE_URL": "", "OPENAI_API_KEY": "", "LOCAL_MODEL": args.model,
                       "LOCAL_MODEL_PORT": str(config.local_model_port), "LOCAL_MODEL_CTX": str(config.local_model_ctx),
                       "LLM_TIMEOUT_S": "1800"}
            else:
                env = {"OPENAI_BASE_URL": base_url, "AGENT_MODEL": name, "AGENT_TOOL_MODE": mode,
                       "AGENT_TEMPERATURE": "0", "AGENT_CONTEXT_TOKENS": str(window)}
            env.update(dict(item.split("=", 1) for item in args.env))
            baseline = None if args.no_baseline else openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0,
                                                                   timeout=600)
            with Stack(root / "stack", "echo", env=env, app=BENCH_APP) as stack:
                log(f"stack up (logs in {stack.logs}); {len(cases)} case(s)")
                keep = args.out.with_suffix(".jsonl") if args.out else None
                if keep is not None:
                    keep.parent.mkdir(parents=True, exist_ok=True)
                    keep.write_text("", encoding="utf-8")
                outcomes = evaluate(stack, cases, baseline=baseline, model_name=name, case_timeout_s=args.case_timeout,
                                    keep=keep)
        finally:
            if server is not None:
                model_server.stop(server)
    elapsed = time.monotonic() - started
    report = "\n".join([
        f"## Eval: {about}", "",
        *( [f"**{args.label}**", ""] if args.label else []),
        context,
        f"- commit {commit}; cases `{args.cases}` ({len(cases)}); worker settings {json.dumps(env)}",
        f"- /proc/loadavg at start `{load_start}`, at the end `{Path('/proc/loadavg').read_text().strip()}`; "
        f"{cpu.summary}",
        f"- judged {'under bubblewrap' if isolated() else 'in a plain subprocess (no bwrap)'}; whole run {elapsed:.0f} s",
        f"- single-shot baseline: {'none (--no-baseline)' if args.no_baseline else 'every case'}",
        "", DEFINITIONS,
        "", "### Totals", "", totals_table(outcomes), "", "### Per case", "", case_table(outcomes), "",
    ])
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
