"""Request/response mode (WORKER_PROTOCOL=request-response): Restate sends one HTTP/1.1 request
per step and the worker answers it, as on a serverless platform. A whole task works this way, and
keeps working when no worker process outlives a single request."""

from __future__ import annotations

from pathlib import Path

from stack.processes import http_client
from tests.agent_helpers import (
    approvals, history, read_file, repeated_requests, send_message, status, try_read_file, wait_idle,
)

SCRIPTS = "tests.fakes.serverless_scripts"
APPROVE_PUSHES = {"AGENT_APPROVAL": "patterns", "AGENT_APPROVAL_PATTERNS": "push"}

def deployment(stack) -> dict:
    [only] = http_client().get(f"http://127.0.0.1:{stack.admin_port}/deployments").json()["deployments"]
    return only

def test_a_whole_task_with_an_approval_and_an_interrupt_in_request_response_mode(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:build_and_deploy", env=APPROVE_PUSHES, protocol="request-response")
    registered = deployment(stack)
    assert (registered["protocol_type"], registered["http_version"]) == ("RequestResponse", "HTTP/1.1")

    # Plan, a step with a file and a command, then a step whose push waits for a person.
    first = send_message(stack, "rr", "build and deploy")
    [pending] = stack.wait_until(lambda: approvals(stack, "rr"), message="approval request")
    assert try_read_file(stack, "rr", "pushes.txt") is None
    code, _ = stack.call("Agent", "rr", "resolve_approval", {"approval_id": pending["approval_id"], "decision": "approve"})
    assert code == 200
    final = wait_idle(stack, "rr")
    assert [(p["title"], p["status"]) for p in final["plan"]] == [("Build", "done"), ("Deploy", "done")]
    assert read_file(stack, "rr", "build.txt") == "v1\n"
    assert read_file(stack, "rr", "pushes.txt") == "pushed\n"

    # A second task parks on its approval; interrupting it ends it, and the push never runs.
    second = send_message(stack, "rr", "push again")
    stack.wait_until(lambda: approvals(stack, "rr"), message="second approval request")
    code, body = stack.call("Agent", "rr", "interrupt")
    assert (code, body) == (200, {"interrupted": True, "task_id": second})
    assert status(stack, "rr")["state"] == "idle" and approvals(stack, "rr") == []
    assert read_file(stack, "rr", "pushes.txt") == "pushed\n"
    messages = history(stack, "rr")
    assert [(m["role"], m["task_id"]) for m in messages] == [
        ("user", first), ("event", first), ("event", first), ("agent", first),  # asked, approved, done
        ("user", second), ("event", second), ("event", second)]                 # asked, interrupted
    assert messages[-1]["text"].startswith("task interrupted")
    assert repeated_requests(stack) == []  # no model round was asked twice


def test_scale_to_zero_every_request_meets_a_cold_worker_and_nothing_is_lost_or_repeated(stack_factory):
    # No worker runs until Restate sends a request; each is SIGKILLed once it has answered.
    # Checkpoints off: a workspace snapshot per step would only add requests (and cold starts).
    # Restate abandons a request that shows no progress for a minute (and tries again): a cold
    # start on a busy 2-core machine must not count as that.
    stack = stack_factory(f"{SCRIPTS}:one_command", env={"AGENT_CHECKPOINTS": "off"},
                          restate_env={"RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT": "5m"},
                          protocol="request-response", scale_to_zero=True)
    task_id = send_message(stack, "cold", "count once")
    # Waiting on the workflow's result through the ingress, not by polling a handler: every poll
    # would be one more cold start.
    done = http_client().get(f"{stack.ingress.base_url}/restate/workflow/Task/{task_id}/attach", timeout=600)
    assert done.status_code == 200, done.text

    assert read_file(stack, "cold", "count.txt") == "1\n"  # the command ran exactly once
    # The task reports its answer to the session one-way: wait for it, gently (each poll is a
    # cold start too).
    stack.wait_until(lambda: [m["role"] for m in history(stack, "cold")] == ["user", "agent"], timeout=120,
                     interval=1.0, message="the answer in the history")
    assert repeated_requests(stack) == []
    assert len(stack.llm_requests()) == 3  # plan, the command's round, the finish round: once each

    served = stack.on_demand.forwarded
    invocations = [f for f in served if f.path.startswith("/invoke/")]
    assert {"/invoke/Agent/message", "/invoke/Task/run", "/invoke/Sandbox/exec"} <= {f.path for f in invocations}
    assert len(invocations) > 10  # the task really was cut into many requests
    assert all(f.status == 200 for f in served)
    assert len({f.worker_pid for f in served}) == len(served)  # a fresh worker for each request
    assert not any(Path(f"/proc/{f.worker_pid}").exists() for f in served)  # and none left running
