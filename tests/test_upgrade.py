"""Upgrades while tasks are in flight (`python -m stack upgrade` against `python -m stack run`):
a task parked on an approval before the upgrade finishes on the code it started with, even
through a SIGKILL of its worker and a restart of the supervisor during the drain; new tasks run
the new code; the old version is retired once nothing is pinned to it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx

from stack import processes
from tests.agent_helpers import approvals, history, read_file, send_message, wait_idle
from tests.harness import REPO_ROOT
from tests.supervised import alive, task_run, v2_source

SCRIPT = "tests.fakes.spine_scripts:risky"  # one command, `echo pushed >> pushes.txt`, needing approval
APPROVAL = {"AGENT_APPROVAL": "patterns", "AGENT_APPROVAL_PATTERNS": "push"}


def _resolve(stack, session: str, approval: dict) -> None:
    code, body = stack.call("Agent", session, "resolve_approval",
                            {"approval_id": approval["approval_id"], "decision": "approve"})
    assert code == 200, (code, body)


def test_tasks_in_flight_finish_on_their_version_and_new_ones_run_the_new(supervised, tmp_path):
    sup = supervised(SCRIPT, env=APPROVAL)
    stack = sup.stack()
    old_task = send_message(stack, "old", "deploy")
    [old_approval] = stack.wait_until(lambda: approvals(stack, "old"), message="the v1 task's approval")
    [v1] = sup.registry()["versions"]

    log = tmp_path / "upgrade.log"
    # The next port up is held the way the local end of an outgoing connection holds one: bound,
    # nothing accepting on it. v2 goes elsewhere (a worker put there could not bind).
    with _hold_a_port_after(v1["port"]) as held:
        upgrading = sup.upgrade(v2_source(tmp_path), log)
        stack.wait_until(lambda: "serves new invocations" in log.read_text(), timeout=90, message="v2 registered")
    v1_now, v2 = sup.registry()["versions"]
    assert v1_now["version"] == v1["version"] and v1_now["draining"] and not v2["draining"]
    assert v2["deployment_id"] != v1["deployment_id"] and v2["port"] != held
    old_worker = sup.child_pid(f"worker-{v1['version']}")
    assert alive(old_worker) and alive(sup.child_pid("worker"))
    # Each worker answers only its own version's path.
    wrong = httpx.get(f"http://127.0.0.1:{v2['port']}/{v1['version']}/discover", trust_env=False)
    assert wrong.status_code == 404 and v2["version"] in wrong.json()["message"]

    # A new task runs v2's code.
    new_task = send_message(stack, "new", "deploy")
    [new_approval] = stack.wait_until(lambda: approvals(stack, "new"), message="the v2 task's approval")
    _resolve(stack, "new", new_approval)
    wait_idle(stack, "new")
    assert read_file(stack, "new", "pushes.txt") == "pushed\n"

    # The drain is visible, and survives a SIGKILL of the old worker: it comes back on v1's code.
    stack.wait_until(lambda: f"version {v1['version']}: 1 invocation(s) left" in log.read_text(),
                     message="the drain count")
    processes.kill_pgid(old_worker)
    stack.wait_until(lambda: (pid := sup.child_pid(f"worker-{v1['version']}")) != old_worker and alive(pid),
                     message="the old worker restarted")

    # ... and a restart of the supervisor: it serves both versions again.
    assert sup.interrupt() == 0
    assert upgrading.wait(timeout=30) == 1  # it stops watching; the drain goes on at the next start
    sup.start()
    assert alive(sup.child_pid(f"worker-{v1['version']}")) and alive(sup.child_pid("worker"))
    watching = sup.upgrade(v2_source(tmp_path / "again"), log)  # the same code: just watches
    stack.wait_until(lambda: log.read_text().count(f"version {v1['version']}: 1 invocation(s) left") == 2,
                     message="the drain count, after the restart")

    # The approval given after the upgrade completes the old task, on v1.
    _resolve(stack, "old", old_approval)
    wait_idle(stack, "old")
    # v1 is retired only after several checks in a row found nothing pinned (an invocation being
    # created as the switch happened pins to v1 a moment later), never at the first zero count.
    quiet: list[int] = []

    def retired() -> bool:
        old = next((v for v in sup.registry()["versions"] if v["version"] == v1["version"]), None)
        if old is not None and old["left"] == 0:
            quiet.append(old["quiet_checks"])
        return old is None

    stack.wait_until(retired, timeout=60, interval=0.05, message="v1 to be retired")
    assert quiet and max(quiet) >= 2, quiet
    assert read_file(stack, "old", "pushes.txt") == "pushed\n"  # ran once, through the kill
    assert [m["role"] for m in history(stack, "old")] == ["user", "event", "event", "agent"]
    assert watching.wait(timeout=60) == 0, log.read_text()
    assert f"version {v1['version']}: drained and stopped" in log.read_text()

    old_deployment, old_steps = task_run(stack, old_task)
    new_deployment, new_steps = task_run(stack, new_task)
    assert (old_deployment, new_deployment) == (v1["deployment_id"], v2["deployment_id"])
    assert old_steps[0] == "settings" and new_steps[0] == "settings (v2)"
    assert "settings (v2)" not in old_steps and old_steps[1:] == new_steps[1:]
    # v1 is gone: its deployment is removed from Restate and its worker stopped.
    assert [v["version"] for v in sup.registry()["versions"]] == [v2["version"]]
    deployments = processes.http_client().get(f"http://127.0.0.1:{sup.admin}/deployments").json()["deployments"]
    assert v1["deployment_id"] not in [d["id"] for d in deployments]
    assert not (sup.data_dir / "run" / f"worker-{v1['version']}.pid").exists()


@contextlib.contextmanager
def _hold_a_port_after(port: int) -> Iterator[int]:
    """Bind (without listening) the first port above `port` that can be bound, while inside."""
    for candidate in range(port + 1, port + 100):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            yield candidate
            return
    raise AssertionError(f"no free port above {port}")


def test_upgrade_without_a_running_stack_says_so(tmp_path):
    env = {**os.environ, "AGENT_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "stack", "upgrade"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no `python -m stack run` is running" in done.stderr
    assert not (tmp_path / "data" / "versions").exists()  # nothing was deployed
