"""The agent's brain in-process: the step loop, the pipeline and their policies against a
scripted model and a workspace in a temp directory (tests/brain_fakes.py). No restate-server:
what is decided is tested here, that it is durable end to end (tests/test_trust.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from app import loop, pipeline
from app.brain import checks, evidence, planning, text_edits
from app.brain.gate import MISSING, NO_TESTS, NOT_RUN
from app.models import ModelTurn, PlanStep, Usage
from tests.brain_fakes import call, task_in, text

WORDFREQ = '''\
import re
from collections import Counter


def top_words(text, n):
    """The n most common words of text, lower-cased, punctuation removed.

    >>> top_words("Hello, hello world!", 1)
    [('hello', 2)]
    """
    words = re.sub(r'[^\\w\\s]', '', text.lower()).split()
    return Counter(words).most_common(n)
'''
MEAN_BUGGY = "def mean(values):\n    return sum(values) / (len(values) - 1)\n"
MEAN_RIGHT = "def mean(values):\n    return sum(values) / len(values)\n"
MEAN_TESTS = '''\
import unittest
from stats import mean


class MeanTest(unittest.TestCase):
    def test_mean(self):
        self.assertEqual(mean([2, 4, 6]), 4)

    def test_single(self):
        self.assertEqual(mean([5]), 5)
'''


def block(code: str, lang: str = "python") -> dict:
    return text(f"```{lang}\n{code}```")


def run_step(task, request: str, number: int = 1):
    step = PlanStep(title=planning.title_of(request))
    return asyncio.run(loop.run_step(task, number, step, f"Conversation:\nuser: {request}", request))


def test_code_written_as_text_keeps_every_character_and_its_examples_are_run(tmp_path: Path):
    task, ctx, model = task_in(tmp_path, [call("write_file", path="wordfreq.py"), block(WORDFREQ),
                                          call("finish", result="top_words works")])
    result = run_step(task, "Write wordfreq.py with top_words(text, n).")
    assert (tmp_path / "wordfreq.py").read_text() == WORDFREQ  # the regex's backslashes intact
    assert result.status == "done"
    assert [(c.kind, c.exit_code) for c in result.checks] == [("examples", 0)]
    assert "write_file" not in str(model.requests[1]["tools"]) and "Write wordfreq.py whole" in model.text_requests()[0]
    assert evidence.judge(result.summary, result.checks, False).verdict == "verified"


def test_a_claim_that_tests_pass_when_none_were_written_is_refused_and_then_called_out(tmp_path: Path):
    request = "Write adder.py with add(a, b) and add unittest tests for it, then run them."
    task, _, model = task_in(tmp_path, [call("write_file", path="adder.py"), block("def add(a, b):\n    return a + b\n"),
                                        *[call("finish", result="All tests pass.")] * 3])
    result = run_step(task, request)
    refusals = [m["content"] for m in model.requests[-1]["messages"] if m["role"] == "tool"]
    assert refusals[-2:] == [NO_TESTS, NOT_RUN]  # each once; then the step ends, with nothing shown
    assert result.status == "done" and result.checks == []
    verdict = evidence.judge(result.summary, result.checks, False)
    assert verdict.verdict == "unverified" and "no test or check run by the agent showed that" in verdict.note
    assert "nothing was run" in evidence.evidence_text(verdict)


def test_a_write_over_a_file_the_task_never_read_is_refused_with_its_content(tmp_path: Path):
    (tmp_path / "stats.py").write_text(MEAN_BUGGY)
    task, _, model = task_in(tmp_path, [call("write_file", path="stats.py", content="x = 1\n"),
                                        call("write_file", path="stats.py", content=MEAN_RIGHT),
                                        call("finish", result="fixed")], tool_mode="native")
    result = run_step(task, "Fix mean in stats.py.")
    first = [m["content"] for m in model.requests[1]["messages"] if m["role"] == "tool"][0]
    assert first.startswith("error: stats.py already exists") and MEAN_BUGGY.strip() in first
    assert (tmp_path / "stats.py").read_text() == MEAN_RIGHT and result.status == "done"


def test_failing_tests_block_the_finish_and_a_fresh_sample_of_the_file_fixes_it(tmp_path: Path):
    (tmp_path / "stats.py").write_text(MEAN_BUGGY)
    (tmp_path / "test_stats.py").write_text(MEAN_TESTS)
    task, ctx, model = task_in(tmp_path, [
        call("write_file", path="stats.py"), block(MEAN_BUGGY.replace("values)", "values) ")),  # still wrong
        call("finish", result="fixed"),  # the second failure: the harness asks for the file afresh
        block(MEAN_RIGHT)])
    result = run_step(task, "The tests in test_stats.py fail. Fix stats.py.")
    assert result.status == "done" and (tmp_path / "stats.py").read_text() == MEAN_RIGHT
    assert [c.kind for c in result.checks] == ["tests"] and evidence.ok(result.checks[0])
    assert result.checks[0].summary == "2 tests, 2 passed"
    written = [m["content"] for m in model.requests[2]["messages"] if m["role"] == "tool"][-1]
    assert "The agent ran the checks: `python3 -m pytest" in written and "2 failed" in written
    resample = model.text_requests()[-1]
    assert "The latest check failed" in resample and MEAN_TESTS.splitlines()[1] in resample  # the tests in view


def test_repairs_that_do_not_converge_make_the_next_write_a_fresh_sample(tmp_path: Path):
    (tmp_path / "test_stats.py").write_text(MEAN_TESTS)
    wrong = block(MEAN_BUGGY)
    task, _, model = task_in(tmp_path, [call("write_file", path="stats.py"), wrong,
                                        call("write_file", path="stats.py"), wrong,
                                        call("write_file", path="stats.py"), block(MEAN_RIGHT),
                                        call("finish", result="done")])
    result = run_step(task, "Write mean in stats.py so that test_stats.py passes.")
    assert result.status == "done" and evidence.ok(result.checks[0])
    first, repair, sample = model.requests[1], model.requests[3], model.requests[5]
    assert "MEAN" not in str(first) and "(len(values) - 1)" in repair["messages"][-1]["content"]
    # stats.py is the task's own: the sample is asked without its failing code, greedily first.
    assert "The current content of stats.py" not in sample["messages"][-1]["content"]
    assert "The current content of stats.py" in repair["messages"][-1]["content"] and sample.get("temperature") is None
    assert "The latest check failed" in sample["messages"][-1]["content"]


def test_tests_that_keep_failing_end_the_step_failed_with_the_failing_output(tmp_path: Path):
    (tmp_path / "stats.py").write_text(MEAN_BUGGY)
    (tmp_path / "test_stats.py").write_text(MEAN_TESTS)
    still_wrong = block(MEAN_BUGGY.replace("values)", "values) "))
    claim = call("finish", result="All tests pass.")
    # Checks fail at finishes 1 and 2, then after sample 1 (3), at finish 3 and after sample 2
    # (4, 5), and at finish 4 (6): the bound.
    wrong_again = block(MEAN_BUGGY.replace("values)", "values)  "))
    task, _, model = task_in(tmp_path, [call("read_file", path="stats.py"), claim, claim, still_wrong, claim,
                                        wrong_again, claim], resamples=2)
    result = run_step(task, "The tests in test_stats.py fail. Fix stats.py and run the tests.")
    assert result.status == "failed" and "the checks still fail after 6 tries" in result.summary
    assert "FAIL" in result.summary or "Error" in result.summary
    verdict = evidence.judge("All tests pass.", result.checks, step_failed=True)
    assert verdict.verdict == "failed" and "own checks failed" in verdict.note
    assert model.turns == []


def test_a_test_file_that_does_not_parse_is_the_models_to_fix_not_skipped(tmp_path: Path):
    (tmp_path / "stats.py").write_text(MEAN_RIGHT)
    (tmp_path / "test_stats.py").write_text(MEAN_TESTS.replace("def test_single(self):", "def test_single(self)"))
    task, _, model = task_in(tmp_path, [call("finish", result="done"), call("read_file", path="test_stats.py"),
                                        call("write_file", path="test_stats.py"), block(MEAN_TESTS),
                                        call("finish", result="done")])
    result = run_step(task, "Make the tests pass.")
    told = [m["content"] for m in model.requests[1]["messages"] if m["role"] == "tool"][-1]
    assert "SyntaxError" in told or "error" in told.lower()
    assert result.status == "done" and evidence.ok(result.checks[0])


def test_a_degenerate_round_is_told_to_the_model_and_the_step_goes_on(tmp_path: Path):
    cut = ModelTurn(message={"role": "assistant", "content": "\\\\\\\\"}, usage=Usage(rounds=1),
                    format_error="your answer degenerated into a repeating pattern and was cut")
    task, _, model = task_in(tmp_path, [cut, call("write_file", path="a.py"), block("X = 1\n"),
                                        call("finish", result="wrote a.py")])
    result = run_step(task, "Write a.py that sets X to 1.")
    assert result.status == "done" and (tmp_path / "a.py").read_text() == "X = 1\n"
    assert model.requests[1]["messages"][-1]["content"].startswith("error: your answer degenerated")


def test_a_python_file_that_does_not_parse_is_asked_for_again_with_its_content_in_view(tmp_path: Path):
    task, _, model = task_in(tmp_path, [call("write_file", path="a.py"), block("def f(:\n    return 1\n"),
                                        block("def f():\n    return 1\n"), call("finish", result="ok")])
    result = run_step(task, "Write a.py with f returning 1.")
    assert (tmp_path / "a.py").read_text() == "def f():\n    return 1\n" and result.status == "done"
    again = model.text_requests()[1]
    assert "def f(:" in again and "not valid Python" in again


def test_a_large_file_is_changed_by_search_replace_blocks(tmp_path: Path):
    big = "".join(f"def f{i}():\n    return {i}\n\n" for i in range(80))
    (tmp_path / "big.py").write_text(big)
    task, _, model = task_in(tmp_path, [
        call("write_file", path="big.py", change="f3 returns 33"),
        text("big.py\n<<<<<<< SEARCH\ndef f3():\n    return 3\n=======\ndef f3():\n    return 33\n>>>>>>> REPLACE\n"),
        call("finish", result="done")])
    run_step(task, "Make f3 in big.py return 33.")
    assert (tmp_path / "big.py").read_text() == big.replace("return 3\n", "return 33\n")
    assert "search/replace" in model.text_requests()[0]


def test_the_pipeline_writes_whole_files_checks_them_and_repairs(tmp_path: Path):
    (tmp_path / "test_stats.py").write_text(MEAN_TESTS)
    task, _, model = task_in(tmp_path, [text(f"stats.py\n```python\n{MEAN_BUGGY}```"),
                                        text(f"stats.py\n```python\n{MEAN_RIGHT}```")], agent_mode="pipeline")
    step = PlanStep(title="Write stats.py")
    result = asyncio.run(pipeline.run_step(task, 1, step, "Conversation:\nuser: Write mean in stats.py.",
                                           "Write mean in stats.py so the tests pass."))
    assert result.status == "done" and (tmp_path / "stats.py").read_text() == MEAN_RIGHT
    assert "The checks of the files above failed" in model.text_requests()[1]
    assert all(not r["tools"] for r in model.requests)


# ---------------------------------------------------------------- pure parts


def test_a_request_of_several_parts_is_several_steps_with_whole_titles():
    plan = planning.split("Write wordfreq.py with a function top_words(text, n) that returns the n most common "
                          "words, ignoring case and punctuation. Add unittest tests in test_wordfreq.py and run "
                          "them until they pass.", 6)
    assert [s.title[:20] for s in plan.steps] == ["Write wordfreq.py wi", "Add unittest tests i"]
    assert plan.steps[0].title.endswith("…") and plan.steps[0].instructions.endswith("punctuation.")
    one = planning.split("Write this function in solution.py:\n\n```python\ndef f():\n    '''Then add.'''\n```", 6)
    assert len(one.steps) == 1
    assert len(planning.split("I have stats.py. Fix mean in it. Make sure it handles [].", 6).steps) == 1
    two = planning.split("The tests fail. Fix stats.py. Then add median to stats.py, with tests.", 6)
    assert [s.title for s in two.steps] == ["Fix stats.py.", "Then add median to stats.py, with tests."]
    assert two.steps[0].instructions == "The tests fail.\nFix stats.py."


def test_answers_are_read_as_files_and_edits():
    answer = "Here:\n\n### pkg/util.py\n```python\nX = 1\n```\n\n**test_util.py**\n```python\nimport unittest\n```\n"
    assert text_edits.files(answer) == {"pkg/util.py": "X = 1\n", "test_util.py": "import unittest\n"}
    assert text_edits.whole_file("```python\nprint(1)\n") is None  # cut off inside its block
    with pytest.raises(text_edits.EditError):
        text_edits.apply("a\nb\na\n", [text_edits.Replacement("a\n", "c\n")])


def test_check_summaries_come_from_the_runners_own_output(tmp_path: Path):
    (tmp_path / "stats.py").write_text(MEAN_BUGGY)
    (tmp_path / "test_stats.py").write_text(MEAN_TESTS)
    unit = subprocess.run([sys.executable, "-m", "unittest", "-v", "test_stats"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert checks.summarize("tests", unit.returncode, unit.stdout + unit.stderr)== "2 tests, 0 passed, 1 failed, 1 errors"
    planned = checks.tests_check(checks.test_files(["stats.py", "test_stats.py", ".agent/context/test_x.py"]))
    assert planned is not None and planned.files == ("test_stats.py",)
    assert checks.summarize("tests", 1, "....\n1 failed, 3 passed in 0.02s\n") == "4 tests, 1 failed, 3 passed"
    assert [c.command for c in checks.quoted_commands("Run `python3 cli.py --top 3 a.txt` and `rm -rf x`")] == [
        "python3 cli.py --top 3 a.txt"]


def test_claims_of_success_are_told_from_their_negations():
    assert evidence.claims_success("All tests pass.")
    assert evidence.claims_success("The function works correctly.")
    assert not evidence.claims_success("The tests do not pass yet.")
    assert not evidence.claims_success("I wrote wordfreq.py.")


def test_a_finish_before_the_named_file_exists_is_refused_and_a_write_asked_again_is_no_repeat(tmp_path: Path):
    cut = ModelTurn(message={"role": "assistant", "content": ""}, usage=Usage(rounds=1),
                    format_error="your answer was cut: it ran past 90 s")
    task, _, model = task_in(tmp_path, [call("write_file", path="solution.py"), cut,
                                        call("write_file", path="solution.py"), cut,
                                        call("write_file", path="solution.py"), cut,
                                        call("finish", result="written"),
                                        call("write_file", path="solution.py"), block("def f():\n    return 1\n"),
                                        call("finish", result="written")])
    result = run_step(task, "Write f in solution.py.")
    told = [m["content"] for m in model.requests[-1]["messages"] if m["role"] == "tool"]
    assert all("the answer with solution.py's content was not used: your answer was cut" in t for t in told[:3])
    assert told[3] == MISSING.format(paths="solution.py")
    assert result.status == "done" and (tmp_path / "solution.py").exists()


def test_a_finish_while_a_written_function_has_no_code_is_refused_once(tmp_path: Path):
    stub = 'def decode(s):\n    """The inverse of encode."""\n'
    task, _, model = task_in(tmp_path, [call("write_file", path="codec.py"), block(stub),
                                        call("finish", result="No changes needed."),
                                        call("write_file", path="codec.py"), block("def decode(s):\n    return s[::-1]\n"),
                                        call("finish", result="done")])
    result = run_step(task, "Write decode in codec.py.")
    told = [m["content"] for m in model.requests[-1]["messages"] if m["role"] == "tool"]
    assert told[1].startswith("error: not finished: in codec.py, decode has no code yet")
    assert result.status == "done" and "return s[::-1]" in (tmp_path / "codec.py").read_text()


def test_a_failing_file_the_model_never_touched_is_sampled_from_the_traceback(tmp_path: Path):
    (tmp_path / "report.py").write_text("def total(items):\n    return sum(i['qty'] for i in items)\n\n"
                                        "print(total([{'n': 1}]))\n")
    fixed = block("def total(items):\n    return sum(i.get('qty', 0) for i in items)\n\nprint(total([{'n': 1}]))\n")
    task, _, model = task_in(tmp_path, [call("finish", result="fixed"), call("finish", result="fixed"), fixed])
    result = run_step(task, "Running `python3 report.py` crashes with a KeyError. Fix it.")
    assert result.status == "done" and "get('qty', 0)" in (tmp_path / "report.py").read_text()
    assert "The current content of report.py" in model.text_requests()[0]  # it existed: always shown


def test_a_quoted_command_that_exits_0_but_prints_the_error_has_not_passed(tmp_path: Path):
    # The 1.5B "fixed" a crash the request quoted by catching the exception and printing it:
    # exit 0, and the harness had called that verified.
    (tmp_path / "due.py").write_text("import sys\nfrom datetime import datetime\n\n"
                                     "print((datetime.strptime(sys.argv[2], '%d.%m.%Y')"
                                     " - datetime.strptime(sys.argv[1], '%d.%m.%Y')).days)\n")
    caught = block("import sys\nfrom datetime import datetime\n\ntry:\n"
                   "    print((datetime.strptime(sys.argv[2], '%d.%m.%Y') - datetime.strptime(sys.argv[1], '%d.%m.%Y')).days)\n"
                   "except ValueError as e:\n    print(f'Error: {e}')\n")
    fixed = block("import sys\nfrom datetime import date\n\n"
                  "print((date.fromisoformat(sys.argv[2]) - date.fromisoformat(sys.argv[1])).days)\n")
    task, _, model = task_in(tmp_path, [call("read_file", path="due.py"), call("write_file", path="due.py"), caught,
                                        call("finish", result="fixed"),
                                        call("write_file", path="due.py"), fixed, call("finish", result="fixed")])
    result = run_step(task, "`python3 due.py 2024-02-20 2024-03-05` crashes with a ValueError. Fix it.")
    told = [m["content"] for m in model.requests[-1]["messages"] if m["role"] == "tool"]
    assert any(checks.REPORTED_ERROR in t and "Error: time data" in t for t in told), told
    assert result.status == "done" and "fromisoformat" in (tmp_path / "due.py").read_text()
    [last] = [c for c in result.checks if c.kind == "command"][-1:]
    assert evidence.ok(last) and last.summary == "exit code 0"
    assert not checks.reported_error("0 errors found\n14\n")
