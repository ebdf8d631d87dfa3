"""The spine: what one round of our durable loop costs, next to the things it is made of.

A round is one journaled model call plus one durable call to the Sandbox object, which runs the
command as a journaled step. We time whole tasks of N rounds through the Agent and take away
what is not ours: the scripted LLM's own time per request (measured directly, same payloads)
and the bare sandbox command (LocalBackend.exec, measured directly). Beside it: a raw
`ctx.run_typed` step, a plain asyncio loop, and how long a killed worker takes to get going again.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import openai

from app.once import exec_once
from bench.common import Row, call_ok, duration, log, median, temp_dir, running_stack, table
from sandbox import LocalLimits, SandboxBackend, create_backend
from stack import processes
from tests.harness import Stack

ROUNDS = 40  # command rounds per benchmark task
TASKS = 5  # tasks of each length (N and 0 rounds)
STEPS = 200  # journaled steps per Bench.steps call
RESTARTS = 5


# --- without a stack -----------------------------------------------------------------------------


def asyncio_loop(iterations: int = 200_000, reps: int = 5) -> Row:
    async def trivial(i: int) -> int:
        return i

    async def loop() -> float:
        started = time.perf_counter()
        for i in range(iterations):
            await trivial(i)
        return time.perf_counter() - started

    samples = [asyncio.run(loop()) for _ in range(reps)]
    row = Row.of("plain asyncio loop, per iteration", samples, f"await a trivial coroutine; {reps} runs "
                 f"of {iterations:,} iterations", per=iterations)
    row.n = f"{reps}×{iterations // 1000}k"
    return row


def sandbox_commands(backend: SandboxBackend, count: int) -> tuple[list[float], list[float]]:
    """`true` through LocalBackend.exec, and the same as the Sandbox service's step runs it
    (op markers read and written around the command: app/once.py)."""
    async def measure() -> tuple[list[float], list[float]]:
        sid = (await backend.create("spine")).sandbox_id
        bare, stepped = [], []
        for _ in range(count):
            started = time.perf_counter()
            result = await backend.exec(sid, "true", 10)
            bare.append(time.perf_counter() - started)
            assert result.exit_code == 0, result
            started = time.perf_counter()
            out = await exec_once(backend, sid, f"bench/{uuid.uuid4()}", "true", 10)
            stepped.append(time.perf_counter() - started)
            assert out.exit_code == 0, out
        return bare, stepped

    return asyncio.run(measure())


# --- through the stack ---------------------------------------------------------------------------


class RequestLog:
    """Reads the scripted LLM's JSONL request log incrementally."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.partial = path, 0, b""

    def new_entries(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        return [json.loads(line) for line in lines if line.strip()]


def _is_finish(entry: dict[str, Any]) -> bool:
    calls = entry["reply"].get("tool_calls") or []
    return bool(calls) and calls[0][0] == "finish"


def agent_task(stack: Stack, requests: RequestLog, session: str, rounds: int) -> tuple[float, list[dict]]:
    """Send `rounds=N` and time it from the message until the Agent's status says idle.

    Status is polled only once the finish round has reached the model (seen in the request
    log), every 2 ms: polling all along would load the machine we are measuring.
    """
    requests.new_entries()
    started = time.perf_counter()
    call_ok(stack, "Agent", session, "message", {"text": f"rounds={rounds} session={session}"})
    entries: list[dict[str, Any]] = []
    deadline = started + 120
    while not (entries and _is_finish(entries[-1])):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"task {session} did not reach its finish round")
        time.sleep(0.005)
        entries += requests.new_entries()
    while (status := call_ok(stack, "Agent", session, "status"))["state"] != "idle":
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    # Every command really ran: the finish round's request shows N successful tool results.
    ran = [m for m in entries[-1]["request"]["messages"]
           if m.get("role") == "tool" and str(m.get("content", "")).startswith("exit code: 0")]
    if status["last_usage"]["rounds"] != rounds + 2 or len(ran) != rounds or any(e["attempt"] for e in entries):
        raise RuntimeError(f"task {session} did not run as scripted ({len(ran)} of {rounds} commands ran): "
                           f"{status}")
    return elapsed, entries


