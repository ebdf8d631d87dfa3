"""Wall time of the hello task through the whole durable stack, per offline model.

    .venv/bin/python -m bench.offline_hello [--runs N] [--sizes 1.5b,0.5b]

For each model: start its llama.cpp server, a real restate-server and a worker configured as the
product runs offline (no key, no base URL: every offline default applies), send "create hello.py
that prints hello, then run it", and time message → idle and message → plan. Reports model
rounds, tokens, and whether the task really succeeded (hello.py exists and a recorded command
printed hello). LOCAL_MODEL_THREADS and LOCAL_MODEL_DRAFT are read from the environment.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from app.config import Settings
from stack import model, model_server
from tests.client import free_port
from tests.agent_helpers import events, send_message, try_read_file, wait_idle
from tests.harness import Stack

TASK = "create hello.py that prints hello, then run it"


def _succeeded(stack: Stack, session: str) -> bool:
    if "hello" not in (try_read_file(stack, session, "hello.py") or "").lower():
        return False
    results = [e["detail"] or "" for e in events(stack, session, "tool_result")]
    return any(r.startswith("exit code: 0") and "hello" in r.lower() for r in results)


def measure(size: str, runs: int) -> dict:
    model.ensure(size)
    root = Path(tempfile.mkdtemp(prefix=f"bench-hello-{size}-"))
    config = Settings(local_model=size, local_model_port=free_port())
    server = model_server.start(config, root / "model.log")
    try:
        model_server.wait_ready(config.local_model_port, 300, proc=server, log_path=root / "model.log")
        # The worker as the product runs offline (no key, no base URL): every offline default applies.
        env = {"OPENAI_BASE_URL": "", "OPENAI_API_KEY": "", "LOCAL_MODEL": size,
               "LOCAL_MODEL_PORT": str(config.local_model_port), "LLM_TIMEOUT_S": "1800"}
        walls, rounds, tokens, plans, ok = [], [], [], [], 0
        with Stack(root / "stack", "echo", env=env) as stack:
            for run in range(runs):
                session = f"hello{run}"
                started, started_wall = time.monotonic(), time.time()
                send_message(stack, session, TASK)
                final = wait_idle(stack, session, timeout=1800)
                walls.append(time.monotonic() - started)
                plans.append(events(stack, session, "plan")[0]["time"] - started_wall)
                usage = final["last_usage"] or {}
                rounds.append(usage.get("rounds", 0))
                tokens.append(usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0))
                ok += _succeeded(stack, session)
        return {"size": size, "runs": runs, "wall": statistics.median(walls), "wall_max": max(walls),
                "plan": statistics.median(plans),
                "rounds": statistics.median(rounds), "tokens": statistics.median(tokens), "ok": ok}
    finally:
        model_server.stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--sizes", default="1.5b,0.5b")
    args = parser.parse_args()
    load_start = Path("/proc/loadavg").read_text().strip()
    rows = [measure(size, args.runs) for size in args.sizes.split(",")]
    print(f"Hello task through the durable stack, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
          f"median of {args.runs} runs, temperature 0, LOCAL_MODEL_THREADS={Settings().local_model_threads}; "
          f"/proc/loadavg at start `{load_start}`, at the end `{Path('/proc/loadavg').read_text().strip()}`\n")
    print("| model | wall s (median) | wall s (max) | message → plan s | model rounds | tokens | succeeded |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| Qwen2.5-Coder-{r['size'].upper()} | {r['wall']:.1f} | {r['wall_max']:.1f} | {r['plan']:.1f} "
              f"| {r['rounds']:.0f} | {r['tokens']:.0f} | {r['ok']}/{r['runs']} |")


if __name__ == "__main__":
    main()
