"""The eval suite (bench/eval/) end to end on two cases, with a scripted model.

The cases go through the whole product (Agent, Task, Sandbox, bubblewrap) and the hidden-test
judge; the scripted model writes each case's reference files as an agent, and single-shot a
wrong stub for HumanEval and the reference files as fenced blocks for an own case, so the judge
must tell a pass from a fail on both paths. No pass rate of a real model is asserted anywhere:
those are measurements, kept in bench/results/.
"""

from __future__ import annotations

import openai
import pytest

from bench.eval import answer_files
from bench.eval.__main__ import BENCH_APP, evaluate
from bench.eval.cases import TUNING_RANGE, humaneval_cases, parse_selection
from bench.eval.claims import claims_success, false_success
from bench.eval.judge import judge
from bench.eval.own_cases import OWN_CASES
from bench.eval.report import case_table, totals_table
from bench.eval.runner import extract_code, longest_round
from bench.eval.scripted import changed_files
from tests.harness import Stack

OWN = {case.name: case for case in OWN_CASES}


def test_two_cases_through_the_product_are_judged_by_hidden_tests(tmp_path):
    cases = parse_selection("humaneval:0 own:fix-failing-test", OWN_CASES)
    with Stack(tmp_path / "stack", "bench.eval.scripted:reference_agent", app=BENCH_APP) as stack:
        client = openai.OpenAI(base_url=stack.llm.base_url, api_key="test", max_retries=0)
        humaneval, own = evaluate(stack, cases, baseline=client, model_name="scripted", case_timeout_s=120)

    # The agent wrote the reference files: both pass, read back from the sandbox and judged.
    assert (humaneval.case, humaneval.passed, humaneval.status) == ("HumanEval/0", True, "done")
    assert (own.case, own.passed, own.status, own.kind) == ("fix-failing-test", True, "done", "change")
    # Plan, a read of each starting file it changes and a write of each file, finish: the usage is the task's own.
    writes = [changed_files(case) for case in cases]
    assert humaneval.rounds == 2 + len(writes[0])
    assert own.rounds == 2 + 2 * len(writes[1])  # stats.py: read, then written
    assert humaneval.prompt_tokens > 0 and humaneval.steps == 1
    # What the product says of its result is recorded; a passing case is never a false success.
    for outcome in (humaneval, own):
        assert outcome.verdict in ("verified", "failed", "unverified", "none")
        assert not outcome.false_success
        assert outcome.longest_round_s is not None and outcome.longest_round_s >= 0
        assert "wrote" in outcome.answer
    # Single-shot, HumanEval: a stub returning None, judged and failed.
    assert humaneval.baseline is not None and not humaneval.baseline.passed
    assert "AssertionError" in humaneval.baseline.detail or "Error" in humaneval.baseline.detail
    # Single-shot, own case: the answer's fenced file, over the starting files, passes.
    assert own.baseline is not None and own.baseline.passed, own.baseline.detail
    assert own.baseline.files == ["stats.py"]
    # The report shows both side by side.
    assert "| own | 1 | 100% (1/1) | 100% (1/1) |" in totals_table([humaneval, own])
    assert "| fix-failing-test | change | yes | yes | no | no |" in case_table([humaneval, own])


def test_own_cases_are_thirty_or_more_and_half_of_them_change_existing_code():
    assert len(OWN_CASES) >= 30 and len(OWN) == len(OWN_CASES)
    changes = [case for case in OWN_CASES if case.kind == "change"]
    assert 2 * len(changes) >= len(OWN_CASES)
    assert all(case.files for case in changes)
    assert {case.kind for case in OWN_CASES} == {"change", "new"}


@pytest.mark.parametrize("case", OWN_CASES, ids=lambda c: c.name)
def test_own_case_fails_as_given_and_passes_with_its_reference(case):
    assert not judge(case.files, case.hidden_test).passed
    verdict = judge(case.reference, case.hidden_test)
    assert verdict.passed, verdict.detail


def test_humaneval_hidden_tests_pass_the_canonical_solution_and_fail_the_stub():
    for case in humaneval_cases([0, 10, 32, 38]):  # 32 and 38 test through the prompt's helpers
        assert judge(case.reference, case.hidden_test).passed, case.name
        assert not judge({"solution.py": case.prompt}, case.hidden_test).passed, case.name


def test_the_judge_stops_a_solution_that_never_ends():
    case = humaneval_cases([0])[0]
    verdict = judge({"solution.py": "while True:\n    pass\n"}, case.hidden_test, timeout_s=2)
    assert not verdict.passed and "timed out" in verdict.detail


