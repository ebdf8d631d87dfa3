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

from stack import processes
from tests.client import Ingress, free_ports
from tests.agent_helpers import history, read_file, send_message, status, try_read_file, wait_idle
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

    def __init__(self, root: Path, llm: ScriptedLLM) -> None:
        self.root = root
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
        self.proc = subprocess.Popen([sys.executable, "-m", "stack", "run"], cwd=REPO, env=self.env,
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

    # Requests are signed: a key pair made on the first start, readable by its owner only, and a
    # worker that answers 401 to anyone but Restate.
    key_file = sup.data_dir / "request-identity.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_bytes()
    direct = httpx.post(f"http://127.0.0.1:{sup.worker}/invoke/Agent/status", trust_env=False)
    assert direct.status_code == 401

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
    assert [m["role"] for m in history(stack, "sup")] == ["user", "agent"]  # through the same key
    assert key_file.read_bytes() == key
    assert sup.interrupt() == 0
