"""Results a user can trust, end to end: the harness runs the checks itself, and the answer says
what they showed, whatever the model claims.

Real restate-server, hypercorn worker and bubblewrap, and a scripted model (tests/fakes/
trust_scripts.py) that writes calc.py and its unittest tests. Before a step may finish (and
right after a Python file is written), the harness runs the tests as a tool call of its own,
its op id derived from the call it ran for (`<task>/s<N>/r<R>/c<I>/.../check<K>`); the task's
answer carries the evidence, and its verdict (verified | failed | unverified) goes into the
final_answer event, `Agent/{s}/status` and the history. What is decided is tested
in-process in tests/test_brain.py; here, that it holds on the real stack and through a crash.
"""

from __future__ import annotations

import json
import re
import time

from app.brain import checks
from tests.agent_helpers import events, history, read_file, send_message, status, tool_results, try_read_file, wait_idle
from tests.fakes.trust_scripts import CLAIM, FIRST, RUNS_FILE, SECOND

SCRIPTS = "tests.fakes.trust_scripts"
REQUEST = "write calc.py with add(a, b) and unittest tests for it"
# The exact command the harness runs the tests with (the sandbox has pytest).
TESTS = checks.tests_check(["test_calc.py"], pytest=True).command
FAILING = "2 tests, 1 failed, 1 passed"  # what pytest says of the wrong add
# A step whose checks fail twice (or three times) ends failed (the default bound is 6, with
# fresh samples of the failing file between: not what these tests are about).
TWO_TRIES = {"AGENT_CHECK_FAILURES": "2"}
THREE_TRIES = {"AGENT_CHECK_FAILURES": "3", "AGENT_RESAMPLES": "0"}


def check_ref(task_id: str, round_no: int) -> str:
    """The id of the first check a finish in step 1, round `round_no`, ran."""
    return f"{task_id}/s1/r{round_no}/c0/check0"


def is_check_ref(ref: str, task_id: str) -> bool:
    """Whether `ref` names a check of the harness's own in step 1 of the task: its op id is
    derived from the call it ran for (a finish, a write), `<task>/s1/r<R>/c<I>/.../check<K>`."""
    return re.fullmatch(rf"{re.escape(task_id)}/s1/r\d+/c\d+(/\w+)*/check\d+", ref) is not None


def checks_run(stack, session: str, task_id: str) -> list[tuple[str, str]]:
    """(ref, text) of each check of the task the event log shows, in order."""
    return [(e["ref"], e["text"]) for e in events(stack, session, "check")
            if e["task_id"] == task_id]


def final_verdict(stack, session: str) -> dict:
    """The verdict the latest final_answer event carries."""
    return json.loads(events(stack, session, "final_answer")[-1]["detail"])


def kill_the_worker_while_the_tests_run(stack, session: str) -> dict:
    """SIGKILL the worker's process group once the slow tests are running (they record each
    run in the workspace), start it again, and return the session's status once it is idle."""
    stack.wait_until(lambda: try_read_file(stack, session, RUNS_FILE), timeout=60,
                     message="the harness's check running the slow tests")
    stack.kill_worker()
    time.sleep(0.5)
    stack.start_worker()
    return wait_idle(stack, session, timeout=120)


