"""One-step requests skip the planning round, and a step cannot finish unchecked.

With AGENT_PLANNING=auto (the offline model's default) a short request with no list in it
runs as one step without asking the model for a plan; a request that lists several tasks is
still planned by the model. With AGENT_FINISH_CHECK=on a step that says to run or test, or that
changed a Python file, has its first unchecked `finish` refused with a message saying what to do;
a Python file with docstring examples has them run before its step may finish, and when they
fail in a file the step wrote, the model is asked for the file again, whole (at most twice).
"""

from __future__ import annotations

import json
import time

from app import finish_check, loop
from app.planner import one_step
from tests.agent_helpers import events, read_file, send_message, status, wait_idle
from tests.fakes.planning_scripts import DOUBLE_RIGHT, DOUBLE_WRONG
from tests.fakes.scripts import is_planning

AIDS = {"AGENT_PLANNING": "auto", "AGENT_FINISH_CHECK": "on"}
HELLO = "create hello.py that prints hello, then run it"


def _tool_messages(stack) -> list[str]:
    """The tool results in the latest model request (the whole step's transcript)."""
    last = stack.llm_requests()[-1]["request"]["messages"]
    return [m["content"] for m in last if m.get("role") == "tool"]


def _kill_the_worker_during_the_slow_round(stack, session: str) -> dict:
    """SIGKILL the worker while the script's slow round is in flight, start it again, and
    return the session's status once it is idle."""
    stack.wait_until(lambda: any(e["reply"].get("delay_s") for e in stack.llm_requests()), timeout=60)
    stack.kill_worker()
    time.sleep(0.5)
    stack.start_worker()
    return wait_idle(stack, session, timeout=90)


def _rewrite_requests(stack) -> list[dict]:
    """The finish check's rewrite requests the model server got, in order."""
    return [e["request"] for e in stack.llm_requests()
            if e["request"]["messages"][0]["content"] == finish_check.REWRITE_SYSTEM]


def test_which_requests_are_one_step():
    assert one_step(HELLO)
    assert one_step("Write this function in solution.py:\n\n```python\n" + "x = 1\n" * 400 + "```")
    assert not one_step("Do these:\n1. add a CLI flag\n2. write its test\n3. update the README")
    assert not one_step("- fix the parser\n- then the printer")
    assert not one_step("please " * 200)


def test_a_short_request_runs_as_one_step_and_finishes_only_after_running(stack_factory):
    stack = stack_factory("tests.fakes.planning_scripts:hello_finish_early", env=AIDS)
    send_message(stack, "s1", HELLO)
    final = wait_idle(stack, "s1", timeout=60)

    assert not any(is_planning(e["request"]) for e in stack.llm_requests())  # no planning round
    assert [(p["title"], p["status"]) for p in final["plan"]] == [(HELLO, "done")]
    assert final["last_usage"]["rounds"] == 4  # write, refused finish, run, finish
    results = _tool_messages(stack)
    assert results[1] == finish_check.NOT_RUN
    assert results[2].startswith("exit code: 0") and "hello" in results[2]
    assert events(stack, "s1", "final_answer")[-1]["text"] == "hello.py prints hello"


def test_a_listed_request_is_still_planned_by_the_model(stack_factory):
    stack = stack_factory("tests.fakes.planning_scripts:hello_finish_early", env=AIDS)
    send_message(stack, "s1", "Do this:\n1. create hello.py that prints hello\n2. run it")
    final = wait_idle(stack, "s1", timeout=60)
    assert is_planning(stack.llm_requests()[0]["request"])
    assert [p["title"] for p in final["plan"]] == ["planned by the model"]


def test_a_finish_right_after_writing_python_is_refused_once_and_a_missing_file_gets_a_hint(stack_factory):
    stack = stack_factory("tests.fakes.planning_scripts:add_finish_unchecked", env=AIDS)
    send_message(stack, "s1", "write add.py with a function add(a, b)")
    final = wait_idle(stack, "s1", timeout=60)

    results = _tool_messages(stack)
    # A command that fails for a missing file says how to recover.
    assert results[0].startswith("exit code: 2") and "hint: a file this command needs does not exist" in results[0]
    # Running add.py before writing it does not count: the finish after the write is refused.
    assert results[2] == finish_check.NOT_CHECKED.format(path="add.py")
    # Insisting works: the same finish again is accepted, not refused as a repeated call.
    assert [p["status"] for p in final["plan"]] == ["done"] and final["last_usage"]["rounds"] == 4


