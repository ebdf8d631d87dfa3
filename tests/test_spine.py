"""The spine, end to end: real restate-server, real hypercorn worker, real bubblewrap, and a
scripted OpenAI-compatible model server driven through the real `openai` client."""

from __future__ import annotations

import signal
import time

import httpx

from app.once import WORKER_STOPPED
from stack import processes
from tests.agent_helpers import (
    history, read_file, repeated_requests, send_message, status, tool_results, try_read_file, wait_idle,
)

SCRIPTS = "tests.fakes.spine_scripts"


def release_calls(stack, task_id: str) -> int:
    """How many times the task's journal called Sandbox.release."""
    [invocation] = stack.query(
        f"SELECT id FROM sys_invocation WHERE target_service_name = 'Task' AND target_service_key = '{task_id}'")
    calls = stack.query(
        f"SELECT entry_json FROM sys_journal WHERE id = '{invocation['id']}' AND entry_type = 'Command: Call'")
    return sum(1 for c in calls if '"handler":"release"' in c["entry_json"])


def test_message_plans_runs_tools_and_answers(stack_factory):
    stack = stack_factory("two_steps")
    task_id = send_message(stack, "s1", "write greet.py and test it")
    final = wait_idle(stack, "s1")

    assert [p["status"] for p in final["plan"]] == ["done", "done"]
    assert [p["title"] for p in final["plan"]] == ["Write the module", "Test it"]
    assert "def greet(name)" in read_file(stack, "s1", "greet.py")
    assert "hi bob" in "\n".join(tool_results(stack))  # the command really ran in the sandbox
    messages = history(stack, "s1")
    assert [(m["role"], m["task_id"]) for m in messages] == [("user", task_id), ("agent", task_id)]
    assert "greet.py prints 'hi bob'" in messages[-1]["text"]
    assert final["last_usage"]["rounds"] == 1 + 2 + 3  # plan + step 1 + step 2
    assert repeated_requests(stack) == []


