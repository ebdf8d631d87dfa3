"""Real conditions on the real stack: long waits, crashes inside edits, bookkeeping a command
deletes, settings that change under a running task, a context that fills up, clients that
always send a body, and a sandbox that dies under the task."""

from __future__ import annotations

import asyncio
import time

from sandbox import LocalLimits, create_backend
from tests.agent_helpers import (
    approvals, events, read_file, sandbox_info, send_message, tool_results, try_read_file, wait_idle,
)

SCRIPTS = "tests.fakes.conditions_scripts"


def test_a_read_after_the_sandbox_was_suspended_brings_it_back_even_across_a_worker_kill(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:read_after_a_long_wait", env={"SANDBOX_IDLE_S": "1"})
    send_message(stack, "wait", "write keep.txt, think, read it")

    # The model thinks for 4 s; meanwhile the idle timer suspends the sandbox.
    stack.wait_until(lambda: sandbox_info(stack, "wait")["state"] == "suspended", timeout=20,
                     message="suspension during the model round")
    stack.kill_worker()
    stack.start_worker()

    final = wait_idle(stack, "wait", timeout=60)
    assert [p["status"] for p in final["plan"]] == ["done"], final
    assert "kept\n" in tool_results(stack)
    assert sandbox_info(stack, "wait")["restores"] >= 1


def test_a_public_read_of_a_suspended_sandbox_resumes_it(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:read_after_a_long_wait", env={"SANDBOX_IDLE_S": "1"})
    send_message(stack, "peek", "write keep.txt, think, read it")
    wait_idle(stack, "peek", timeout=60)
    stack.wait_until(lambda: sandbox_info(stack, "peek")["state"] == "suspended", timeout=20, message="suspension")

    assert read_file(stack, "peek", "keep.txt") == "kept\n"
    assert sandbox_info(stack, "peek")["state"] == "running"


def test_worker_killed_around_an_edit_applies_it_exactly_once(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:edit_that_contains_its_text")
    send_message(stack, "edit", "edit the greeting")

    # The edit's answer leaves the model 2 s after it was asked; kill the worker as it lands
    # (inside the edit, or right after it), and again for the write that follows.
    for number in (1, 2):
        asked = stack.wait_until(lambda: [e for e in stack.llm_requests() if e["reply"].get("delay_s")][number - 1:],
                                 message=f"slow model round {number}")
        time.sleep(max(0.0, asked[0]["time"] + 2.0 - time.time()) + 0.02)
        stack.kill_worker()
        stack.start_worker()

    final = wait_idle(stack, "edit", timeout=60)
    assert [p["status"] for p in final["plan"]] == ["done"], final
    assert read_file(stack, "edit", "greet.txt") == "hello hello\n"
    assert read_file(stack, "edit", "after.txt") == "written once\n"
    assert not any("not found" in r for r in tool_results(stack))


def test_a_command_that_deletes_everything_it_can_reach_still_runs_at_most_once(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:wipes_then_sleeps", env={"AGENT_MAX_ROUNDS": "8"})
    send_message(stack, "wipe", "clean up")
    stack.wait_until(lambda: try_read_file(stack, "wipe", "runs.txt") == "run\n", message="the command started")
    time.sleep(0.5)
    stack.kill_worker()
    stack.start_worker()

    wait_idle(stack, "wipe", timeout=60)
    assert read_file(stack, "wipe", "runs.txt") == "run\n"  # never re-run
    assert sum("outcome unknown" in r for r in tool_results(stack)) == 1


def test_a_task_keeps_the_settings_it_started_with_across_a_worker_restart(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:approve_then_two_steps", env={"AGENT_APPROVAL": "commands"})
    send_message(stack, "pinned", "run, then write")
    [pending] = stack.wait_until(lambda: approvals(stack, "pinned"), message="approval request")

    stack.kill_worker()
    stack.extra_env.update({"AGENT_APPROVAL": "none", "AGENT_MAX_STEPS": "1"})
    stack.start_worker()
    code, _ = stack.call("Agent", "pinned", "resolve_approval",
                         {"approval_id": pending["approval_id"], "decision": "approve"})
    assert code == 200

    final = wait_idle(stack, "pinned", timeout=60)
    assert [p["status"] for p in final["plan"]] == ["done", "done"], final
    assert read_file(stack, "pinned", "ran.txt") == "ran\n"
    assert read_file(stack, "pinned", "note.txt") == "second step\n"

    send_message(stack, "pinned", "again")  # a new task runs with the new settings: no approval
    final = wait_idle(stack, "pinned", timeout=60)
    assert approvals(stack, "pinned") == [] and read_file(stack, "pinned", "ran.txt") == "ran\nran\n"


def test_a_step_whose_outputs_outgrow_the_context_still_finishes(stack_factory):
    # The scripted server refuses a prompt over 4,096 tokens at 4 characters a token, as
    # llama.cpp refuses one longer than its context.
    stack = stack_factory(f"{SCRIPTS}:chatty_outputs", env={"AGENT_CONTEXT_TOKENS": "4096", "AGENT_MAX_ROUNDS": "12"},
                          llm_args=["--max-prompt-chars", str(4096 * 4)])
    send_message(stack, "long", "print a lot")
    final = wait_idle(stack, "long", timeout=90)
    assert [p["status"] for p in final["plan"]] == ["done"], (final, stack.llm_requests()[-1]["reply"])
    last = stack.llm_requests()[-1]["request"]["messages"]
    assert any("removed to fit the model's context" in (m.get("content") or "") for m in last)


def test_handlers_without_input_accept_an_empty_body_or_an_empty_object(stack_factory):
    stack = stack_factory("hello_world")
    send_message(stack, "body", "hello")
    wait_idle(stack, "body")
    for service, handler in [("Agent", "status"), ("Agent", "history"), ("Agent", "approvals"),
                             ("Agent", "interrupt"), ("Sandbox", "info")]:
        for body in (None, {}):
            code, answer = stack.call(service, "body", handler, body)
            assert code == 200, (service, handler, body, code, answer)
        code, answer = stack.call(service, "body", handler, {"unexpected": 1})
        assert code == 400 and "takes no input" in str(answer), (service, handler, code, answer)
    code, _ = stack.call("Agent", "body", "reset", {})
    assert code == 200 and sandbox_info(stack, "body")["state"] == "released"


def test_a_sandbox_that_dies_under_the_task_is_replaced_and_the_rollback_is_told(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:read_after_a_long_wait", env={"SANDBOX_IDLE_S": "600"})
    send_message(stack, "lost", "write keep.txt, think, read it")
    stack.wait_until(lambda: try_read_file(stack, "lost", "keep.txt") == "kept\n", message="the write")
    # While the model thinks, the sandbox dies (as a VM would): nothing was snapshotted yet.
    doomed = sandbox_info(stack, "lost")["sandbox_id"]
    backend = create_backend("local", stack.data_dir / "sandboxes", LocalLimits())
    asyncio.run(backend.terminate(doomed))

    final = wait_idle(stack, "lost", timeout=60)
    assert final["state"] == "idle"
    # The read that found it gone ran on the replacement, where keep.txt is missing: the model
    # is told why, in that very result.
    told = [r for r in tool_results(stack) if "[sandbox] The sandbox was lost" in r]
    assert len(told) == 1 and "replaced from an empty workspace" in told[0], tool_results(stack)
    assert "keep.txt' does not exist" in told[0]
    assert [e["text"] for e in events(stack, "lost", "sandbox")] == ["sandbox lost; restored from an empty workspace (there was no snapshot)"]
    info = sandbox_info(stack, "lost")
    assert info["rollbacks"] == 1 and info["sandbox_id"] != doomed


def test_bookkeeping_is_pruned_old_snapshots_and_finished_tasks_markers_go(stack_factory):
    # Without checkpoints, which hold their own snapshots (tests/test_rewind_fork.py).
    stack = stack_factory(f"{SCRIPTS}:wipes_then_sleeps", env={"SANDBOX_IDLE_S": "1", "AGENT_CHECKPOINTS": "off"})
    sandboxes = stack.data_dir / "sandboxes"
    for n in range(3):
        send_message(stack, "prune", f"clean up, round {n}")
        wait_idle(stack, "prune", timeout=60)
        # The finished task's operation markers went with its release.
        assert not [p.name for p in sandboxes.glob("prune-g*/markers/*")]
        stack.wait_until(lambda: sandbox_info(stack, "prune")["state"] == "suspended", timeout=20,
                         message="suspension")
    assert len(list((sandboxes / "snapshots").glob("prune-*"))) == 2  # three taken, two kept
    assert read_file(stack, "prune", "runs.txt") == "run\n"  # the newest is what a restore uses
