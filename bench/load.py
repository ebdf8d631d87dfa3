"""Load: hundreds of sessions at once, per topology, against raw Restate doing the same journal work.

    .venv/bin/python -m bench.load                                  # 50, 200, 500 sessions × 1x1, 1xN
    .venv/bin/python -m bench.load --sessions 50 --topologies 1x1   # a quick look

Every session sends one message; its scripted task (tests/fakes/load_scripts.py) plans, then
runs 3 rounds of a file write plus one `true` command that appends to runs.txt. Per topology
(nodes x workers) and session count it reports tasks/s, model rounds/s, message→idle
percentiles, errors, peak RSS and CPU per process group, and peak live sandboxes; then the same
number of concurrent `Bench.journal_work` invocations (bench/bench_app.py) doing the steps,
calls and sends one real task journals (counted first from a task, with journal retention on),
so the product's throughput is a ratio to the engine's. Afterwards every session is checked
through the public APIs: the task done, no outcome-unknown result, each file there, runs.txt
holding each command once.

Topologies start through `start_topology`: 1 node + 1 worker as `make run`, the others as `make cluster`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import BENCH_APP, CpuShare, load_average, log, machine, temp_dir, wait_for_quiet
from stack import processes
from stack.processes import http_client
from tests.fakes.load_scripts import expected_files, expected_runs
from tests.harness import ClusterStack, Stack

SCRIPT = "tests.fakes.load_scripts:load"
ROUNDS = 3
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


# --- topologies ----------------------------------------------------------------------------------


@dataclass
class Topology:
    """A running product: where to send requests, and which process groups play which role."""

    name: str
    ingress_urls: list[str]
    admin_port: int
    groups: dict[str, list[int]]  # role ("restate", "worker", "model") -> process group ids
    data_dir: Path
    logs: Path


@contextmanager
def start_topology(root: Path, nodes: int, workers: int) -> Iterator[Topology]:
    """Start `nodes` restate-servers and `workers` worker processes serving the benchmark app,
    with the scripted LLM; stop them all afterwards. The one place a topology is made: 1 + 1 is
    `make run`'s shape (tests/harness.py Stack), anything else `make cluster`'s (ClusterStack:
    the cluster of cluster/ and workers sharing one socket)."""
    # Commands are `true`: let the cap be no bottleneck, so the table measures the platform.
    env = {"AGENT_CHECKPOINTS": "every", "SANDBOX_MAX_RUNNING_COMMANDS": "64"}
    name = f"{nodes} node{'s' if nodes > 1 else ''} + {workers} worker{'s' if workers > 1 else ''}"
    if nodes == 1 and workers == 1:
        with Stack(root, SCRIPT, env=env, app=BENCH_APP) as stack:
            assert stack.restate and stack.worker and stack.llm.proc
            yield Topology(name=name, ingress_urls=[f"http://{processes.HOST}:{stack.ingress_port}"],
                           admin_port=stack.admin_port,
                           groups={"restate": [stack.restate.pid], "worker": [stack.worker.pid],
                                   "model": [stack.llm.proc.pid]},
                           data_dir=stack.data_dir, logs=stack.logs)
        return
    with ClusterStack(root, SCRIPT, nodes=nodes, workers=workers, env=env, app=BENCH_APP) as cluster:
        assert cluster.llm.proc and all(cluster.node_procs) and all(cluster.workers)
        yield Topology(name=name,
                       ingress_urls=[f"http://{processes.HOST}:{node.ingress_port}" for node in cluster.nodes],
                       admin_port=cluster.admin_port,
                       groups={"restate": [p.pid for p in cluster.node_procs if p],
                               "worker": [p.pid for p in cluster.workers if p],
                               "model": [cluster.llm.proc.pid]},
                       data_dir=cluster.data_dir, logs=cluster.logs)


# --- watching the processes ----------------------------------------------------------------------


def _procs() -> Iterator[tuple[int, list[str]]]:
    """(pgid, stat fields after the command name) of every process."""
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_file.read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        yield int(fields[2]), fields


def cpu_seconds(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far per role, and by the sandbox commands the workers reaped."""
    by_group = {pgid: role for role, pgids in groups.items() for pgid in pgids}
    used = {role: 0.0 for role in groups} | {"sandbox commands": 0.0}
    for pgid, f in _procs():
        if (role := by_group.get(pgid)) is not None:
            used[role] += (int(f[11]) + int(f[12])) / TICK  # utime + stime
            if role == "worker":  # children it waited for: the commands (bwrap and below)
                used["sandbox commands"] += (int(f[13]) + int(f[14])) / TICK
    return used


