"""The 3-node cluster with a pool of workers (`make cluster`), crashed where it hurts: SIGKILL the
node that leads a running session's partition (mid command, then mid model round), SIGKILL a
worker running a command, and take two of three nodes away. Every task finishes, every command
ran once (the chaos test's marker lines), and clients see nothing worse than a retryable error.

One cluster serves the whole module; each test uses its own sessions and starts by bringing back
whatever an earlier test left down (the worker test comes last, so no test waits for a worker to
boot again).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.agent_helpers import history, read_file, status, wait_idle
from tests.client import Ingress
from tests.fakes.chaos_scripts import SHORT_LINES_PER_STEP, SHORT_MODEL_DELAY_S, SHORT_STEPS, expected_lines
from tests.harness import ClusterStack

SCRIPT = "tests.fakes.chaos_scripts:short"
WORKERS = 2
TASK_DEADLINE_S = 120
# What a client may see while a node fails over: a timeout or a "try again" status.
RETRYABLE = {"502", "503", "504"}


@pytest.fixture(scope="module")
def module_cluster(request: pytest.FixtureRequest) -> Iterator[ClusterStack]:
    root = Path(tempfile.mkdtemp(prefix="cluster-"))
    failed_before = request.session.testsfailed
    stack = ClusterStack(root, SCRIPT, nodes=3, workers=WORKERS, ui=True,
                         env={"AGENT_MAX_ROUNDS": "40"}).start()
    yield stack
    stack.close()
    if request.session.testsfailed > failed_before:
        print(stack.log_tails())
        print(f"kept {root} for inspection")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def stack(module_cluster: ClusterStack) -> ClusterStack:
    """The module's cluster with every node and worker running, as the supervisor keeps it."""
    for i, proc in enumerate(module_cluster.node_procs):
        if proc is None:
            module_cluster.start_node(i)
    for i, proc in enumerate(module_cluster.workers):
        if proc is None:
            module_cluster.start_worker(i)
    return module_cluster


# --- what the sessions are doing -----------------------------------------------------------------


def start_tasks(stack: ClusterStack, sessions: list[str]) -> dict[str, str]:
    """Start one task per session, each through another node's ingress: any node serves any session."""
    tasks = {}
    for n, session in enumerate(sessions):
        code, body = stack.ingress_of(n % len(stack.nodes)).call(
            "Agent", session, "message", {"text": f"append the lines for {session}"})
        assert code == 200, (code, body)
        tasks[session] = body["task_id"]
    return tasks


def in_command(stack: ClusterStack, session: str) -> bool:
    """A command is running: the local backend holds its record (sandbox/ops.py)."""
    return any(any(ops.glob("*.json")) for ops in (stack.data_dir / "sandboxes").glob(f"{session}-g*/ops"))


def in_model_round(stack: ClusterStack, session: str) -> bool:
    """The scripted model is answering this session right now (it logs a request on arrival)."""
    now = time.time()
    return any(now - r["time"] < SHORT_MODEL_DELAY_S * 0.8 and f"for {session}" in json.dumps(r["request"])
               for r in stack.llm_requests()[-20:])


def assert_each_command_ran_once(stack: ClusterStack, sessions: list[str]) -> None:
    for session in sessions:
        final = wait_idle(stack, session, timeout=TASK_DEADLINE_S)
        lines = read_file(stack, session, "lines.txt").splitlines()
        assert lines == expected_lines(SHORT_STEPS, SHORT_LINES_PER_STEP), (session, lines)
        assert [p["status"] for p in final["plan"]] == ["done"] * SHORT_STEPS
        assert [m["role"] for m in history(stack, session)] == ["user", "agent"]


class Watcher(threading.Thread):
    """Polls every session's status through one ingress, as a client would, and keeps every
    answer that is not a 200."""

    def __init__(self, ingress: Ingress, sessions: list[str]) -> None:
        super().__init__(daemon=True)
        self.ingress, self.sessions = ingress, sessions
        self.calls = 0
        self.failures: list[str] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            for session in self.sessions:
                self.calls += 1
                try:
                    code, body = self.ingress.call("Agent", session, "status", timeout=30)
                except httpx.TimeoutException as exc:
                    self.failures.append(f"timeout: {exc!r}")
                    continue
                except httpx.HTTPError as exc:
                    self.failures.append(f"transport: {exc!r}")
                    continue
                if code != 200:
                    self.failures.append(f"{code}: {body}")
            time.sleep(0.1)

    def stop(self) -> list[str]:
        self.stopped.set()
        self.join(timeout=40)
        return self.failures


def unretryable(failures: list[str]) -> list[str]:
    """The failures other than a timeout or a 502/503/504 (a refused connection is one)."""
    return [f for f in failures if not f.startswith("timeout") and f.split(":")[0] not in RETRYABLE]