def test_a_claim_that_the_tests_pass_is_refused_by_the_harnesss_own_run_and_the_answer_says_so(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:claims_green", env=THREE_TRIES)
    task_id = send_message(stack, "s1", REQUEST)
    final = wait_idle(stack, "s1")

    # "All tests pass", said after writing a wrong add: the finish is refused with what the
    # harness's own run of the tests showed, the runner's own words included.
    [told] = [r for r in tool_results(stack) if r.startswith(
        f"error: not finished: the agent ran `{TESTS}` and it failed ({FAILING}):")]
    assert "-1 != 5" in told
    # Said again, with the tests still failing: the step ends failed, and so does the verdict.
    assert [p["status"] for p in final["plan"]] == ["failed"]
    last = f"{task_id}/s1/r2/c0/after/check0"  # run right after the tests were written
    verdict = final_verdict(stack, "s1")
    assert verdict["verdict"] == "failed"
    assert verdict["checks"] == [{"kind": "tests", "command": TESTS, "exit_code": 1, "summary": FAILING,
                                  "ref": last, "step": 1}]
    # The answer keeps the model's words, and the harness's evidence under them: the exact
    # command, its exit code and counts, the tool call that shows it, and the claim called out.
    answer = events(stack, "s1", "final_answer")[-1]["text"]
    assert answer.startswith(CLAIM)
    assert answer.endswith("Failed: the agent's own checks show it:\n"
                           f"- `{TESTS}` → exit 1: {FAILING} (step 1, call {last})\n"
                           "Note: The answer above says something passed or works, but the agent's own checks "
                           "failed."), answer
    # Each check is a tool call of the harness's own in the event log, and its result a
    # `check` event with the same ref. The tests ran once: nothing changed after that run, so
    # both finishes took its result.
    ran = checks_run(stack, "s1", task_id)
    assert ran == [(last, f"tests: {FAILING}")]
    calls = {e["ref"]: e["text"] for e in events(stack, "s1", "tool_call")}
    for ref, text in ran:
        assert is_check_ref(ref, task_id) and text == f"tests: {FAILING}"
        assert calls[ref].startswith("check (tests): run_command(") and json.dumps(TESTS)[1:-1] in calls[ref]


def test_a_worker_killed_while_a_check_runs_does_not_run_it_twice_and_the_verdict_stands(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:slow_tests")
    task_id = send_message(stack, "s1", REQUEST)
    # The harness's check is running the slow tests: kill the worker, then bring it back.
    final = kill_the_worker_while_the_tests_run(stack, "s1")

    # The killed check's retry did not run the tests again (the sandbox runs an op id once):
    # it reported that no result came back, and the model was told so. The next check, under
    # an op id of its own, ran them again: two runs in all, one per check.
    ran = checks_run(stack, "s1", task_id)
    assert [text for _, text in ran] == ["tests: no result came back", "tests: 2 tests, 2 passed"]
    (killed, _), (again, _) = ran
    assert is_check_ref(killed, task_id) and is_check_ref(again, task_id)
    assert read_file(stack, "s1", RUNS_FILE) == "ran\nran\n"
    cut_off = {e["ref"]: e["detail"] for e in events(stack, "s1", "tool_result")}[killed]
    assert "outcome unknown" in cut_off and "the worker running it stopped" in cut_off
    assert any("no result came back" in r and "outcome unknown" in r for r in tool_results(stack))
    # The task finished, verified by that last run.
    assert [p["status"] for p in final["plan"]] == ["done"]
    assert final["last_verdict"]["verdict"] == "verified"
    assert [(c["ref"], c["exit_code"], c["summary"]) for c in final["last_verdict"]["checks"]] == [
        (again, 0, "2 tests, 2 passed")]
    assert final["last_verdict"] == final_verdict(stack, "s1")
    assert f"Verified by the agent's own checks:\n- `{TESTS}` → exit 0: 2 tests, 2 passed (step 1, call {again})" \
           in events(stack, "s1", "final_answer")[-1]["text"]


def test_a_sessions_status_and_history_carry_each_tasks_verdict(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:two_tasks", env=TWO_TRIES)
    first = send_message(stack, "s1", FIRST)
    assert wait_idle(stack, "s1")["last_verdict"]["verdict"] == "verified"

    # The second task breaks add: the tests the first one wrote now fail.
    second = send_message(stack, "s1", SECOND)
    final = wait_idle(stack, "s1")
    assert final["last_verdict"]["verdict"] == "failed"
    assert [c["ref"] for c in final["last_verdict"]["checks"]] == [check_ref(second, 2)]
    assert final["last_verdict"] == final_verdict(stack, "s1") == status(stack, "s1")["last_verdict"]
    # The history keeps each answer's own verdict, beside its text; each names its task's last check.
    answers = [m for m in history(stack, "s1") if m["role"] == "agent"]
    assert [(m["task_id"], m["verdict"]["verdict"]) for m in answers] == [(first, "verified"), (second, "failed")]
    assert [c["ref"] for c in answers[0]["verdict"]["checks"]] == [checks_run(stack, "s1", first)[-1][0]]
    assert answers[-1]["verdict"] == final["last_verdict"]
    assert "Failed: the agent's own checks show it:" in answers[-1]["text"]
