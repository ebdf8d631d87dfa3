"""The session event log: complete, ordered, and exactly once even when attempts are retried."""

from __future__ import annotations

import time
from collections import Counter

from tests.agent_helpers import send_message, status, try_read_file, wait_idle

SCRIPTS = "tests.fakes.spine_scripts"


def events(stack, session: str, after: int = 0) -> list[dict]:
    code, body = stack.call("Events", session, "read", {"after": after})
    assert code == 200, (code, body)
    return body["events"]


def test_a_task_records_every_event_once_in_order(stack_factory):
    stack = stack_factory("two_steps")
    task_id = send_message(stack, "ev", "write greet.py and test it")
    wait_idle(stack, "ev")
    stack.wait_until(lambda: events(stack, "ev")[-1]["kind"] == "final_answer", message="final event")
    log = events(stack, "ev")
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    kinds = [e["kind"] for e in log]
    assert kinds[:3] == ["user_message", "plan", "step_started"]
    assert kinds[-2:] == ["step_finished", "final_answer"]
    assert Counter(kinds)["tool_call"] == Counter(kinds)["tool_result"] == 5  # write; read, run; 2 finishes
    assert Counter(kinds)["model_round"] == 5
    assert all(e["task_id"] == task_id for e in log)
    result = next(e for e in log if e["kind"] == "tool_result" and "hi bob" in (e["detail"] or ""))
    assert result["ref"].startswith(task_id)
    # Reading from the middle returns exactly the rest.
    assert events(stack, "ev", after=4) == log[4:]


def test_events_are_not_duplicated_when_the_worker_is_killed(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:appender")
    send_message(stack, "evk", "append")
    stack.wait_until(lambda: try_read_file(stack, "evk", "log.txt") == "one\n", message="first append")
    time.sleep(1.0)
    stack.kill_worker()
    stack.start_worker()
    stack.wait_until(lambda: status(stack, "evk")["plan"][0]["status"] == "done", message="step 1")
    stack.kill_worker()
    stack.start_worker()
    wait_idle(stack, "evk", timeout=90)
    stack.wait_until(lambda: events(stack, "evk")[-1]["kind"] == "final_answer", message="final event")
    log = events(stack, "evk")
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    refs = [(e["kind"], e["ref"]) for e in log if e["kind"] in ("tool_call", "tool_result", "model_round")]
    assert len(refs) == len(set(refs)), [r for r, n in Counter(refs).items() if n > 1]
    assert Counter(e["kind"] for e in log)["final_answer"] == 1