@dataclass
class Sampler:
    """Samples RSS per role and live sandboxes every `interval` seconds; keeps the peaks."""

    topology: Topology
    interval: float = 1.0
    peak_rss: dict[str, int] = field(default_factory=dict)
    peak_sandboxes: int = 0
    peak_commands: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        by_group = {pgid: role for role, pgids in self.topology.groups.items() for pgid in pgids}
        root = self.topology.data_dir / "sandboxes"
        while not self._stop.wait(self.interval):
            rss = dict.fromkeys(self.topology.groups, 0)
            for pgid, f in _procs():
                if (role := by_group.get(pgid)) is not None:
                    rss[role] += int(f[21]) * PAGE  # rss, in pages
            for role, value in rss.items():
                self.peak_rss[role] = max(self.peak_rss.get(role, 0), value)
            live = sum(1 for meta in root.glob("*/meta.json") if '"gone":null' in meta.read_text())
            self.peak_sandboxes = max(self.peak_sandboxes, live)
            self.peak_commands = max(self.peak_commands, sum(1 for _ in root.glob("*/ops/*.json")))


# --- the load ------------------------------------------------------------------------------------


RETRIED: list[str] = []  # transport errors a session's client met and retried (reported per row)


async def _retrying(request: Callable[[], Awaitable[httpx.Response]], what: str) -> httpx.Response:
    """`request`, again after a transport error (a dropped connection), as a careful client does:
    every request here is safe to repeat (the message carries an idempotency key)."""
    for attempt in range(10):
        try:
            return await request()
        except httpx.TransportError as error:
            RETRIED.append(f"{what}: {error!r}")
            await asyncio.sleep(0.2 * (attempt + 1))
    return await request()


async def _session(client: httpx.AsyncClient, base: str, session: str) -> float | str:
    """Send the message and wait until the session is idle: seconds, or what went wrong."""
    started = time.monotonic()
    answer = await _retrying(lambda: client.post(f"{base}/Agent/{session}/message", json={"text": f"rounds={ROUNDS}"},
                                                 headers={"idempotency-key": f"load-{session}"}), "message")
    if answer.status_code != 200:
        return f"message: {answer.status_code} {answer.text[:200]}"
    task_id = answer.json()["task_id"]
    # The Agent starts the Task with a one-way send: in a cluster the Task's partition may be led
    # by another node and learn of it a moment after `message` answered; until then an attach
    # finds no such workflow (404).
    deadline = time.monotonic() + 60
    while (done := await _retrying(lambda: client.get(f"{base}/restate/workflow/Task/{task_id}/attach"),
                                   "attach")).status_code == 404 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if done.status_code != 200 or done.json().get("status") != "done":
        return f"task: {done.status_code} {done.text[:200]}"
    while (await _retrying(lambda: client.post(f"{base}/Agent/{session}/status"), "status")).json()["state"] != "idle":
        await asyncio.sleep(0.05)  # the task reports to the Agent one-way, a moment later
    return time.monotonic() - started


async def _check(client: httpx.AsyncClient, base: str, session: str) -> str | None:
    """Through the public APIs only: every file there, each command once, no unknown outcome."""
    async def read(path: str) -> str | None:
        answer = await client.post(f"{base}/Sandbox/{session}/read_file", json={"path": path})
        return answer.json()["content"] if answer.status_code == 200 else None

    if (runs := await read("runs.txt")) != expected_runs(ROUNDS):
        return f"runs.txt is {runs!r}"
    for path, content in expected_files(ROUNDS).items():
        if (found := await read(path)) != content:
            return f"{path} is {found!r}"
    events = (await client.post(f"{base}/Events/{session}/read", json={"after": 0, "limit": 500})).json()["events"]
    if unknown := [e for e in events if e["kind"] == "tool_result" and "outcome unknown" in e["text"]]:
        return f"{len(unknown)} outcome-unknown result(s)"
    return None


def _client(concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency + 10, max_keepalive_connections=concurrency + 10)
    return httpx.AsyncClient(timeout=900, limits=limits, trust_env=False)


# Bad input sent while the sessions run: (what, method path, body, content-type). Each must get a
# 4xx and change nothing; the sessions' own checks afterwards show that nothing else was touched.
BAD_INPUT = [
    ("malformed JSON", "Agent/bad-json/message", b'{"text": "unterminated', "application/json"),
    ("missing field", "Agent/bad-field/message", b'{"txt": "typo"}', "application/json"),
    ("oversize message", "Agent/bad-size/message", b'{"text": "' + b"x" * 20_000 + b'"}', "application/json"),
    ("unknown session", "Agent/never-created/history", b"", ""),
    ("path traversal", "Sandbox/{session}/read_file", b'{"path": "../../etc/passwd"}', "application/json"),
    ("private handler", "Sandbox/{session}/exec", b'{"op_id": "x", "command": "id"}', "application/json"),
]


