"""Plans split by rule, and what a step may and may not do before it finishes.

With AGENT_PLANNING=auto (the offline model's default) a request is split into steps by rule
(app/brain/planning.py), without a planning round. Before a step may finish (and right after
a Python file is written), the harness runs the checks it finds itself (app/brain/checks.py:
here, the docstring examples of the Python files the step wrote) as tool calls of its own,
`<task>/s<N>/r<R>/c<I>/.../check<K>`: a failure refuses the finish with the check's output;
failures that do not converge get a fresh sample of the failing file, asked for in plain chat.
With AGENT_FINISH_CHECK=on, a step that says to run something and has nothing to check is
refused once until a command has run. Repeated calls are refused (app/brain/gate.py), and a
step's first prompt says what the workspace holds.
"""

from __future__ import annotations

import time


from app.brain import prompts
from app.brain.gate import ADVICE, NOT_RUN, REPEATED_CALL, REPEATED_PAIR
from app.tools import python_notes
from tests.agent_helpers import events, read_file, send_message, wait_idle
from tests.fakes.planning_scripts import COUNTED_RIGHT, DOUBLE_RIGHT
from tests.fakes.scripts import is_planning

SCRIPTS = "tests.fakes.planning_scripts"
AIDS = {"AGENT_PLANNING": "auto", "AGENT_FINISH_CHECK": "on"}
HELLO = "create hello.py that prints hello, then run it"
DOCTEST = "python3 -m doctest double.py"  # the harness's check of double.py's examples


def _tool_messages(stack) -> list[str]:
    """The tool results in the latest model request (the whole step's transcript)."""
    last = [e["request"] for e in stack.llm_requests() if e["request"].get("tools")][-1]
    return [m["content"] for m in last["messages"] if m.get("role") == "tool"]


def _kill_the_worker_during_the_slow_round(stack, session: str) -> dict:
    """SIGKILL the worker while the script's slow round is in flight, start it again, and
    return the session's status once it is idle."""
    stack.wait_until(lambda: any(e["reply"].get("delay_s") for e in stack.llm_requests()), timeout=60)
    stack.kill_worker()
    time.sleep(0.5)
    stack.start_worker()
    return wait_idle(stack, session, timeout=90)


def _plain_chat_requests(stack) -> list[dict]:
    """The requests for a file as text the model server got, in order (no tools: plain chat)."""
    return [e["request"] for e in stack.llm_requests()
            if not e["request"].get("tools") and e["request"]["messages"][0]["content"] == prompts.SYSTEM]


def _checks(stack, session: str) -> list[tuple[str, str]]:
    """(ref, text) of each check the harness ran, in order, the task's verdict left out."""
    return [(e["ref"], e["text"]) for e in events(stack, session, "check") if e["ref"] != "verdict"]


