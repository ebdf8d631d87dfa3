"""`python -m stack run` as a user runs it, for tests: in its own process group, on free ports,
pointed at the scripted model. The `supervised` fixture (tests/conftest.py) makes them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from stack import processes
from tests.client import Ingress, free_ports
from tests.harness import REPO_ROOT, ScriptedLLM, Stack


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


class Supervised:
    """`python -m stack run` in its own process group, pointed at a scripted model."""

    def __init__(self, root: Path, llm: ScriptedLLM, env: Mapping[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.root = root
        self.args = list(args)  # after `run`, e.g. ("--nodes", "3", "--workers", "2")
        self.data_dir = root / "data"
        self.ingress, self.admin, self.node, self.worker, self.ui = free_ports(5)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("OPENAI_", "AGENT_", "RESTATE_", "SANDBOX_", "WORKER_", "UI_"))}
        self.env.update({
            "OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "test", "AGENT_DATA_DIR": str(self.data_dir),
            "RESTATE_INGRESS_PORT": str(self.ingress), "RESTATE_ADMIN_PORT": str(self.admin),
            "RESTATE_NODE_PORT": str(self.node), "WORKER_PORT": str(self.worker), "UI_PORT": str(self.ui),
            "PYTHONUNBUFFERED": "1", **(env or {}),
        })
        self.proc: subprocess.Popen | None = None
        self.log = root / "supervisor.log"
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.proc = subprocess.Popen([sys.executable, "-m", "stack", "run", *self.args], cwd=REPO_ROOT, env=self.env,
                                     stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        # Ready once the banner is printed: the deployment is registered by then.
        deadline = time.monotonic() + 90
        while self.log.read_bytes().count(b"is running") < self.starts and time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.1)
        assert self.log.read_bytes().count(b"is running") == self.starts, self.log.read_text()

    def child_pid(self, name: str) -> int:
        return json.loads((self.data_dir / "run" / f"{name}.pid").read_text())["pid"]

    def stack(self, ingress_port: int | None = None, admin_port: int | None = None) -> Stack:
        """A Stack that only borrows the ingress helpers (call, wait_until, query) for this run,
        on its own ports or others (a cluster node's)."""
        stack = Stack.__new__(Stack)
        stack.ingress = Ingress(ingress_port or self.ingress)
        stack.admin_port = admin_port or self.admin
        return stack

    def registry(self) -> dict:
        """The versions the supervisor serves (deployments.json, stack/upgrade.py)."""
        return json.loads((self.data_dir / "deployments.json").read_text())

    def upgrade(self, source: Path, log: Path) -> subprocess.Popen:
        """`python -m stack upgrade --source SOURCE` against this run, logging to `log`."""
        return subprocess.Popen([sys.executable, "-m", "stack", "upgrade", "--source", str(source)],
                                cwd=REPO_ROOT, env=self.env, stdout=log.open("ab"), stderr=subprocess.STDOUT)

    def interrupt(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=30)

    def close(self) -> None:
        """Stop the supervisor (it stops Restate's nodes, then the others, each group with a
        grace of its own, so give it time), then whatever it could not stop: a supervisor that was killed,
        by the test or by the grace running out, leaves the processes its pid files name."""
        if self.proc is not None and self.proc.poll() is None:
            processes.stop(self.proc, grace=40)
        for pid_file in (self.data_dir / "run").glob("*.pid"):
            try:
                record = json.loads(pid_file.read_text())
                running = Path(f"/proc/{record['pid']}/cmdline").read_bytes().decode().split("\0")[:-1]
            except (OSError, ValueError, KeyError):
                continue
            if running == record["cmdline"]:  # still the very process it started, not a reused pid
                processes.kill_pgid(int(record["pid"]))


def v2_source(root: Path) -> Path:
    """A copy of the code whose Task journals a different first step ("settings (v2)"):
    replaying a v1 journal with it would not match. And a stored shape changes: a task's
    outcome (the report a task sends its Agent) says which steering messages it took
    (`steering_taken`, required) where v1 said how many (`steering_read`), with the migration
    from v1's shape (app/stored.py). A v1 task that finishes after the upgrade reports to the
    Agent's v2 code in v1's shape."""
    source = root / "v2"
    for directory in ("app", "sandbox"):
        shutil.copytree(REPO_ROOT / directory, source / directory, ignore=shutil.ignore_patterns("__pycache__"))
    _patch(source / "app" / "task.py", ('ctx.run_typed("settings",', 'ctx.run_typed("settings (v2)",'),
           ("steering_read=controls.steering_read", "steering_taken=list(range(controls.steering_read))"))
    _patch(source / "app" / "agent.py", ("outcome.steering_read <", "len(outcome.steering_taken) <"))
    _patch(source / "app" / "models.py",
           ("from typing import Annotated, Any, Literal, Union", "from typing import Annotated, Any, ClassVar, Literal, Union"),
           ("    steering_read: int = 0  # how many steering messages the task took in\n",
            "    steering_taken: list[int]\n    SHAPE: ClassVar[int] = 1\n    MIGRATIONS: ClassVar[tuple] = (\n"
            "        lambda d: {**{k: v for k, v in d.items() if k != 'steering_read'},\n"
            "                   'steering_taken': list(range(d.get('steering_read', 0)))},)\n"))
    return source


def _patch(path: Path, *replacements: tuple[str, str]) -> None:
    text = path.read_text()
    for old, new in replacements:
        assert text.count(old) >= 1, (path, old)
        text = text.replace(old, new)
    path.write_text(text)


def task_run(stack: Stack, task_id: str) -> tuple[str, list[str]]:
    """The Task's deployment and the names of its journaled steps."""
    [run] = stack.query("SELECT id, pinned_deployment_id FROM sys_invocation WHERE target_service_name = 'Task' "
                        f"AND target_service_key = '{task_id}' AND target_handler_name = 'run'")
    steps = stack.query(f"SELECT name FROM sys_journal WHERE id = '{run['id']}' AND entry_type = 'Command: Run' "
                        "ORDER BY index")
    return run["pinned_deployment_id"], [s["name"] for s in steps]