async def _bad_input(client: httpx.AsyncClient, urls: list[str], session: str,
                     done: asyncio.Event) -> tuple[int, list[str]]:
    """Send BAD_INPUT round and round until `done`: how many were sent, and what did not get a
    4xx (nothing, we hope)."""
    wrong: list[str] = []
    sent = 0
    while not done.is_set() or sent == 0:
        for what, path, body, content_type in BAD_INPUT:
            url = f"{urls[sent % len(urls)]}/{path.format(session=session)}"
            headers = {"content-type": content_type} if content_type else {}
            try:
                response = await client.post(url, content=body, headers=headers)
                if not 400 <= response.status_code < 500:
                    wrong.append(f"bad input ({what}): {response.status_code} {response.text[:120]}")
            except httpx.HTTPError as error:
                wrong.append(f"bad input ({what}): {error!r}")
            sent += 1
        await asyncio.sleep(0.5)
    return sent, wrong


async def _run_sessions(topology: Topology, prefix: str, count: int,
                        bad_input: bool = True) -> tuple[list[float], list[str], float, int]:
    """Run `count` sessions at once (and, with `bad_input`, bad requests beside them): the
    sessions' message→idle times, every error, the wall time, and how many bad requests went."""
    urls = topology.ingress_urls
    sessions = [f"{prefix}-{i}" for i in range(count)]
    async with _client(count) as client:
        started = time.monotonic()
        done = asyncio.Event()
        bad = asyncio.create_task(_bad_input(client, urls, sessions[0], done)) if bad_input else None
        results = await asyncio.gather(*(_session(client, urls[i % len(urls)], s) for i, s in enumerate(sessions)))
        wall = time.monotonic() - started
        done.set()
        bad_sent, bad_results = await bad if bad is not None else (0, [])
        errors = [f"{s}: {r}" for s, r in zip(sessions, results) if isinstance(r, str)]
        checks = await asyncio.gather(*(_check(client, urls[i % len(urls)], s) for i, s in enumerate(sessions)))
        errors += [f"{s}: {c}" for s, c in zip(sessions, checks) if c is not None]
        errors += bad_results
    return [r for r in results if isinstance(r, float)], errors, wall, bad_sent


async def _run_raw(topology: Topology, count: int, work: dict[str, int]) -> tuple[float, list[str]]:
    urls = topology.ingress_urls
    async with _client(count) as client:
        started = time.monotonic()
        answers = await asyncio.gather(*(client.post(f"{urls[i % len(urls)]}/Bench/journal_work", json=work)
                                         for i in range(count)))
        wall = time.monotonic() - started
    return wall, [f"raw: {a.status_code} {a.text[:200]}" for a in answers if a.status_code != 200]


def journal_work_of_a_task(root: Path) -> dict[str, int]:
    """The steps, calls and one-way sends one task journals, across every invocation it causes,
    counted from Restate's own journal of a real task (journal retention on for the count)."""
    with start_topology(root, 1, 1) as topology:
        for service in ("Agent", "Task", "Sandbox", "Events", "Snapshots"):
            http_client().patch(f"http://{processes.HOST}:{topology.admin_port}/services/{service}",
                                json={"journal_retention": "1h"}).raise_for_status()
        latencies, errors, _, _ = asyncio.run(_run_sessions(topology, "count", 1, bad_input=False))
        if errors:
            raise RuntimeError(f"the counting task failed: {errors}")
        rows = processes.admin_query(topology.admin_port, (
            "SELECT entry_type, count(*) AS n FROM sys_journal j JOIN sys_invocation i ON j.id = i.id "
            "WHERE i.target_handler_name != 'status' GROUP BY entry_type"))
    counts = {r["entry_type"]: r["n"] for r in rows}
    return {"steps": counts.get("Command: Run", 0), "calls": counts.get("Command: Call", 0),
            "sends": counts.get("Command: OneWayCall", 0)}


# --- one configuration ---------------------------------------------------------------------------


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] if ordered else float("nan")


def _log_problems(logs: Path) -> dict[str, int]:
    """Counts of the lines that mark dropped connections, over every restate-server's log (one
    node: restate.log; a cluster: node-1.log ...)."""
    text = "".join(path.read_text(errors="replace") for path in sorted(logs.glob("*.log"))
                   if path.name == "restate.log" or path.name.startswith("node-"))
    return {what: text.count(what) for what in ("broken pipe", "h2 pool connection error", "Connection refused")}