def test_the_finish_check_survives_a_worker_kill(stack_factory):
    stack = stack_factory("tests.fakes.planning_scripts:add_checked_slowly", env=AIDS)
    send_message(stack, "s1", "write add.py with a function add(a, b)")
    # The slow round (the check command's) is in flight: kill the worker, then bring it back.
    final = _kill_the_worker_during_the_slow_round(stack, "s1")

    assert [p["status"] for p in final["plan"]] == ["done"]
    results = _tool_messages(stack)
    assert results.count(finish_check.NOT_CHECKED.format(path="add.py")) == 1  # refused once, replayed, not again
    assert read_file(stack, "s1", "checks.txt") == "checked\n"  # the check ran once
    assert "5" in results[-1]
    assert status(stack, "s1")["state"] == "idle"


def _finish_checks(stack, session: str) -> list[dict]:
    return [e for e in events(stack, session, "tool_call") if e["text"].startswith("finish check:")]


def test_failing_examples_get_the_file_rewritten_whole_and_a_worker_kill_mid_rewrite_loses_nothing(stack_factory):
    stack = stack_factory("tests.fakes.planning_scripts:double_fixed_by_rewrite", env=AIDS)
    send_message(stack, "s1", "write double.py with a function double(x)")
    # The second rewrite (a slow round) is in flight: kill the worker, then bring it back.
    final = _kill_the_worker_during_the_slow_round(stack, "s1")

    # Each rewrite is a plain request (no tools) with the step's prompt and doctest's report,
    # not the wrong code; the second says the first failed too, and is sampled.
    step_prompt = stack.llm_requests()[0]["request"]["messages"][1]["content"]
    asks = _rewrite_requests(stack)
    assert len({json.dumps(r, sort_keys=True) for r in asks}) == 2  # the killed one was asked again, the same
    first, second = asks[0], asks[-1]
    assert "tools" not in first and "response_format" not in first
    assert first["messages"][1]["content"].startswith(f"The request:\n{step_prompt}\n\ndouble.py was written")
    assert "Expected:\n    6\nGot:\n    5" in first["messages"][1]["content"] and "x + 2" not in first["messages"][1]["content"]
    assert "temperature" not in first and second["temperature"] == finish_check.REWRITE_TEMPERATURES[1]
    assert "Expected:\n    6\nGot:\n    9" in second["messages"][1]["content"]
    assert second["messages"][1]["content"].endswith("(Rewrite 2: the rewrite before this one was wrong too.)")
    # Each rewrite was written once (the replay after the kill wrote nothing again), its examples
    # were run, and the second passed: the model's own finish went through.
    writes = [e for e in events(stack, "s1", "tool_call") if e["text"].startswith("rewrite: ")]
    assert [e["ref"].rsplit("/", 3)[1] for e in writes] == ["rewrite1", "rewrite2"]
    checks = [e["text"].split(":")[0] for e in events(stack, "s1", "tool_call") if "python3 -m doctest double.py" in e["text"]]
    assert checks == ["finish check", "rewrite check", "rewrite check"]
    assert read_file(stack, "s1", "double.py") == DOUBLE_RIGHT
    assert [p["status"] for p in final["plan"]] == ["done"] and final["last_usage"]["rounds"] == 4
    assert events(stack, "s1", "final_answer")[-1]["text"] == "double.py written"


