"""The event log and the web UI's stream: how fast an event reaches a watcher, and what it costs.

    python -m bench events        # or: python -m bench.events

- **Latency.** A watcher holds the UI server's SSE stream open (`GET /api/sessions/{s}/events`)
  while a task runs; for each event, its arrival time at the client minus its `time` field (the
  Events object's clock reading when it appended the event). The UI server polls the log every
  100 ms (UI_POLL_MS), one poller per session; two more tasks are watched with 20 ms polling.
- **Cost per event.** The same `rounds=N` task (bench.scripts:rounds), timed from the message to
  an idle status, on a worker whose services record no events (BENCH_NO_EVENTS=1, see
  bench/events_app.py) and on the product as it is, with and without a watcher connected; the
  difference divided by the events a task records. Also the log on its own: a burst of appends
  from one handler, and reading it back (one Events.read page; a whole SSE catch-up).

Live model text (deltas) is off in both stacks (AGENT_DELTA_URL=""), so the model calls are the
same plain requests everywhere.
"""

from __future__ import annotations

import threading
import time

import httpx

from bench.common import Row, call_ok, log, median, temp_dir, table
from tests.harness import Stack
from tests.ui_helpers import sse_stream

APP = "bench.events_app:app"
ROUNDS = 30  # command rounds per task
TASKS = 5  # tasks per variant
BURST = 500  # events per append burst
READS = 30  # Events.read calls timed


def _task(stack: Stack, session: str) -> float:
    """Send `rounds=N`; seconds until the Agent's status is idle again (polled every 5 ms)."""
    started = time.perf_counter()
    call_ok(stack, "Agent", session, "message", {"text": f"rounds={ROUNDS} session={session}"})
    time.sleep(0.05)
    while call_ok(stack, "Agent", session, "status")["state"] != "idle":
        if time.perf_counter() - started > 120:
            raise TimeoutError(f"task {session} did not finish")
        time.sleep(0.005)
    return time.perf_counter() - started


def _watched_task(stack: Stack, session: str) -> tuple[float, list[float], int]:
    """A task with a watcher on the UI's stream: (task seconds, latencies, events seen)."""
    latencies: list[float] = []
    connected = threading.Event()
    done = threading.Event()

    def watch() -> None:
        with httpx.Client(base_url=stack.ui_url, trust_env=False) as client:
            connected.set()
            for item in sse_stream(client, f"/api/sessions/{session}/events", params={"after": 0}, timeout=120):
                if item.id is not None:
                    latencies.append(time.time() - item.data["time"])
                    if item.event == "final_answer":
                        break
        done.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    connected.wait(10)
    time.sleep(0.3)  # the stream is open and polling before the task starts
    elapsed = _task(stack, session)
    if not done.wait(30):
        raise TimeoutError(f"the watcher of {session} never saw the final answer")
    return elapsed, latencies, len(latencies)


def _burst(stack: Stack, session: str) -> float:
    """Seconds from sending BURST appends (one handler) until the log holds all of them."""
    started = time.perf_counter()
    call_ok(stack, "EventsBench", None, "burst", {"session": session, "count": BURST})
    while call_ok(stack, "Events", session, "read", {"after": 0, "limit": 1})["next_seq"] <= BURST:
        time.sleep(0.002)
    return time.perf_counter() - started


def _reads(stack: Stack, session: str) -> list[float]:
    samples = []
    for i in range(READS):
        started = time.perf_counter()
        call_ok(stack, "Events", session, "read", {"after": i, "limit": 200})
        samples.append(time.perf_counter() - started)
    return samples


def _catch_up(stack: Stack, session: str) -> tuple[float, int]:
    """Seconds for a new SSE client to receive the whole (finished) log, and its length."""
    started = time.perf_counter()
    count = 0
    with httpx.Client(base_url=stack.ui_url, trust_env=False) as client:
        for item in sse_stream(client, f"/api/sessions/{session}/events", params={"after": 0}):
            if item.id is not None:
                count += 1
                if count == BURST:
                    break
    return time.perf_counter() - started, count


def run() -> tuple[str, str]:
    env = {"AGENT_MAX_ROUNDS": str(ROUNDS + 2), "AGENT_DELTA_URL": ""}
    with temp_dir("events") as root:
        plain = Stack(root / "without", "bench.scripts:rounds", env={**env, "BENCH_NO_EVENTS": "1"}, app=APP)
        logged = Stack(root / "with", "bench.scripts:rounds", env=env, app=APP, ui=True)
        with plain, logged:
            log("events: warm-up")
            _task(plain, "warm")
            _task(logged, "warm")
            _watched_task(logged, "warm-watched")
            log(f"events: {TASKS} × three {ROUNDS}-round tasks: no event log, the log, the log + a watcher")
            without, with_log, watched, latencies, per_task = [], [], [], [], []
            for i in range(TASKS):  # interleaved, so drifting load touches every variant alike
                without.append(_task(plain, f"plain{i}"))
                with_log.append(_task(logged, f"logged{i}"))
                elapsed, seen, count = _watched_task(logged, f"watched{i}")
                watched.append(elapsed)
                latencies += seen
                per_task.append(count)
            log("events: two watched tasks with the UI server polling every 20 ms")
            logged.kill_ui()
            logged.ui_env["UI_POLL_MS"] = "20"
            logged.start_ui()
            fast = [latency for i in range(2) for latency in _watched_task(logged, f"fast{i}")[1]]
            log(f"events: {BURST}-event append bursts, reads, SSE catch-ups")
            bursts = [_burst(logged, f"burst{i}") for i in range(3)]
            reads = _reads(logged, "burst0")
            catch_ups = [_catch_up(logged, f"burst{i}") for i in range(3)]

    events = median(per_task)
    rows = [
        Row.of("event recorded → SSE client (live)", latencies,
               f"arrival at an httpx SSE client − the event's `time`; UI_POLL_MS = 100; {TASKS} tasks"),
        Row.of("  the same, UI_POLL_MS = 20", fast, "2 tasks"),
        Row.of(f"task of {ROUNDS} rounds, no event log", without, "message → status idle; BENCH_NO_EVENTS=1"),
        Row.of(f"task of {ROUNDS} rounds, with the event log", with_log, f"{events:.0f} events per task"),
        Row.of(f"task of {ROUNDS} rounds, with the log and a watcher", watched,
               "the same, with one SSE client connected through the UI server"),
        Row("**cost per event, on the task's path**", (median(with_log) - median(without)) / events, None,
            "derived", f"(with the log − without) / {events:.0f} events"),
        Row("cost per event, with a watcher", (median(watched) - median(without)) / events, None, "derived",
            "(with the log and a watcher − without) / events"),
        Row.of("append, in a burst", bursts, f"{BURST} one-way sends from one handler → all in the log; "
               "per event", per=BURST),
        Row.of("Events.read, one page of 200", reads, "through the ingress"),
        Row.of("SSE catch-up, per event", [t for t, _ in catch_ups],
               f"a new client receives a {BURST}-event log from seq 0 through the UI server", per=BURST),
    ]
    if any(count != BURST for _, count in catch_ups):
        raise RuntimeError(f"a catch-up saw {[c for _, c in catch_ups]} events, not {BURST}")
    return "Events and the UI stream (`events.py`)", table(rows)


if __name__ == "__main__":
    title, body = run()
    print(f"### {title}\n\n{body}")