def test_a_short_request_runs_as_one_step_and_finishes_only_after_running(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:hello_finish_early", env=AIDS)
    send_message(stack, "s1", HELLO)
    final = wait_idle(stack, "s1", timeout=60)

    assert not any(is_planning(e["request"]) for e in stack.llm_requests())  # no planning round
    assert [(p["title"], p["status"]) for p in final["plan"]] == [(HELLO, "done")]
    assert final["last_usage"]["rounds"] == 4  # write, refused finish, run, finish
    results = _tool_messages(stack)
    assert results[1] == NOT_RUN  # hello.py has nothing the harness could check; the step says to run it
    assert results[2].startswith("exit code: 0") and "hello" in results[2]
    assert events(stack, "s1", "final_answer")[-1]["text"].startswith("hello.py prints hello")


def test_a_request_of_several_parts_is_split_by_rule_without_a_planning_round(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:finishes_at_once", env=AIDS)
    send_message(stack, "s1", "Write hello.py that prints hello. Then write bye.py that prints bye.")
    final = wait_idle(stack, "s1", timeout=60)

    assert not any(is_planning(e["request"]) for e in stack.llm_requests())
    assert [(p["title"], p["status"]) for p in final["plan"]] == [
        ("Write hello.py that prints hello.", "done"), ("Then write bye.py that prints bye.", "done")]


def test_a_finish_right_after_writing_failing_examples_is_refused_with_the_harnesss_check_output(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:double_fixed_after_refusal", env=AIDS)
    task_id = send_message(stack, "s1", "write double.py with a function double(x)")
    final = wait_idle(stack, "s1", timeout=60)

    # The model's finish is answered with what the harness's own run of the examples showed,
    # and what to do about it.
    refused = _tool_messages(stack)[1]
    assert refused.startswith(f"error: not finished: the agent ran `{DOCTEST}` and it failed (1 example failed):")
    assert "Expected:\n    6\nGot:\n    5" in refused and ADVICE["examples"] in refused
    # That run is a tool call of the harness's own, made right after the write (under the write's
    # op id), and a check event; the finish, with nothing changed since, took its result.
    ref = f"{task_id}/s1/r1/c0/after/check0"
    calls = {e["ref"]: e["text"] for e in events(stack, "s1", "tool_call")}
    assert calls[ref].startswith("check (examples): run_command(") and DOCTEST in calls[ref]
    assert (ref, "examples: 1 example failed") in _checks(stack, "s1")
    # The right double.py then passes, and the task's answer is verified by that run.
    assert read_file(stack, "s1", "double.py") == DOUBLE_RIGHT
    assert [p["status"] for p in final["plan"]] == ["done"]
    assert _checks(stack, "s1")[-1][1] == "examples: the examples pass"
    assert final["last_verdict"]["verdict"] == "verified"
    answer = events(stack, "s1", "final_answer")[-1]["text"]
    assert answer.startswith("double(3) is 6\n\nVerified by the agent's own checks:")


def test_failing_examples_get_a_fresh_sample_and_a_worker_kill_mid_sample_runs_no_check_twice(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:double_resampled_slowly", env=AIDS)
    task_id = send_message(stack, "s1", "write double.py with a function double(x)")
    # The fresh sample's round (a slow one) is in flight: kill the worker, then bring it back.
    final = _kill_the_worker_during_the_slow_round(stack, "s1")

    # After two failing runs (right after the write, and at the finish), double.py is asked for
    # afresh: a plain request (no tools, the
    # plain-chat system prompt) with the step's prompt and doctest's report, without the wrong
    # code (the task created the file). The killed request was asked again, the same.
    step_prompt = stack.llm_requests()[0]["request"]["messages"][1]["content"]
    asks = _plain_chat_requests(stack)
    assert len(asks) == 2 and asks[0] == asks[1]
    asked = asks[0]["messages"][1]["content"]
    assert asked.startswith(step_prompt) and f"The latest check failed:\n`{DOCTEST}` (1 example failed):" in asked
    assert "Expected:\n    6\nGot:\n    5" in asked and "x + 2" not in asked
    resample = f"{task_id}/s1/r2/c0/resample1"
    assert [e["ref"] for e in events(stack, "s1", "rewrite")] == [resample]
    # The sample was written by the harness, its examples checked once, and they passed.
    assert any(e["ref"] == f"{resample}/write" and e["text"].startswith("resample: write_file(")
               for e in events(stack, "s1", "tool_call"))
    assert read_file(stack, "s1", "double.py") == COUNTED_RIGHT
    ran = _checks(stack, "s1")
    assert ran[-1] == (f"{resample}/check0", "examples: the examples pass")
    assert all(text == "examples: 1 example failed" for _, text in ran[:-1])
    # Each check ran its examples exactly once: the kill and the replay ran none again.
    assert read_file(stack, "s1", "checks.txt") == "ran\n" * len(ran)
    assert [p["status"] for p in final["plan"]] == ["done"] and final["last_verdict"]["verdict"] == "verified"


def test_a_missing_program_or_file_gets_a_hint_and_pytest_is_there(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:missing_program", env=AIDS)
    send_message(stack, "s1", "run the tests")
    wait_idle(stack, "s1", timeout=60)

    results = _tool_messages(stack)
    assert results[0].startswith("exit code: 127") and "hint: cargo is not installed in this sandbox" in results[0]
    assert results[1].startswith("exit code: 2") and "hint: a file this command needs does not exist" in results[1]
    assert results[3].startswith("exit code: 0") and "1 passed" in results[3], results[3]


def test_a_stub_or_a_broken_python_file_is_pointed_out_by_its_write(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:stub_then_broken", env=AIDS)
    send_message(stack, "s1", "write half.py")
    wait_idle(stack, "s1", timeout=60)

    stub, broken, whole = [e["detail"] for e in events(stack, "s1", "tool_result") if "/check" not in e["ref"]][:3]
    assert stub.startswith("wrote 64 bytes to half.py\nnote: in half.py, half has no code yet (only a docstring, "
                           "pass or ...). Write the code."), stub
    assert broken.splitlines()[1].startswith("note: half.py is not valid Python: line 2:"), broken
    assert whole == "wrote 30 bytes to half.py"  # nothing to say about it
    assert read_file(stack, "s1", "half.py") == "def half(x):\n    return x / 2\n"


def test_python_notes_leave_what_is_meant_to_have_no_body_alone():
    abstract = "import abc\n\n\nclass A(abc.ABC):\n    @abc.abstractmethod\n    def f(self):\n        ...\n"
    assert python_notes("a.py", abstract) == []
    assert python_notes("notes.txt", "def f(:\n") == []
    assert python_notes("b.py", "def f():\n    pass\n\ndef g():\n    ...\n")[0].startswith("note: in b.py, f, g have")
    # What the parser cannot take in (a NUL byte, nesting deeper than it recurses) raises nothing
    # here: an exception in the tool would fail the step and be retried forever.
    for code in ("x = 1\0\n", "x = " + "(" * 5000 + ")" * 5000 + "\n"):
        notes = python_notes("c.py", code)
        assert notes == [] or notes[0].startswith("note: c.py is not valid Python"), notes


def test_two_calls_repeated_in_turn_are_refused_and_the_step_closes(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:write_run_cycle", env=AIDS)
    send_message(stack, "s1", "make check.py pass")
    final = wait_idle(stack, "s1", timeout=60)

    results = [e["detail"] for e in events(stack, "s1", "tool_result")]
    # run (no file yet), write, run (exit 1): then the same write again is refused, and so is
    # the same run after it; two rounds of nothing but refusals close the step.
    assert results[2].startswith("exit code: 1")
    assert results[3:] == [REPEATED_PAIR, REPEATED_PAIR], results
    assert final["last_usage"]["rounds"] == 5
    assert "closed: the model kept repeating" in events(stack, "s1", "step_finished")[-1]["text"]


def test_an_answer_cut_off_at_max_tokens_does_nothing_and_the_model_is_told(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:cut_then_short", env={**AIDS, "AGENT_MAX_ANSWER_TOKENS": "300"})
    send_message(stack, "s1", "write long.py")
    wait_idle(stack, "s1", timeout=30)

    requests = [e["request"] for e in stack.llm_requests()]
    assert all(r.get("max_tokens") == 300 for r in requests)
    told = [m["content"] for m in requests[1]["messages"] if m["role"] == "user"][-1]
    assert told.startswith("error: your answer was cut off after") and "nothing in it was done" in told
    assert read_file(stack, "s1", "long.py") == "x = 1\n"  # only the whole answer's write happened


def test_a_step_sees_the_workspace_and_a_failing_call_made_again_and_again_is_refused(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:dead_ends", env=AIDS)
    send_message(stack, "s1", "write solution.py")
    final = wait_idle(stack, "s1", timeout=60)

    results = [e["detail"] for e in events(stack, "s1", "tool_result")]
    assert results[1] == ("error: invalid arguments for edit_file: input: old and new are the same text, "
                          "so the edit would change nothing")
    # The missing file's error says how to make it; the same failing edit may be made once more,
    # then it is refused; two rounds of refusals close the step.
    assert results[2].startswith("error: ") and "write_file creates a new file" in results[2]
    assert results[3] == results[2]
    assert results[4:] == [REPEATED_CALL, REPEATED_CALL], results
    assert final["last_usage"]["rounds"] == 6
    assert "closed: the model kept repeating" in events(stack, "s1", "step_finished")[-1]["text"]

    # Each step's first prompt says what the workspace holds (nothing at first; then notes.txt).
    send_message(stack, "s1", "write solution.py again")
    wait_idle(stack, "s1", timeout=60)
    firsts = [e["request"]["messages"][1]["content"] for e in stack.llm_requests()
              if e["request"].get("tools") and len(e["request"]["messages"]) == 2]
    assert len(firsts) == 2
    assert "\nFiles in /project: none yet.\n" in firsts[0]
    assert "\nFiles in /project: notes.txt.\n" in firsts[1]
