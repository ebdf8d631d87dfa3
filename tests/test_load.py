"""Many sessions at once: many requests over the worker's connections cut no invocation off,
and commands beyond the host's cap wait for a slot, visibly.

Restate multiplexes every invocation over a few long-lived HTTP/2 connections to the worker.
hypercorn's default closed such a connection after 1,000 requests and dropped every stream
still on it: at 200+ concurrent sessions that happened every few seconds, and a command cut
off mid-run came back "outcome unknown" (and sometimes never ran). Here a command is held in
flight while 1,100 more requests of its session go through the worker (Restate gives each
partition its own connection, so one session's requests share one), then let go: it ran once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.agent_helpers import events, read_file, sandbox_info, send_message, status, wait_idle
from tests.fakes.load_scripts import expected_runs

SCRIPT = "tests.fakes.load_scripts:load"
SESSION = "held"
GATE = "go"
REQUESTS = 1_100  # more than hypercorn's old per-connection limit (1,000) on their own


def running_commands(stack, session: str) -> list[Path]:
    """The session's commands in flight: the local backend's op records (sandbox/ops.py)."""
    return list(Path(stack.data_dir, "sandboxes").glob(f"{session}-g*/ops/*.json"))


def open_gate(stack, session: str) -> None:
    for project in Path(stack.data_dir, "sandboxes").glob(f"{session}-g*/project"):
        (project / GATE).touch()


def test_a_thousand_requests_cut_no_command_off(stack_factory):
    stack = stack_factory(SCRIPT)
    send_message(stack, SESSION, f"rounds=1 gate={GATE}")
    stack.wait_until(lambda: running_commands(stack, SESSION), timeout=60, message="the command to be running")

    # Each status call is one invocation: one more request on Restate's connection to the worker.
    with ThreadPoolExecutor(8) as pool:
        states = list(pool.map(lambda _: status(stack, SESSION)["state"], range(REQUESTS)))
    open_gate(stack, SESSION)
    wait_idle(stack, SESSION, timeout=60)

    results = [e["detail"] or e["text"] for e in events(stack, SESSION, "tool_result")]
    assert not [r for r in results if "outcome unknown" in r], results
    assert read_file(stack, SESSION, "runs.txt") == expected_runs(1)  # it ran, once
    assert states.count("running") == REQUESTS  # and it was in flight through every request


def test_a_command_beyond_the_cap_waits_for_a_slot_and_says_so(stack_factory):
    stack = stack_factory(SCRIPT, env={"SANDBOX_MAX_RUNNING_COMMANDS": "1"})
    send_message(stack, "first", f"rounds=1 gate={GATE}")
    stack.wait_until(lambda: running_commands(stack, "first"), timeout=60, message="the first command to run")
    send_message(stack, "second", "rounds=1")  # its command needs the slot the first one holds

    waiting = stack.wait_until(lambda: (i := sandbox_info(stack, "second"))["command"] and i, timeout=60,
                               message="the second command to wait")
    assert waiting["command"] == "waiting for a sandbox slot"
    assert waiting["slots"] == {"total": 1, "in_use": 1, "waiting": 1}
    assert sandbox_info(stack, "first")["command"] is None  # it runs: it is not waiting
    assert not running_commands(stack, "second")  # not started

    open_gate(stack, "first")
    for session in ("first", "second"):
        wait_idle(stack, session, timeout=60)
        assert read_file(stack, session, "runs.txt") == expected_runs(1)
    assert sandbox_info(stack, "second")["slots"] == {"total": 1, "in_use": 0, "waiting": 0}