def test_cases_are_chosen_by_group_and_name_with_commas_or_spaces():
    chosen = parse_selection("own:fix-failing-test,calc-cli,humaneval:0-2", OWN_CASES)
    assert [c.name for c in chosen] == ["fix-failing-test", "calc-cli", "HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert [c.name for c in parse_selection("humaneval:0,3 own:off-by-one", OWN_CASES)] == [
        "HumanEval/0", "HumanEval/3", "off-by-one"]
    assert len(parse_selection("humaneval:0,own", OWN_CASES)) == 1 + len(OWN_CASES)
    with pytest.raises(ValueError, match="unknown own case"):
        parse_selection("own:no-such-case", OWN_CASES)


def test_held_out_problems_are_refused_unless_asked_for():
    assert max(TUNING_RANGE) == 39
    with pytest.raises(ValueError, match="held out"):
        parse_selection("humaneval:40", OWN_CASES)


def test_code_is_taken_from_the_answers_blocks():
    answer = "Here:\n```python\ndef f():\n    return 1\n```\nand\n```python\nX = 2\n```"
    assert extract_code(answer) == "def f():\n    return 1\n\n\nX = 2\n"
    assert extract_code("```python\ndef g():\n    return 3") == "def g():\n    return 3"


def test_a_single_shot_answer_gives_its_files_under_whatever_path_line_it_writes():
    case = OWN["extract-helper-module"]
    answer = ("I moved it.\n\ntext_utils.py\n```python\nA = 1\n```\n\n### `blog.py`\n```python\nB = 2\n```\n\n"
              "**feed.py**:\n\n```\nC = 3\n```\n\n```python title=\"./pkg/d.py\"\nD = 4\n```\n\n"
              "```python\n# File: e.py\nE = 5\n```\n\nRun it:\n```bash\npython3 -m unittest\n```\n\n"
              "```python\nnobody = 1\n```\n\n../up.py\n```python\nX = 1\n```\n\n"
              "Here is the updated `test_blog.py`, which imports from text_utils.py:\n```python\nT = 1")
    assert answer_files.parse(answer, case) == {
        "text_utils.py": "A = 1\n", "blog.py": "B = 2\n", "feed.py": "C = 3\n", "pkg/d.py": "D = 4\n",
        "e.py": "# File: e.py\nE = 5\n", "test_blog.py": "T = 1"}
    # A block with no path: the starting file that defines what it defines, or the one file it can be.
    fix = OWN["fix-failing-test"]
    assert answer_files.parse("```python\ndef mean(values):\n    return 0\n```", fix) == {
        "stats.py": "def mean(values):\n    return 0\n"}
    assert answer_files.parse("```python\nprint(1)\n```", OWN["calc-cli"]) == {"calc.py": "print(1)\n"}
    # The prompt shows the starting files the same way.
    prompt = answer_files.prompt(fix)
    assert fix.message in prompt and "stats.py\n```python\ndef mean" in prompt
    shown, how = prompt.split("You cannot run")
    assert answer_files.parse(shown, fix)["stats.py"] == fix.files["stats.py"].rstrip() + "\n"
    assert "path/to/" not in how and "\nstats.py\n```python" in how  # the example names a file of the case


def test_a_false_success_is_a_failing_case_whose_answer_or_verdict_says_it_worked():
    for claim in ("All 3 tests passed.", "The pytest tests for wordfreq.py passed.", "Success", "Fixed the bug.",
                  "Done.", "The script works correctly.", "Ran 2 tests: they all pass, with no failures."):
        assert claims_success(claim), claim
    for plain in ("The tests fail with an AssertionError.", "This function works by sorting the list.",
                  "Please run the tests and fix the issues.", "The tests should pass now.", "I could not fix it.",
                  "not finished: no command has run yet", "1. Write x [done]: wrote x.py",
                  "Wrote `print('success')` to hello.py."):
        assert not claims_success(plain), plain
    assert false_success(passed=False, verdict="verified", ended_done=True, claims=False)
    assert false_success(passed=False, verdict="unverified", ended_done=True, claims=True)
    assert false_success(passed=False, verdict="none", ended_done=True, claims=True)
    assert not false_success(passed=False, verdict="failed", ended_done=True, claims=True)
    assert not false_success(passed=False, verdict="unverified", ended_done=False, claims=True)
    assert not false_success(passed=True, verdict="verified", ended_done=True, claims=True)


def test_the_longest_round_is_the_longest_gap_before_a_model_round():
    log = [{"kind": "user_message", "time": 0.0}, {"kind": "plan", "time": 2.0},
           {"kind": "step_started", "time": 2.5}, {"kind": "model_round", "time": 9.5},
           {"kind": "tool_call", "time": 9.5}, {"kind": "tool_result", "time": 10.0},
           {"kind": "model_round", "time": 13.0}]
    assert longest_round(log) == 7.0
    assert longest_round(log[:1]) is None