def test_a_written_file_that_does_not_parse_is_rewritten_at_once_and_a_worker_kill_mid_rewrite_loses_nothing(
        stack_factory):
    stack = stack_factory("tests.fakes.planning_scripts:double_broken_then_rewritten", env=AIDS)
    send_message(stack, "s1", "write double.py with a function double(x)")
    final = _kill_the_worker_during_the_slow_round(stack, "s1")

    # Right after the write, before any finish: a plain request with the parser's error, not the
    # broken code; the second rewrite is told the first was wrong too, with its own error.
    asks = _rewrite_requests(stack)
    assert len({json.dumps(r, sort_keys=True) for r in asks}) == 2  # the killed one was asked again, the same
    first, second = asks[0]["messages"][1]["content"], asks[-1]["messages"][1]["content"]
    assert "double.py was written for this request, and it is not valid Python:\nnote: double.py is not valid " \
           "Python: line 7: unexpected character after line continuation character" in first
    assert "x * 2\\n" not in first and "The examples are right" not in first
    assert "line 7: '(' was never closed" in second and second.endswith("(Rewrite 2: the rewrite before this one was wrong too.)")
    # Each rewrite was written once; only the one that parses had its examples run; the model was
    # told that in the write's own result, and its finish went through with no more checks.
    writes = [e for e in events(stack, "s1", "tool_call") if e["text"].startswith("rewrite: ")]
    assert [e["ref"].rsplit("/", 3)[1] for e in writes] == ["rewrite1", "rewrite2"]
    checks = [e["text"].split(":")[0] for e in events(stack, "s1", "tool_call") if "python3 -m doctest double.py" in e["text"]]
    assert checks == ["rewrite check"]
    assert read_file(stack, "s1", "double.py") == DOUBLE_RIGHT
    write_result = _tool_messages(stack)[0]
    assert write_result.startswith("wrote ") and write_result.endswith(
        "double.py did not parse, so it was written again from the request (2 times) and now parses, and its "
        "examples pass. Call read_file to see it before changing it."), write_result
    assert [p["status"] for p in final["plan"]] == ["done"] and final["last_usage"]["rounds"] == 4
    assert events(stack, "s1", "final_answer")[-1]["text"] == "double.py written"


def test_examples_cut_off_by_a_worker_kill_are_reported_and_run_again_only_when_asked(stack_factory):
    stack = stack_factory("tests.fakes.planning_scripts:slow_examples", env=AIDS)
    send_message(stack, "s1", "write mark.py with a function mark()")
    stack.wait_until(lambda: stack.call("Sandbox", "s1", "read_file", {"path": "examples.txt"})[0] == 200,
                     timeout=60, message="the finish check running the examples")
    stack.kill_worker()
    time.sleep(0.5)
    stack.start_worker()
    final = wait_idle(stack, "s1", timeout=90)

    results = _tool_messages(stack)
    # The cut-off run is not called a failure, and the platform did not run the examples again
    # on its own: the model's next finish did (the script's third round).
    assert results[1].startswith("error: not finished: the examples in the docstrings of mark.py were run "
                                 "with `python3 -m doctest mark.py`, but no result came back"), results[1]
    assert "outcome unknown" in results[1]
    assert len(_finish_checks(stack, "s1")) == 2
    assert read_file(stack, "s1", "examples.txt") == "ran\nran\n"
    assert [p["status"] for p in final["plan"]] == ["done"] and final["last_usage"]["rounds"] == 3
    assert events(stack, "s1", "final_answer")[-1]["text"] == "step 1 done"


def test_a_missing_program_gets_a_hint_and_pytest_is_there(stack_factory):
    stack = stack_factory("tests.fakes.planning_scripts:missing_program", env=AIDS)
    send_message(stack, "s1", "run the tests")
    wait_idle(stack, "s1", timeout=60)

    results = _tool_messages(stack)
    assert results[0].startswith("exit code: 127") and "hint: cargo is not installed in this sandbox" in results[0]
    assert results[2].startswith("exit code: 0") and "1 passed" in results[2], results[2]


def test_a_stub_or_a_broken_python_file_is_pointed_out_by_its_write(stack_factory):
    stack = stack_factory("tests.fakes.planning_scripts:stub_then_broken", env=AIDS)
    send_message(stack, "s1", "write half.py")
    wait_idle(stack, "s1", timeout=60)

    stub, broken, whole = [e["detail"] for e in events(stack, "s1", "tool_result")][:3]
    assert stub.splitlines() == ["wrote 64 bytes to half.py",
                                 "note: in half.py, half has no code yet (only a docstring, pass or ...). "
                                 "Write the code."]
    assert broken.splitlines()[1].startswith("note: half.py is not valid Python: line 2:"), broken
    assert whole == "wrote 30 bytes to half.py"  # nothing to say about it
    assert read_file(stack, "s1", "half.py") == "def half(x):\n    return x / 2\n"