def test_worker_killed_in_a_tool_call_between_steps_and_in_a_model_call(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:appender")
    send_message(stack, "crash", "append four lines")

    # 1. Inside the slow command (it sleeps 3 s before appending "two").
    stack.wait_until(lambda: try_read_file(stack, "crash", "log.txt") == "one\n", message="first append")
    time.sleep(1.0)
    stack.kill_worker()
    stack.start_worker()

    # 2. Between the steps: step 1 is done, step 2's first (slow, 3 s) model round is in flight.
    stack.wait_until(lambda: status(stack, "crash")["plan"][0]["status"] == "done", message="step 1 done")
    stack.kill_worker()
    stack.start_worker()

    # 3. Inside that slow model round, if it is still running.
    time.sleep(1.0)
    stack.kill_worker()
    stack.start_worker()

    final = wait_idle(stack, "crash", timeout=90)
    assert [p["status"] for p in final["plan"]] == ["done", "done"]
    # No command ran twice. The one killed mid-run was not re-run: the model was told its
    # outcome is unknown (here it had not appended yet: bubblewrap died with the worker).
    assert read_file(stack, "crash", "log.txt") == "one\nthree\nfour\n"
    [unknown] = [r for r in tool_results(stack) if "outcome unknown" in r]
    assert WORKER_STOPPED in unknown  # a killed worker is told as such, not as a lost connection
    # Every completed model round was asked once; only rounds cut off mid-call were asked again.
    repeats = repeated_requests(stack)
    assert len(repeats) <= 2, [r["reply"] for r in repeats]
    rounds = [e for e in stack.llm_requests() if e["attempt"] == 0]
    assert len(rounds) == 1 + 3 + 3  # plan, step 1, step 2: each distinct request once
    assert [m["role"] for m in history(stack, "crash")] == ["user", "agent"]


def test_worker_stopped_with_sigterm_mid_command_exits_by_itself_and_the_task_finishes(stack_factory):
    """A stop (SIGTERM to the worker's process group, as the supervisor or any orchestrator
    sends it) ends the worker by itself, within hypercorn's graceful_timeout (3 s): no SIGKILL
    needed. The next worker carries the task on, with nothing done twice."""
    stack = stack_factory(f"{SCRIPTS}:appender")
    send_message(stack, "term", "append four lines")
    stack.wait_until(lambda: try_read_file(stack, "term", "log.txt") == "one\n", message="first append")
    time.sleep(1.0)  # inside `sleep 3; echo two >> log.txt`
    worker, stack.worker = stack.worker, None
    processes.signal_group(worker.pid, signal.SIGTERM)
    try:
        assert worker.wait(timeout=10) == 0
    finally:
        processes.kill_group(worker)  # whatever is left if it did not stop
    stack.start_worker()

    final = wait_idle(stack, "term", timeout=90)
    assert [p["status"] for p in final["plan"]] == ["done", "done"]
    lines = read_file(stack, "term", "log.txt").splitlines()
    # The command cut off by the stop may or may not have appended "two"; nothing ran twice.
    assert [line for line in lines if line != "two"] == ["one", "three", "four"] and lines.count("two") <= 1, lines


def test_restate_server_killed_mid_task(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:appender")
    send_message(stack, "srv", "append four lines")
    stack.wait_until(lambda: status(stack, "srv")["plan"][0]["status"] == "done", timeout=60,
                     message="step 1 done")
    stack.kill_restate()  # step 2's slow model round is in flight
    time.sleep(0.5)
    stack.start_restate()

    final = wait_idle(stack, "srv", timeout=90)
    assert [p["status"] for p in final["plan"]] == ["done", "done"]
    assert read_file(stack, "srv", "log.txt") == "one\ntwo\nthree\nfour\n"
    assert [m["role"] for m in history(stack, "srv")] == ["user", "agent"]


def test_a_new_message_interrupts_the_running_task(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:interruptible")
    first = send_message(stack, "int", "first request: do slow work")
    stack.wait_until(lambda: try_read_file(stack, "int", "first.txt") == "started\n", message="slow command")

    second = send_message(stack, "int", "second request: write a note")
    final = wait_idle(stack, "int")

    assert [p["title"] for p in final["plan"]] == ["Quick note"]
    assert read_file(stack, "int", "note.txt") == "second\n"
    messages = history(stack, "int")
    assert [(m["role"], m["task_id"]) for m in messages] == [
        ("user", first), ("event", first), ("user", second), ("agent", second)]
    assert messages[1]["text"].startswith("task interrupted")
    # The second task's plan request saw both messages.
    plan_requests = [e["request"] for e in stack.llm_requests() if "make_plan" in str(e["request"].get("tools"))]
    assert "first request" in str(plan_requests[-1]) and "second request" in str(plan_requests[-1])
    # The first task's cleanup ran once: it released its lease, and its late report changed nothing.
    assert release_calls(stack, first) == 1
    code, info = stack.call("Sandbox", "int", "info")
    assert code == 200 and info["lease"] is None
    time.sleep(0.5)
    assert len(history(stack, "int")) == 4  # still: the stale report added nothing
    assert first != second


def test_bad_input_gets_a_clear_error_and_changes_nothing(stack_factory):
    stack = stack_factory("echo")
    response = httpx.post(stack.ingress.url("Agent", "bad", "message"), content=b'{"text": "unterminated',
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 400 and "malformed JSON" in response.text
    code, body = stack.call("Agent", "bad", "message", {"txt": "typo"})
    assert code == 400 and "text" in str(body)
    code, body = stack.call("Agent", "bad", "message", {"text": "x" * 20_000})
    assert code == 400 and "limit" in str(body)
    code, body = stack.call("Agent", "bad/../x", "message", {"text": "hi"})
    assert code in (400, 404)
    code, body = stack.call("Agent", "bad\n", "message", {"text": "hi"})  # `$` matched before a newline
    assert code == 400 and "invalid session id" in str(body), (code, body)
    # None of that created the session.
    code, body = stack.call("Agent", "bad", "history")
    assert code == 404 and "unknown session" in str(body)
    code, body = stack.call("Agent", "nobody", "status")
    assert code == 404

    code, body = stack.call("Sandbox", "bad", "read_file", {"path": "x"})
    assert code == 404
    code, body = stack.call("Sandbox", "bad", "exec", {"op_id": "x", "command": "id"})
    assert code in (400, 403, 404)  # ingress-private: not reachable from outside


def test_path_traversal_through_the_ingress_is_refused(stack_factory):
    stack = stack_factory("hello_world")
    send_message(stack, "pt", "write hello.py")
    wait_idle(stack, "pt")
    for path in ["../../etc/passwd", "/etc/passwd", "a/../../b"]:
        code, body = stack.call("Sandbox", "pt", "read_file", {"path": path})
        assert code == 400, (path, code, body)
    assert "hello" in read_file(stack, "pt", "hello.py")


def test_model_mistakes_come_back_as_tool_errors_and_the_task_completes(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:clumsy")
    send_message(stack, "oops", "write ok.txt")
    final = wait_idle(stack, "oops")

    assert [p["status"] for p in final["plan"]] == ["done"]
    assert read_file(stack, "oops", "ok.txt") == "fine\n"
    errors = [r for r in tool_results(stack) if r.startswith("error:")]
    assert len(errors) == 4, errors
    assert "unknown tool 'launch_rockets'" in errors[0]
    assert "invalid arguments for write_file" in errors[1]
    assert "command" in errors[2]
    assert ".." in errors[3] or "outside" in errors[3]
    assert history(stack, "oops")[-1]["role"] == "agent"


def test_a_rejected_model_request_fails_the_task_with_a_reason(stack_factory):
    stack = stack_factory("bad_request")
    send_message(stack, "rej", "anything")
    wait_idle(stack, "rej")
    last = history(stack, "rej")[-1]
    assert last["role"] == "event"
    assert last["text"].startswith("task failed: model request rejected (400)")
    code, info = stack.call("Sandbox", "rej", "info")
    assert info["lease"] is None  # the compensation released the sandbox


def test_rate_limited_model_is_retried_and_the_task_completes(stack_factory):
    stack = stack_factory("rate_limited")
    send_message(stack, "rl", "write a note")
    final = wait_idle(stack, "rl")
    assert [p["status"] for p in final["plan"]] == ["done"]
    assert read_file(stack, "rl", "note.txt") == "patience\n"
    assert len(repeated_requests(stack)) == 1  # the 429, then the answer


def test_interrupt_without_a_new_message(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:interruptible")
    task = send_message(stack, "stop", "first request: do slow work")
    stack.wait_until(lambda: try_read_file(stack, "stop", "first.txt") == "started\n", message="slow command")
    code, body = stack.call("Agent", "stop", "interrupt")
    assert code == 200 and body == {"interrupted": True, "task_id": task}
    assert status(stack, "stop")["state"] == "idle"
    assert history(stack, "stop")[-1]["role"] == "event"
    code, body = stack.call("Agent", "stop", "interrupt")
    assert code == 200 and body["interrupted"] is False


def test_model_server_killed_mid_call(stack_factory):
    stack = stack_factory("slow_model")  # the first step round answers after 3 s
    send_message(stack, "llm", "write a note")
    stack.wait_until(lambda: len(stack.llm_requests()) >= 2, message="the slow model round")
    stack.kill_llm()
    time.sleep(1.0)  # the worker's call fails meanwhile and is retried with backoff
    stack.start_llm()
    final = wait_idle(stack, "llm", timeout=90)
    assert [p["status"] for p in final["plan"]] == ["done"]
    assert read_file(stack, "llm", "note.txt") == "slow\n"
    assert [m["role"] for m in history(stack, "llm")] == ["user", "agent"]


def test_a_model_repeating_a_call_that_worked_is_refused_then_the_step_closes(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:repeater")
    send_message(stack, "rep", "write same.txt")
    final = wait_idle(stack, "rep")
    assert [p["status"] for p in final["plan"]] == ["done"]
    assert read_file(stack, "rep", "same.txt") == "once\n"
    # Round 1 wrote it; rounds 2 and 3 repeated it and were refused (nothing ran); then closed.
    assert final["last_usage"]["rounds"] == 1 + 3
    results = [r for r in tool_results(stack)]
    assert results[0].startswith("wrote 5 bytes") and "exactly the call you made" in results[1]
    assert "closed: the model kept repeating this call" in history(stack, "rep")[-1]["text"]
