"""The run command (`python -m stack run`) as a user runs it: it starts everything, keeps a task
going when its worker is SIGKILLed, survives a restate-server SIGKILL, stops everything on
Ctrl-C, and starts again cleanly on the same data dir."""

from __future__ import annotations

import httpx

from stack import processes
from tests.agent_helpers import history, read_file, send_message, status, try_read_file, wait_idle
from tests.supervised import alive


def test_run_command_restarts_a_killed_worker_and_the_task_finishes(supervised):
    sup = supervised("tests.fakes.spine_scripts:appender")
    stack = sup.stack()

    send_message(stack, "sup", "append four lines")
    stack.wait_until(lambda: try_read_file(stack, "sup", "log.txt") == "one\n", message="first append")
    old_worker = sup.child_pid("worker")
    processes.kill_pgid(old_worker)  # SIGKILL the worker's process group, behind the supervisor's back
    stack.wait_until(lambda: sup.child_pid("worker") != old_worker and alive(sup.child_pid("worker")),
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
    assert not any(alive(pid) for pid in children)
    assert not list((sup.data_dir / "run").glob("*.pid"))

    # Run it again on the same data dir: no leftovers in the way, and the history is still there.
    sup.start()
    assert [m["role"] for m in history(stack, "sup")] == ["user", "agent"]
    assert sup.interrupt() == 0