def test_python_notes_leave_what_is_meant_to_have_no_body_alone():
    from app.tools import python_notes

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
    stack = stack_factory("tests.fakes.planning_scripts:write_run_cycle", env=AIDS)
    send_message(stack, "s1", "make check.py pass")
    final = wait_idle(stack, "s1", timeout=60)

    results = [e["detail"] for e in events(stack, "s1", "tool_result")]
    # run (no file yet), write, run (exit 1): then the same write again is refused, and so is
    # the same run after it; two rounds of nothing but refusals close the step.
    assert results[2].startswith("exit code: 1")
    assert results[3:] == [loop.REPEATED_PAIR, loop.REPEATED_PAIR], results
    assert final["last_usage"]["rounds"] == 5
    assert "closed: the model kept repeating" in events(stack, "s1", "step_finished")[-1]["text"]


def test_a_finish_is_judged_by_its_examples_even_after_the_same_write_and_at_most_three_times(stack_factory):
    stack = stack_factory("tests.fakes.planning_scripts:same_wrong_again", env=AIDS)
    send_message(stack, "s1", "write double.py with a function double(x)")
    final = wait_idle(stack, "s1", timeout=60)

    results = [e["detail"] for e in events(stack, "s1", "tool_result") if "/rewrite" not in e["ref"]
               and not e["ref"].endswith("/examples")]
    fails = "error: not finished: the examples in the docstrings of double.py were run"
    # write, finish (refused after the rewrites), the same write, the same finish: refused by its
    # examples again, with no more rewrites; a finish refused a third time; the next goes through.
    assert [r.startswith(fails) for r in results] == [False, True, False, True, True, False], results
    assert results[1].endswith("(Before this, double.py was written again from the request, once, "
                               "and the examples failed each time.)")  # the second rewrite had no code
    assert len(_finish_checks(stack, "s1")) == 3 and len(events(stack, "s1", "rewrite")) == 2
    assert read_file(stack, "s1", "double.py") == DOUBLE_WRONG
    assert final["last_usage"]["rounds"] == 8 and events(stack, "s1", "final_answer")[-1]["text"] == "step 1 done"


def test_an_answer_cut_off_at_max_tokens_does_nothing_and_the_model_is_told(stack_factory):
    stack = stack_factory("tests.fakes.planning_scripts:cut_then_short",
                          env={**AIDS, "AGENT_MAX_ANSWER_TOKENS": "300"})
    send_message(stack, "s1", "write long.py")
    wait_idle(stack, "s1", timeout=60)

    requests = [e["request"] for e in stack.llm_requests()]
    assert all(r.get("max_tokens") == 300 for r in requests)
    told = [m["content"] for m in requests[1]["messages"] if m["role"] == "user"][-1]
    assert told.startswith("error: your answer was cut off after") and "nothing in it was done" in told
    assert read_file(stack, "s1", "long.py") == "x = 1\n"  # only the whole answer's write happened


def test_a_step_sees_the_workspace_and_a_failing_call_made_again_and_again_is_refused(stack_factory):
    stack = stack_factory("tests.fakes.planning_scripts:dead_ends", env=AIDS)
    send_message(stack, "s1", "write solution.py")
    final = wait_idle(stack, "s1", timeout=60)

    results = [e["detail"] for e in events(stack, "s1", "tool_result")]
    assert results[1] == ("error: invalid arguments for edit_file: input: old and new are the same text, "
                          "so the edit would change nothing")
    # The missing file's error says how to make it; the same failing edit may be made once more,
    # then it is refused; two rounds of refusals close the step.
    assert results[2].startswith("error: ") and "write_file creates a new file" in results[2]
    assert results[3] == results[2]
    assert results[4:] == [loop.REPEATED_CALL, loop.REPEATED_CALL], results
    assert final["last_usage"]["rounds"] == 6
    assert "closed: the model kept repeating" in events(stack, "s1", "step_finished")[-1]["text"]

    # Each step's first prompt says what the workspace holds (nothing at first; then notes.txt).
    send_message(stack, "s1", "write solution.py again")
    wait_idle(stack, "s1", timeout=60)
    firsts = [e["request"]["messages"][1]["content"] for e in stack.llm_requests()
              if len(e["request"]["messages"]) == 2]
    assert len(firsts) == 2
    assert "\nFiles in /project: none yet.\n" in firsts[0]
    assert "\nFiles in /project: notes.txt.\n" in firsts[1]