def replay_llm(base_url: str, bodies: list[dict[str, Any]], passes: int = 1) -> list[float]:
    """The scripted LLM's own time per request: the same requests, sent with the openai client."""

    async def run() -> list[float]:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="test", max_retries=0, timeout=30)
        samples = []
        try:
            for index in range(passes * len(bodies) + 1):
                body = bodies[index % len(bodies)]
                started = time.perf_counter()
                await client.chat.completions.create(model=body["model"], messages=body["messages"],
                                                     tools=body["tools"])
                if index:  # the first request opens the connection
                    samples.append(time.perf_counter() - started)
        finally:
            await client.close()
        return samples

    return asyncio.run(run())


def journaled_steps(stack: Stack, empty: int = 10, full: int = 2) -> tuple[list[float], list[float]]:
    """Ingress calls of Bench.steps: (`empty` with n = 0, `full` with n = STEPS)."""
    empties, fulls = [], []
    for i in range(empty):
        started = time.perf_counter()
        call_ok(stack, "Bench", None, "steps", {"n": 0})
        empties.append(time.perf_counter() - started)
        if i % (empty // full) == 0:
            started = time.perf_counter()
            call_ok(stack, "Bench", None, "steps", {"n": STEPS})
            fulls.append(time.perf_counter() - started)
    return empties, fulls


def read_ticks(path: Path) -> list[float]:
    try:
        return [float(line) for line in path.read_text().split()]
    except FileNotFoundError:
        return []


def restart_once(stack: Stack, path: Path) -> tuple[float, float, float]:
    """Kill the worker while Bench.ticks runs, start it again: (spawned, port accepted, next tick)."""
    status, answer = stack.send("Bench", None, "ticks", {"path": str(path), "count": 40, "interval_ms": 20})
    assert status == 202, (status, answer)
    stack.wait_until(lambda: len(read_ticks(path)) >= 10, timeout=30, interval=0.005, message="ten ticks")
    stack.kill_worker()
    # What the supervisor does (stack/supervisor.py), with timestamps in between: start the
    # worker, and once it listens ask Restate to retry what was waiting for it. No
    # re-registration: the deployment is already known.
    spawned = time.time()
    stack.worker = processes.start_worker(stack.worker_port, stack.worker_env(), stack.logs / "worker.log",
                                          app=stack.app, cwd=stack.app_dir)
    deadline = time.monotonic() + 30
    while not processes.port_in_use(stack.worker_port):
        if stack.worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the restarted worker never listened\n{stack.log_tails()}")
        time.sleep(0.002)
    accepted = time.time()
    processes.retry_now(stack.admin_port)
    after = stack.wait_until(lambda: [t for t in read_ticks(path) if t > spawned], timeout=30, interval=0.005,
                             message="a tick from the new worker")
    code, result = stack.attach(answer["invocationId"], timeout=60)
    assert code == 200 and result == 40, (code, result)
    return spawned, accepted, min(after)


def _at(entry: dict[str, Any], column: str = "appended_at") -> float:
    return datetime.fromisoformat(entry[column].replace("Z", "+00:00")).timestamp()


def _until(entries: list[dict[str, Any]], start: int, entry_type: str) -> float:
    """Seconds from entries[start] to the next entry of `entry_type` (its result)."""
    done = next(e for e in entries[start + 1:] if e["entry_type"] == entry_type)
    return _at(done) - _at(entries[start])


HOPS = ("model", "boundary", "call", "exec", "start", "after", "entries", "events")


def journal_breakdown(stack: Stack, session: str, task_id: str) -> dict[str, list[float]]:
    """Where a round's time goes, from Restate's own journal timestamps (1 ms resolution)."""
    [task] = stack.query("SELECT id FROM sys_invocation WHERE target_service_name = 'Task' "
                         f"AND target_service_key = '{task_id}'")
    task_journal = stack.query(f"SELECT index, entry_type, name, appended_at FROM sys_journal "
                               f"WHERE id = '{task['id']}' ORDER BY index")
    parts: dict[str, list[float]] = {hop: [] for hop in HOPS}
    after_round = False
    boundary_at: float | None = None
    for i, entry in enumerate(task_journal):
        if entry["entry_type"] == "Command: Run" and entry.get("name") == "timestamp":
            boundary_at = _at(entry)  # the model boundary's clock reading (with the steering peek)
        if entry["entry_type"] == "Command: Run" and ", round " in entry.get("name", ""):
            parts["model"].append(_until(task_journal, i, "Notification: Run"))
            if boundary_at is not None:
                parts["boundary"].append(_at(entry) - boundary_at)
            boundary_at = None
            after_round = True
        elif entry["entry_type"] == "Command: Call" and after_round:
            parts["call"].append(_until(task_journal, i, "Notification: Call"))
            after_round = False
    invocations = {row["id"]: row for row in stack.query(
        f"SELECT id, created_at FROM sys_invocation WHERE target = 'Sandbox/{session}/exec'")}
    sandbox_journal = stack.query(
        "SELECT j.id AS id, j.index AS index, j.entry_type AS entry_type, j.name AS name, "
        "j.appended_at AS appended_at FROM sys_journal j JOIN sys_invocation i ON j.id = i.id "
        f"WHERE i.target = 'Sandbox/{session}/exec' ORDER BY j.id, j.index")
    by_invocation: dict[str, list[dict[str, Any]]] = {}
    for entry in sandbox_journal:
        by_invocation.setdefault(entry["id"], []).append(entry)
    for inv_id, journal in by_invocation.items():
        parts["entries"].append(len(journal))
        if len(journal) > 1 and inv_id in invocations:  # created → the handler's first command
            parts["start"].append(_at(journal[1]) - _at(invocations[inv_id], "created_at"))
        for i, entry in enumerate(journal):
            if entry["entry_type"] == "Command: Run" and entry.get("name", "").startswith("exec "):
                parts["exec"].append(_until(journal, i, "Notification: Run"))
                done = next(e for e in journal[i + 1:] if e["entry_type"] == "Notification: Run")
                parts["after"].append(_at(journal[-1]) - _at(done))  # → Output
    [events] = stack.query("SELECT count(*) AS n FROM sys_invocation WHERE target LIKE "
                           f"'Events/{session}/append%'") or [{"n": 0}]  # append and append_all
    parts["events"].append(events["n"] / max(len(parts["model"]), 1))
    return parts


# --- the table -----------------------------------------------------------------------------------


def run() -> tuple[str, str]:
    log("spine: plain asyncio loop")
    loop_row = asyncio_loop()
    with temp_dir("spine") as root, running_stack(
            root, "rounds", env={"AGENT_MAX_ROUNDS": str(ROUNDS + 2)}) as stack:
        requests = RequestLog(stack.llm.requests_log)
        backend = create_backend("local", root / "sandboxes", LocalLimits())
        try:
            log("spine: warm-up")
            agent_task(stack, requests, "warmup", 3)
            sandbox_commands(backend, 3)
            # Every kind of measurement once per repetition, so a change in the machine's
            # background load touches all of them alike.
            log(f"spine: {TASKS} repetitions of: a {ROUNDS}-round task, a 0-round task, the scripted "
                "LLM alone, sandbox commands alone, journaled steps")
            long_tasks, short_tasks, intervals, llm, bare, stepped = [], [], [], [], [], []
            empty_calls, step_calls, tasks = [], [], []
            for i in range(TASKS):
                elapsed, entries = agent_task(stack, requests, f"long{i}", ROUNDS)
                long_tasks.append(elapsed)
                tasks.append((f"long{i}", entries))
                step_times = [e["time"] for e in entries[1:]]  # entries[0] is the planning call
                intervals += [b - a for a, b in zip(step_times, step_times[1:])]
                short_tasks.append(agent_task(stack, requests, f"short{i}", 0)[0])
                llm += replay_llm(stack.llm.base_url, [e["request"] for e in entries])
                more_bare, more_stepped = sandbox_commands(backend, 10)
                bare += more_bare
                stepped += more_stepped
                more_empty, more_steps = journaled_steps(stack)
                empty_calls += more_empty
                step_calls += more_steps
            payload = median([len(json.dumps(e["request"])) for e in tasks[0][1]])
            log("spine: reading the journals")
            parts: dict[str, list[float]] = {hop: [] for hop in HOPS}
            for session, _ in tasks:
                task_id = call_ok(stack, "Agent", session, "history")["messages"][0]["task_id"]
                for key, values in journal_breakdown(stack, session, task_id).items():
                    parts[key] += values
            log(f"spine: {RESTARTS} worker restarts")
            restarts = [restart_once(stack, root / f"ticks-{i}.txt") for i in range(RESTARTS)]
        finally:
            backend.close()

    per_round = Row.of(f"agent round = whole task / N (N = {ROUNDS})", long_tasks, per=ROUNDS,
                       how=f"message → Agent status idle; a task is plan + {ROUNDS} × `run(\"true k\")` + finish")
    marginal = Row("agent round, marginal", (median(long_tasks) - median(short_tasks)) / ROUNDS, None, "derived",
                   f"(median {ROUNDS}-round task − median 0-round task) / {ROUNDS}: without the task's fixed costs")
    interval = Row.of("agent round, request to next request", intervals,
                      "gaps between successive model requests in the scripted LLM's log, same tasks")
    model_row = Row.of("  in it: model round step", parts["model"],
                       "Task journal: `step 1: …, round R` Run → its result (ms resolution)")
    call_row = Row.of("  in it: tool call Task → Sandbox.exec", parts["call"],
                      "Task journal: Call → its result")
    exec_row = Row.of("  in it: Sandbox `exec` step", parts["exec"],
                      "Sandbox.exec journal: `exec <op>` Run → its result")
    boundary_row = Row.of("  in it: model boundary", parts["boundary"],
                          "Task journal: the budget clock step (with the steering peek) → the model step's Run")
    start_row = Row.of("  in it: Sandbox.exec invocation start", parts["start"],
                       "Sandbox.exec: invocation created → the handler's first command")
    after_row = Row.of("  in it: Sandbox.exec after its step", parts["after"],
                       "Sandbox.exec journal: the `exec` step's result → Output (idle timer, state)")
    entries = median(parts["entries"]) if parts["entries"] else float("nan")
    events = median(parts["events"]) if parts["events"] else float("nan")
    llm_row = Row.of("scripted LLM alone, per request", llm,
                     f"the same requests replayed with the openai client (median payload {payload / 1000:.0f} kB)")
    bare_row = Row.of("sandbox command alone", bare, "`LocalBackend.exec(sid, \"true\", 10)` in this process")
    stepped_row = Row.of("sandbox command as the `exec` step runs it", stepped,
                         "`exec_once`: intent read + intent write (fsync) + exec + result write")
    markers = stepped_row.median - bare_row.median
    ours = Row("**our overhead per round**", per_round.median - llm_row.median - bare_row.median, None, "derived",
               "agent round − scripted LLM alone − sandbox command alone (medians); includes the op-marker "
               f"I/O ({duration(markers)})")
    ours_marginal = Row("our overhead per round, marginal", marginal.median - llm_row.median - bare_row.median,
                        None, "derived", "the same from the marginal round")
    step_row = Row.of("raw `ctx.run_typed` step", step_calls, per=STEPS,
                      how=f"Bench.steps: {STEPS} trivial steps in one handler, whole ingress call / {STEPS}")
    ingress_row = Row.of("ingress call, handler with no step", empty_calls, "Bench.steps with n = 0, round trip")
    spawn_accept = Row.of("worker restart: spawn → port accepts", [a - s for s, a, _ in restarts],
                          "SIGKILL of the worker's process group mid-loop, then a new hypercorn")
    accept_tick = Row.of("worker restart: port accepts → next step", [t - a for _, a, t in restarts],
                         "Bench.ticks (step + 20 ms sleep) resumes; `retry_now`, else Restate's retry (≤ 0.5 s)")
    spawn_tick = Row.of("worker restart: spawn → next step", [t - s for s, _, t in restarts],
                        "what a worker crash costs a running invocation")
    rows = [per_round, marginal, interval, model_row, boundary_row, call_row, start_row, exec_row, after_row,
            llm_row, bare_row, stepped_row, ours, ours_marginal, step_row, ingress_row, loop_row, spawn_accept,
            accept_tick, spawn_tick]
    counts = (f"Journal entries per Sandbox.exec invocation: {entries:g} (median); Events.append invocations "
              f"per model round: {events:.1f}.")
    return "Spine: one round of the durable loop", f"{table(rows)}\n\n{counts}"
