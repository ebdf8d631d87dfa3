"""Context that never overflows (app/window.py), end to end: the scripted model server has a
tokenizer (/apply-template, /tokenize) and refuses, as llama.cpp does, a prompt of more tokens
than its window; the worker counts with it."""

from __future__ import annotations

import json

from tests.agent_helpers import read_file, send_message, wait_idle
from tests.fakes.context_scripts import ROUNDS

SCRIPTS = "tests.fakes.context_scripts"
WINDOW = 4096


def windowed(stack_factory, script: str, window: int = WINDOW, **env: str):
    return stack_factory(f"{SCRIPTS}:{script}", env={"AGENT_CONTEXT_TOKENS": str(window), **env},
                         llm_args=["--context-tokens", str(window)])


def no_request_over_the_window(stack, window: int = WINDOW) -> None:
    requests = stack.llm_requests()
    assert requests and all(r["reply"].get("status", 200) == 200 for r in requests), \
        [r["reply"] for r in requests if r["reply"].get("status", 200) != 200]
    assert max(r["prompt_tokens"] for r in requests) <= window


def journal(stack, workflow_key: str) -> list[dict]:
    [invocation] = stack.query(
        f"SELECT id FROM sys_invocation WHERE target_service_name = 'Task' AND target_service_key = '{workflow_key}'")
    return stack.query(f"SELECT entry_type, name FROM sys_journal WHERE id = '{invocation['id']}'")


def test_a_command_output_far_larger_than_the_window_becomes_a_readable_pointer(stack_factory):
    stack = windowed(stack_factory, "huge_output")
    send_message(stack, "huge", "print the numbers to 20000 and look at them")
    final = wait_idle(stack, "huge", timeout=90)

    assert [p["status"] for p in final["plan"]] == ["done"], final
    no_request_over_the_window(stack)
    # Round 2 saw the output clipped, with where the whole of it is; round 3 read that file
    # (read_file, the ordinary tool) and round 4 the command's own full log.
    rounds = [r["request"]["messages"] for r in stack.llm_requests() if "run_command" in str(r["request"].get("tools"))]
    pointer_read = rounds[2][-1]["content"]
    log_read = rounds[3][-1]["content"]
    assert pointer_read.startswith("exit code: 0\nstdout:\n1\n2\n3\n"), pointer_read[:200]
    assert log_read.startswith("$ seq 1 20000\n--- stdout (108894 bytes) ---\n1\n2\n"), log_read[:200]
    # The files hold everything, whatever the window let the model see at once.
    saved_path, log_path = read_paths(stack)
    saved = read_file(stack, "huge", saved_path)
    assert saved_path.startswith(".agent/context/") and log_path.startswith(".agent/outputs/")
    assert saved.startswith("exit code: 0\nstdout:\n1\n2\n3\n") and log_path in saved
    full_log = read_file(stack, "huge", log_path)
    stdout = full_log.split("--- stdout (108894 bytes) ---\n")[1].split("--- stderr")[0]
    assert stdout.split() == [str(n) for n in range(1, 20001)]


def test_earlier_rounds_are_summarised_once_even_when_the_worker_dies_in_the_summary(stack_factory):
    stack = windowed(stack_factory, "many_rounds", AGENT_MAX_ROUNDS="20")
    task_id = send_message(stack, "rounds", "append eight rounds")
    # The summariser answers after 3 s: kill the worker while it waits.
    stack.wait_until(lambda: any("record_summary" in str(r["request"].get("tools")) for r in stack.llm_requests()),
                     timeout=60, message="a summarisation request")
    stack.kill_worker()
    stack.start_worker()
    final = wait_idle(stack, "rounds", timeout=90)

    assert [p["status"] for p in final["plan"]] == ["done"], final
    no_request_over_the_window(stack)
    # Nothing lost, nothing twice: every round's command ran once, in order.
    assert read_file(stack, "rounds", "runs.txt").split() == [str(n) for n in range(ROUNDS)]
    # One journal entry per summary, however often the killed one was asked for.
    summaries = [e for e in journal(stack, task_id) if "summarise" in (e.get("name") or "")]
    names = [e["name"] for e in summaries]
    assert len(names) >= 2 and len(names) == len(set(names)), names  # the second folds in the first
    asked = [r for r in stack.llm_requests() if "record_summary" in str(r["request"].get("tools"))]
    assert len([r for r in asked if r["attempt"] == 0]) == len(names)
    assert len([r for r in asked if r["attempt"] > 0]) == 1  # the one in flight at the kill, asked again
    # Later rounds see the summary in place of the early ones.
    last = stack.llm_requests()[-1]["request"]["messages"]
    assert any("Summary of this step's rounds 1-" in (m.get("content") or "") for m in last)


def test_the_planner_sees_a_long_conversation_summarised_not_cut(stack_factory):
    stack = windowed(stack_factory, "long_conversation", window=8192)
    words = " ".join(f"word{n}" for n in range(160))  # about 800 tokens: two fit in a quarter of 8,192
    for n, name in enumerate(["first", "second", "third"]):
        send_message(stack, "chat", f"{name} request: {words}")
        wait_idle(stack, "chat", timeout=60)

    no_request_over_the_window(stack, 8192)
    [summariser] = [r["request"] for r in stack.llm_requests() if "record_summary" in str(r["request"].get("tools"))]
    assert f"user: first request: {words}" in summariser["messages"][-1]["content"]  # whole, not cut
    plan = [r["request"] for r in stack.llm_requests() if "make_plan" in str(r["request"].get("tools"))][-1]
    seen = plan["messages"][-1]["content"]
    assert seen.startswith("(summary of the earlier conversation) EARLIER-CONVERSATION-SUMMARY\n")
    assert seen.endswith(f"user: third request: {words}") and "first request" not in seen


def read_paths(stack) -> list[str]:
    """The paths the model asked read_file for, in order."""
    paths: list[str] = []
    for entry in stack.llm_requests():
        for message in entry["request"]["messages"]:
            for call in message.get("tool_calls") or []:
                if call["function"]["name"] == "read_file":
                    path = json.loads(call["function"]["arguments"])["path"]
                    paths += [path] if path not in paths else []
    return paths