def run_configuration(root: Path, nodes: int, workers: int, count: int, work: dict[str, int]) -> list[str]:
    """One row of the table: the product under `count` sessions, then raw Restate."""
    with start_topology(root, nodes, workers) as topology:
        log(f"{topology.name}, {count} sessions: stack up (logs in {topology.logs})")
        requests_before = len(_llm_requests(topology))
        cpu_before, clock, driver = cpu_seconds(topology.groups), time.monotonic(), time.process_time()
        with Sampler(topology) as sampler:
            retried_before = len(RETRIED)
            latencies, errors, wall, bad_sent = asyncio.run(_run_sessions(topology, "s", count))
            retried = len(RETRIED) - retried_before
            for what in RETRIED[retried_before:][:5]:
                log(f"retried: {what}")
        cpu = {k: v - cpu_before[k] for k, v in cpu_seconds(topology.groups).items()}
        cpu["benchmark driver"] = time.process_time() - driver
        elapsed = time.monotonic() - clock
        rounds = len(_llm_requests(topology)) - requests_before
        raw_wall, raw_errors = asyncio.run(_run_raw(topology, count, work))
        problems = _log_problems(topology.logs)
    errors += raw_errors
    for error in errors[:10]:
        log(f"error: {error}")
    tasks_s, raw_s = count / wall, count / raw_wall
    busy = sum(cpu.values())
    split = ", ".join(f"{role} {seconds / busy:.0%}" for role, seconds in cpu.items()) if busy else "–"
    mb = {role: f"{value / 2**20:.0f}" for role, value in sampler.peak_rss.items()}
    return [topology.name, str(count), f"{tasks_s:.2f}", f"{rounds / wall:.1f}",
            " / ".join(f"{percentile(latencies, q):.1f}" for q in (0.5, 0.95, 0.99)),
            str(len(errors)), mb.get("restate", "–"), mb.get("worker", "–"),
            f"{busy / elapsed:.2f} cores: {split}", str(sampler.peak_sandboxes),
            f"{raw_s:.1f}", f"{tasks_s / raw_s:.0%}",
            f"{bad_sent - sum(e.startswith('bad input') for e in errors)}/{bad_sent}", str(retried),
            ", ".join(f"{k} {v}" for k, v in problems.items() if v) or "none"]


def _llm_requests(topology: Topology) -> list[str]:
    path = topology.logs.parent / "llm-requests.jsonl"
    return path.read_text().splitlines() if path.exists() else []


HEAD = ["topology", "sessions", "tasks/s", "model rounds/s", "message→idle p50 / p95 / p99 (s)", "errors",
        "peak RSS restate (MB)", "peak RSS workers (MB)", "CPU (cores used: split)", "peak live sandboxes",
        "raw Restate tasks/s", "product / raw", "bad input → 4xx", "client retries", "restate-server log"]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="50,200,500", help="comma-separated session counts (default 50,200,500)")
    parser.add_argument("--topologies", default="1x1,1xN,3xN",
                        help="comma-separated NODESxWORKERS, N meaning --workers (default 1x1,1xN,3xN)")
    parser.add_argument("--workers", type=int, default=2, help="N (default 2: one per core here)")
    parser.add_argument("--quiet-wait", type=float, default=30.0, metavar="S",
                        help="before each configuration, wait up to S seconds for a quiet machine (default 30)")
    args = parser.parse_args()
    counts = [int(c) for c in args.sessions.split(",")]
    shapes = [(int(n), args.workers if w == "N" else int(w))
              for n, w in (t.split("x") for t in args.topologies.split(","))]
    started = time.monotonic()
    print(f"## Load\n\n{machine()}\n", flush=True)
    with temp_dir("load") as root:
        work = journal_work_of_a_task(root / "count")
        print(f"One task's journal work (counted from a real task): {work['steps']} steps, {work['calls']} calls, "
              f"{work['sends']} one-way sends; `Bench.journal_work` repeats it for the raw column.\n", flush=True)
        rows, notes = [], []
        for nodes, workers in shapes:
            for count in counts:
                before = wait_for_quiet(args.quiet_wait)
                with CpuShare() as share:
                    rows.append(run_configuration(root / f"{nodes}x{workers}-{count}", nodes, workers, count, work))
                notes.append(f"- {rows[-1][0]}, {count} sessions: before it, {before}; {share.summary}.")
                log(" | ".join(rows[-1]))
    print("| " + " | ".join(HEAD) + " |\n|" + "---|" * len(HEAD))
    for row in rows:
        print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    print("\n" + "\n".join(notes))
    print(f"\n_Took {time.monotonic() - started:.0f} s; load average at the end {load_average()}._")


if __name__ == "__main__":
    main()
