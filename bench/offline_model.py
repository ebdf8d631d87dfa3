"""Offline model speed: load time, time to first token, prompt and generation tokens/s, memory.

    python -m bench.offline_model [--reps 3] [--sizes 1.5b,0.5b]

Each repetition starts with a different line so the prompt cache cannot hide prompt processing;
one more request repeats the last prompt to show what the cache saves. Numbers come from the
server's own `timings`; CPU speed swings with other load, so the load average is printed too.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

from openai import OpenAI

from app.config import settings
from app.structured_tools import response_format_for, to_tool_calls, tool_prompt
from stack import model_server

TOOLS = [
    {"type": "function", "function": {"name": "write_file", "description": "Write a file.", "parameters": {
        "type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["path", "content"]}}},
    {"type": "function", "function": {"name": "run", "description": "Run a shell command.", "parameters": {
        "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}},
]
SYSTEM = "You are a coding agent working in a sandbox. Be brief."
TASK = "Write a Python function fib(n) returning the n-th Fibonacci number, with a docstring and two tests."


def measure(client: OpenAI, first_line: str, max_tokens: int = 128) -> dict[str, float]:
    started = time.monotonic()
    first_token = None
    timings: dict = {}
    stream = client.chat.completions.create(
        model="local", temperature=0, max_tokens=max_tokens, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "system", "content": f"{first_line}\n{SYSTEM}"}, {"role": "user", "content": TASK}],
    )
    for chunk in stream:
        if first_token is None and chunk.choices and chunk.choices[0].delta.content:
            first_token = time.monotonic() - started
        timings = (chunk.model_extra or {}).get("timings") or timings
    return {"ttft": first_token or float("nan"), "prompt_n": timings["prompt_n"], "cache_n": timings["cache_n"],
            "prompt_tps": timings["prompt_per_second"], "gen_n": timings["predicted_n"],
            "gen_tps": timings["predicted_per_second"]}


def tool_round(client: OpenAI) -> tuple[float, int]:
    """One structured agent round, the schema-constrained call for hello.py: (seconds, tokens)."""
    started = time.monotonic()
    answer = client.chat.completions.create(
        model="local", temperature=0, max_tokens=200, response_format=response_format_for(TOOLS),
        messages=[{"role": "system", "content": f"{SYSTEM}\n{tool_prompt(TOOLS)}"},
                  {"role": "user", "content": "Create hello.py that prints hello."}],
    )
    to_tool_calls(answer.choices[0].message.content or "", "bench")
    return time.monotonic() - started, answer.usage.completion_tokens


def rss_mib(pid: int) -> tuple[float, float]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def bench(size: str, reps: int) -> dict[str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = settings().model_copy(update={"local_model": size, "local_model_port": port})
    log = Path(tempfile.mkdtemp()) / f"model-{size}.log"
    started = time.monotonic()
    proc = model_server.start(config, log)
    try:
        model_server.wait_ready(port, 300, proc=proc, log_path=log)
        load = time.monotonic() - started
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        cpu_before, server_before = cpu_times(), process_ticks(proc.pid)
        runs = [measure(client, f"Request {i}.") for i in range(reps)]
        cached = measure(client, f"Request {reps - 1}.")
        rounds = [tool_round(client) for _ in range(reps)]
        rss, peak = rss_mib(proc.pid)
        spent = [b - a for a, b in zip(cpu_before, cpu_times())]
        others = sum(spent) - spent[3] - spent[4] - spent[7] - (process_ticks(proc.pid) - server_before)
    finally:
        model_server.stop(proc)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    return {
        "model": f"Qwen2.5-Coder-{size.upper()} Q4_K_M", "load s": f"{load:.1f}",
        "TTFT s": f"{med('ttft'):.2f}", "prompt tok": f"{med('prompt_n'):.0f}",
        "prompt tok/s": f"{med('prompt_tps'):.0f}", "gen tok/s": f"{med('gen_tps'):.1f}",
        "TTFT cached s": f"{cached['ttft']:.2f} ({cached['cache_n']} cached)",
        "tool call s (tok)": f"{statistics.median(r[0] for r in rounds):.1f} ({rounds[0][1]})", "RSS MiB": f"{rss:.0f} (peak {peak:.0f})",
        # The model wants both CPUs; anything else running (a test suite, a build) slows it.
        "CPU to others": f"{100 * others / sum(spent):.0f}%", "steal": f"{100 * spent[7] / sum(spent):.0f}%",
    }


def cpu_times() -> list[int]:
    """user nice system idle iowait irq softirq steal, in ticks, summed over all CPUs."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def process_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.offline_model")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sizes", default="1.5b,0.5b")
    args = parser.parse_args()
    config = settings()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = [bench(size, args.reps) for size in args.sizes.split(",")]
    print(f"Offline model, {config.local_model_threads} threads, ctx {config.local_model_ctx}, "
          f"{os.cpu_count()} CPUs, median of {args.reps}; load average before {load_before}. "
          "'CPU to others' is the share of all CPU time other processes used while measuring, "
          "'steal' what the hypervisor gave to other guests.\n")
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(row.values()) + " |")
    print(f"\nPrompt: system line + {SYSTEM!r}, user {TASK!r}; 128 generated tokens, temperature 0. "
          "'tool call s' is one schema-constrained round (hello.py) end to end.")


if __name__ == "__main__":
    main()