def rejoined(stack: ClusterStack, i: int) -> bool:
    """The cluster reports node `i` healthy: alive, an active worker and metadata member, and
    running partition processors again."""
    state = stack.node_states()[stack.nodes[i].name]
    return (state["state"], state["worker_state"], state["metadata_server_state"]) == \
        ("alive", "active", "member") and int(state["partitions"]) > 0


# --- the tests -----------------------------------------------------------------------------------


def test_killing_the_partition_leader_mid_command_and_mid_model_round_loses_nothing(stack):
    sessions = ["lead-a", "lead-b", "lead-c"]
    tasks = start_tasks(stack, sessions)

    # Mid command: the node leading the session's Sandbox partition drives the running command.
    stack.wait_until(lambda: in_command(stack, "lead-a"), timeout=60, interval=0.02,
                     message="lead-a to run a command")
    victim = stack.partition_leader("Sandbox", "lead-a")
    survivor = (victim + 1) % len(stack.nodes)
    watcher = Watcher(stack.ingress_of(survivor), sessions)
    watcher.start()
    stack.kill_node(victim)
    print(f"killed {stack.nodes[victim].name}, leader of lead-a's Sandbox partition, mid command")

    # The killed node comes back on its data dir, rejoins, and runs its partitions again.
    stack.wait_until(lambda: stack.node_states()[stack.nodes[victim].name]["state"] != "alive",
                     timeout=30, message="the cluster to see the node gone")
    stack.start_node(victim)
    stack.wait_until(lambda: rejoined(stack, victim), timeout=60,
                     message=f"{stack.nodes[victim].name} to rejoin")

    # Mid model round: the node leading a running session's Task partition.
    running = [s for s in sessions if status(stack, s)["state"] == "running"]
    assert running, "every task ended before the second kill; make the script longer"
    session = stack.wait_until(lambda: next((s for s in running if in_model_round(stack, s)), None),
                               timeout=60, interval=0.02, message="a model round")
    victim = stack.partition_leader("Task", tasks[session])
    if victim == survivor:  # the client moves to a node that stays up, before the kill
        moved = Watcher(stack.ingress_of((victim + 1) % len(stack.nodes)), sessions)
        moved.failures, moved.calls = watcher.stop(), watcher.calls
        watcher = moved
        watcher.start()
    stack.kill_node(victim)
    print(f"killed {stack.nodes[victim].name}, leader of {session}'s Task partition, mid model round")

    assert_each_command_ran_once(stack, sessions)
    failures = watcher.stop()
    print(f"client through a surviving node: {watcher.calls} calls, failures: {failures}")
    assert watcher.calls > 0 and unretryable(failures) == []


def test_two_of_three_nodes_down_is_reported_and_recovers(stack):
    session = "quorum"
    start_tasks(stack, [session])
    stack.wait_until(lambda: in_command(stack, session), timeout=60, interval=0.02,
                     message="the task to run a command")
    # The UI talks to node 0; take the other two away.
    stack.kill_node(1)
    stack.kill_node(2)

    ui = httpx.Client(base_url=stack.ui_url, timeout=60, trust_env=False)
    started = time.monotonic()
    answer = ui.get(f"/api/sessions/{session}/status")
    waited = time.monotonic() - started
    print(f"UI answered {answer.status_code} after {waited:.1f} s: {answer.text}")
    assert answer.status_code == 503
    assert "most nodes of the cluster are down" in answer.json()["message"]

    stack.start_node(1)
    stack.wait_until(lambda: ui.get(f"/api/sessions/{session}/status").status_code == 200, timeout=90,
                     message="the UI to answer again")
    assert_each_command_ran_once(stack, [session])


def test_killing_a_worker_mid_command_moves_its_invocations_to_the_others(stack):
    sessions = ["pool-a", "pool-b"]
    start_tasks(stack, sessions)
    running = stack.wait_until(lambda: next((s for s in sessions if in_command(stack, s)), None),
                               timeout=60, interval=0.02, message="a command to run")
    number = stack.wait_until(lambda: worker_running_a_command(stack), timeout=30, interval=0.02,
                              message="a worker running a command")
    victim = number - 1
    stack.kill_worker(victim)
    print(f"killed worker-{number} while a command ran ({running} was in one)")

    # The others keep serving: a handler answers while the killed one is still down.
    assert status(stack, running)["state"] in ("running", "idle")
    assert_each_command_ran_once(stack, sessions)
    assert stack.workers[victim] is None  # every task finished without it


# --- helpers -------------------------------------------------------------------------------------


def worker_running_a_command(stack: ClusterStack) -> int | None:
    """The number (1..) of a worker whose process tree holds a running sandbox (bwrap)."""
    workers = {proc.pid: i + 1 for i, proc in enumerate(stack.workers) if proc is not None}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            cmdline = (stat_file.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if b"bwrap" not in cmdline.split(b"\0")[0]:
            continue
        pid = int(stat_file.parent.name)
        while pid > 1:  # walk up to a worker
            if pid in workers:
                return workers[pid]
            try:
                pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                break
    return None
