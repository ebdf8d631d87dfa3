"""Wall time of the hello task through the whole durable stack, per offline model.

    .venv/bin/python -m bench.offline_hello [--runs N]

For each model (1.5B, 0.5B): start its llama.cpp server, a real restate-server and worker
(tests/harness.py's Stack), send "create hello.py that prints hello, then run it", and time
message → idle. Reports model rounds, tokens, and whether the task really succeeded (hello.py
exists and a recorded command printed hello), at temperature 0.
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
        base_url, _, name, mode = config.llm_endpoint()
        env = {"OPENAI_BASE_URL": base_url, "AGENT_MODEL": name, "AGENT_TOOL_MODE": mode,
               "AGENT_TEMPERATURE": "0", "AGENT_MAX_STEPS": "3", "AGENT_MAX_ROUNDS": "6"}
        walls, rounds, tokens, ok = [], [], [], 0
        with Stack(root / "stack", "echo", env=env) as stack:
            for run in range(runs):
                session = f"hello{run}"
                started = time.monotonic()
                send_message(stack, session, TASK)
                final = wait_idle(stack, session, timeout=900)
                walls.append(time.monotonic() - started)
                usage = final["last_usage"] or {}
                rounds.append(usage.get("rounds", 0))
                tokens.append(usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0))
                ok += _succeeded(stack, session)
        return {"size": size, "runs": runs, "wall": statistics.median(walls), "wall_max": max(walls),
                "rounds": statistics.median(rounds), "tokens": statistics.median(tokens), "ok": ok}
    finally:
        model_server.stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    rows = [measure(size, args.runs) for size in ("1.5b", "0.5b")]
    print(f"Hello task through the durable stack, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}, "
          f"median of {args.runs} runs, temperature 0\n")
    print("| model | wall s (median) | wall s (max) | model rounds | tokens | succeeded |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| Qwen2.5-Coder-{r['size'].upper()} | {r['wall']:.1f} | {r['wall_max']:.1f} | {r['rounds']:.0f} | "
              f"{r['tokens']:.0f} | {r['ok']}/{r['runs']} |")


if __name__ == "__main__":
    main()
