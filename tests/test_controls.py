"""Steering, human approval and budgets, on the real stack."""

from __future__ import annotations

import time

from tests.agent_helpers import approvals, history, read_file, send_message, status, try_read_file, wait_idle

SCRIPTS = "tests.fakes.spine_scripts"


def resolve(stack, session: str, approval_id: str, decision: str, reason: str = ""):
    return stack.call("Agent", session, "resolve_approval",
                      {"approval_id": approval_id, "decision": decision, "reason": reason})


def test_steering_reaches_the_next_model_round_without_cancelling(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:steerable")
    task_id = send_message(stack, "steer", "do slow work")
    stack.wait_until(lambda: try_read_file(stack, "steer", "rounds.txt") == "round 0 saw 0\n",
                     message="first round")
    code, body = stack.call("Agent", "steer", "steer", {"text": "use tabs, not spaces"})
    assert code == 200 and body == {"task_id": task_id, "delivered_to": "running_task"}

    final = wait_idle(stack, "steer")
    assert final["plan"] == [{"title": "Work", "status": "done"}]  # the same task, not cancelled
    rounds = read_file(stack, "steer", "rounds.txt").splitlines()
    assert rounds[0] == "round 0 saw 0" and rounds[-1] == "round 2 saw 1", rounds
    messages = history(stack, "steer")
    assert [m["role"] for m in messages] == ["user", "user", "agent"]
    assert "use tabs, not spaces" in messages[-1]["text"]
    assert {m["task_id"] for m in messages} == {task_id}


def test_steering_when_idle_starts_a_task(stack_factory):
    stack = stack_factory("hello_world")
    code, body = stack.call("Agent", "idle-steer", "steer", {"text": "write hello.py"})
    assert code == 200 and body["delivered_to"] == "new_task"
    wait_idle(stack, "idle-steer")
    assert "hello" in read_file(stack, "idle-steer", "hello.py")


def test_approval_approve_deny_and_second_resolve(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:risky", env={"AGENT_APPROVAL": "patterns", "AGENT_APPROVAL_PATTERNS": "push"})
    send_message(stack, "ok", "deploy")
    [pending] = stack.wait_until(lambda: approvals(stack, "ok"), message="approval request")
    assert "pushes.txt" in pending["summary"] and "push" in pending["reason"] and pending["kind"] == "tool"
    assert status(stack, "ok")["state"] == "running"
    assert try_read_file(stack, "ok", "pushes.txt") is None  # nothing ran before the decision

    code, body = resolve(stack, "ok", pending["approval_id"], "approve")
    assert code == 200 and body["decision"] == "approve"
    wait_idle(stack, "ok")
    assert read_file(stack, "ok", "pushes.txt") == "pushed\n"
    code, body = resolve(stack, "ok", pending["approval_id"], "deny")
    assert code == 409 and "not pending" in str(body)
    assert read_file(stack, "ok", "pushes.txt") == "pushed\n"

    send_message(stack, "ok", "deploy again")
    [pending] = stack.wait_until(lambda: approvals(stack, "ok"), message="second approval request")
    code, _ = resolve(stack, "ok", pending["approval_id"], "deny", "not on a Friday")
    assert code == 200
    wait_idle(stack, "ok")
    assert read_file(stack, "ok", "pushes.txt") == "pushed\n"  # the denied command never ran
    answer = history(stack, "ok")[-1]
    assert answer["role"] == "agent" and "denied" in answer["text"] and "not on a Friday" in answer["text"]


def test_an_unanswered_approval_times_out_as_a_denial(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:risky", env={"AGENT_APPROVAL": "commands", "AGENT_APPROVAL_TIMEOUT_S": "2"})
    send_message(stack, "late", "deploy")
    stack.wait_until(lambda: approvals(stack, "late"), message="approval request")
    wait_idle(stack, "late", timeout=30)
    assert approvals(stack, "late") == []
    assert try_read_file(stack, "late", "pushes.txt") is None
    assert "nobody approved this call in time" in history(stack, "late")[-1]["text"]


def test_an_approval_wait_survives_worker_and_server_restarts(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:risky", env={"AGENT_APPROVAL": "commands"})
    send_message(stack, "wait", "deploy")
    [pending] = stack.wait_until(lambda: approvals(stack, "wait"), message="approval request")
    stack.kill_worker()
    stack.kill_restate()
    time.sleep(0.5)
    stack.start_restate()
    stack.start_worker()
    assert approvals(stack, "wait") == [pending]
    code, _ = resolve(stack, "wait", pending["approval_id"], "approve")
    assert code == 200
    wait_idle(stack, "wait")
    assert read_file(stack, "wait", "pushes.txt") == "pushed\n"


def test_an_exhausted_budget_pauses_and_the_user_continues(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:chatty", env={"AGENT_BUDGET_ROUNDS": "4"})
    send_message(stack, "budget", "count")
    [ask] = stack.wait_until(lambda: approvals(stack, "budget"), message="budget question")
    assert ask["kind"] == "budget" and "4 model rounds" in ask["reason"] and "continue" in ask["summary"]
    assert status(stack, "budget")["state"] == "running"  # paused, not failed
    assert read_file(stack, "budget", "count.txt") == "1\n2\n3\n"  # plan + 3 rounds = 4

    code, _ = resolve(stack, "budget", ask["approval_id"], "approve")
    assert code == 200
    final = wait_idle(stack, "budget")
    assert final["plan"][0]["status"] == "done"
    assert read_file(stack, "budget", "count.txt") == "".join(f"{n}\n" for n in range(1, 7))
    assert history(stack, "budget")[-1]["role"] == "agent"


def test_an_exhausted_budget_declined_stops_the_task_cleanly(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:chatty", env={"AGENT_BUDGET_ROUNDS": "3"})
    send_message(stack, "stop", "count")
    [ask] = stack.wait_until(lambda: approvals(stack, "stop"), message="budget question")
    resolve(stack, "stop", ask["approval_id"], "deny")
    final = wait_idle(stack, "stop")
    assert final["plan"][0]["status"] == "cancelled"
    last = history(stack, "stop")[-1]
    assert last["role"] == "event" and last["text"].startswith("task stopped: the budget of 3 model rounds")
    code, info = stack.call("Sandbox", "stop", "info")
    assert info["lease"] is None  # SAGA cleanup released the sandbox


def test_steering_that_arrives_as_the_task_completes_becomes_the_next_task(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:late_steer")
    first = send_message(stack, "late-steer", "write work.txt")
    stack.wait_until(lambda: try_read_file(stack, "late-steer", "work.txt") == "done\n", message="work.txt")
    time.sleep(0.5)  # the last (slow) model round is in flight: no model boundary is left
    code, body = stack.call("Agent", "late-steer", "steer", {"text": "also add a README"})
    assert code == 200 and body == {"task_id": first, "delivered_to": "running_task"}

    stack.wait_until(lambda: try_read_file(stack, "late-steer", "README.md") == "guided\n", timeout=30,
                     message="the follow-up task")
    wait_idle(stack, "late-steer")
    messages = history(stack, "late-steer")
    assert [m["role"] for m in messages] == ["user", "user", "agent", "agent"]
    assert messages[2]["task_id"] == first and messages[3]["task_id"] != first
