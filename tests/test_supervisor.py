"""The run command (`python -m stack run`) as a user runs it: it starts everything, keeps a task
going when its worker is SIGKILLed, survives a restate-server SIGKILL, stops everything on
Ctrl-C, and starts again cleanly on the same data dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from stack import cluster, processes
from tests.client import Ingress, free_ports
from tests.agent_helpers import history, read_file, send_message, status, try_read_file, wait_idle
from tests.fakes.chaos_scripts import SHORT_LINES_PER_STEP, SHORT_STEPS, expected_lines
from tests.harness import ScriptedLLM, Stack

REPO = Path(__file__).resolve().parent.parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


class Supervised:
    """`python -m stack run` in its own process group, pointed at a scripted model."""

    def __init__(self, root: Path, llm: ScriptedLLM, args: tuple[str, ...] = ()) -> None:
        self.root = root
        self.args = list(args)
        self.data_dir = root / "data"
        self.ingress, self.admin, self.node, self.worker, self.ui = free_ports(5)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("OPENAI_", "AGENT_", "RESTATE_", "SANDBOX_", "WORKER_", "UI_"))}
        self.env.update({
            "OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "test", "AGENT_DATA_DIR": str(self.data_dir),
            "RESTATE_INGRESS_PORT": str(self.ingress), "RESTATE_ADMIN_PORT": str(self.admin),
            "RESTATE_NODE_PORT": str(self.node), "WORKER_PORT": str(self.worker), "UI_PORT": str(self.ui),
            "PYTHONUNBUFFERED": "1",
        })
        self.proc: subprocess.Popen | None = None
        self.log = root / "supervisor.log"
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.proc = subprocess.Popen([sys.executable, "-m", "stack", "run", *self.args], cwd=REPO, env=self.env,
                                     stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        processes.wait_port(self.worker, 60, self.proc)
        # Ready once the banner is printed: the deployment is registered by then.
        deadline = time.monotonic() + 60
        while self.log.read_bytes().count(b"is running") < self.starts and time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.1)
        assert self.log.read_bytes().count(b"is running") == self.starts, self.log.read_text()

    def child_pid(self, name: str) -> int:
        return json.loads((self.data_dir / "run" / f"{name}.pid").read_text())["pid"]

    def interrupt(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=30)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            processes.stop(self.proc, grace=10)


@pytest.fixture
def supervised(llm_factory):
    made: list[Supervised] = []

    def make(script: str) -> Supervised:
        root = Path(tempfile.mkdtemp(prefix="supervised-"))
        sup = Supervised(root, llm_factory(script))
        made.append(sup)
        sup.start()
        return sup

    yield make
    for sup in made:
        sup.close()


def test_run_command_restarts_a_killed_worker_and_the_task_finishes(supervised):
    sup = supervised("tests.fakes.spine_scripts:appender")
    stack = Stack.__new__(Stack)  # borrow the ingress helpers only
    stack.ingress = Ingress(sup.ingress)
    stack.wait_until = Stack.wait_until.__get__(stack)
    stack.call = Stack.call.__get__(stack)

    send_message(stack, "sup", "append four lines")
    stack.wait_until(lambda: try_read_file(stack, "sup", "log.txt") == "one\n", message="first append")
    old_worker = sup.child_pid("worker")
    processes.kill_pgid(old_worker)  # SIGKILL the worker's process group, behind the supervisor's back
    stack.wait_until(lambda: sup.child_pid("worker") != old_worker and _alive(sup.child_pid("worker")),
                     timeout=30, message="worker restarted by the supervisor")

    old_restate = sup.child_pid("restate")
    stack.wait_until(lambda: status(stack, "sup")["plan"][0]["status"] == "done", timeout=60, message="step 1")
    processes.kill_pgid(old_restate)
    stack.wait_until(lambda: sup.child_pid("restate") != old_restate, timeout=30, message="restate restarted")

    final = wait_idle(stack, "sup", timeout=90)
    assert [p["status"] for p in final["plan"]] == ["done", "done"]
    assert read_file(stack, "sup", "log.txt").count("four") == 1
    assert [m["role"] for m in history(stack, "sup")] == ["user", "agent"]

    # The web UI is one of the supervised children, and shows the same session.
    ui_status = httpx.get(f"http://127.0.0.1:{sup.ui}/api/sessions/sup/status", trust_env=False)
    assert ui_status.status_code == 200 and ui_status.json()["state"] == "idle"

    children = [sup.child_pid(n) for n in ("worker", "restate", "ui")]
    assert sup.interrupt() == 0
    assert not any(_alive(pid) for pid in children)
    assert not list((sup.data_dir / "run").glob("*.pid"))

    # Run it again on the same data dir: no leftovers in the way, and the history is still there.
    sup.start()
    assert [m["role"] for m in history(stack, "sup")] == ["user", "agent"]
    assert sup.interrupt() == 0


def test_cluster_command_serves_through_any_node_and_restarts_a_killed_node_and_worker(llm_factory):
    """`python -m stack run --nodes 3 --workers 2` (what `make cluster` runs), on the repo's
    cluster files moved to free ports."""
    root = Path(tempfile.mkdtemp(prefix="supervised-cluster-"))
    sup = Supervised(root, llm_factory("tests.fakes.chaos_scripts:short"), ("--nodes", "3", "--workers", "2"))
    nodes = cluster.nodes_on_ports([tuple(free_ports(3)) for _ in range(3)])
    sup.env["AGENT_CLUSTER_DIR"] = str(_cluster_files(root / "cluster", nodes))
    try:
        sup.start()
        banner = sup.log.read_text()
        assert all(f"Ingress:      {node.ingress_url}  ({node.name})" in banner for node in nodes), banner
        stack = Stack.__new__(Stack)  # borrow the ingress helpers only, on node-3's ingress
        stack.ingress = Ingress(nodes[2].ingress_port)
        stack.wait_until = Stack.wait_until.__get__(stack)
        stack.call = Stack.call.__get__(stack)

        send_message(stack, "clu", "append the lines for clu")
        stack.wait_until(lambda: try_read_file(stack, "clu", "lines.txt"), timeout=60, message="a first line")
        killed = {name: sup.child_pid(name) for name in ("worker-1", "node-2")}
        for pid in killed.values():  # behind the supervisor's back
            processes.kill_pgid(pid)
        for name, old in killed.items():
            stack.wait_until(lambda: sup.child_pid(name) != old and _alive(sup.child_pid(name)),
                             timeout=60, message=f"{name} restarted by the supervisor")

        wait_idle(stack, "clu", timeout=120)
        assert read_file(stack, "clu", "lines.txt").splitlines() == expected_lines(SHORT_STEPS, SHORT_LINES_PER_STEP)
        children = [sup.child_pid(n) for n in ("node-1", "node-2", "node-3", "worker-1", "worker-2", "ui")]
        assert sup.interrupt() == 0
        assert not any(_alive(pid) for pid in children)
    finally:
        sup.close()


def _cluster_files(directory: Path, nodes: list[cluster.Node]) -> Path:
    """The repo's cluster/node-*.toml with every port replaced by the given nodes' ports."""
    ports: dict[str, str] = {}
    for repo_node, node in zip(cluster.repo_nodes(), nodes, strict=True):
        for old, new in ((repo_node.ingress_port, node.ingress_port), (repo_node.admin_port, node.admin_port),
                         (repo_node.node_port, node.node_port)):
            ports[f"127.0.0.1:{old}"] = f"127.0.0.1:{new}"
    directory.mkdir(parents=True)
    for node in cluster.repo_nodes():
        text = node.config_file.read_text()
        for old, new in ports.items():
            text = text.replace(f"{old}\"", f"{new}\"")
        (directory / node.config_file.name).write_text(text)
    return directory
