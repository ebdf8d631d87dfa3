"""The eval suite (bench/eval/) end to end on two cases, with a scripted model.

The cases go through the whole product (Agent, Task, Sandbox, bubblewrap) and the hidden-test
judge; the scripted model writes each case's reference files as an agent, and a wrong stub as
the single-shot baseline, so the judge must tell a pass from a fail on both paths. No pass
rate of a real model is asserted anywhere: those are measurements, kept in bench/results/.
"""

from __future__ import annotations

import openai
import pytest

from bench.eval.__main__ import BENCH_APP, evaluate
from bench.eval.cases import TUNING_RANGE, humaneval_cases, parse_selection
from bench.eval.judge import judge
from bench.eval.own_cases import OWN_CASES
from bench.eval.runner import extract_code
from tests.harness import Stack


def test_two_cases_through_the_product_are_judged_by_hidden_tests(tmp_path):
    cases = parse_selection("humaneval:0 own:fix-failing-test", OWN_CASES)
    with Stack(tmp_path / "stack", "bench.eval.scripted:reference_agent", app=BENCH_APP) as stack:
        client = openai.OpenAI(base_url=stack.llm.base_url, api_key="test", max_retries=0)
        humaneval, own = evaluate(stack, cases, baseline=client, model_name="scripted", case_timeout_s=120)

    # The agent wrote the reference files: both pass, read back from the sandbox and judged.
    assert (humaneval.case, humaneval.passed, humaneval.status) == ("HumanEval/0", True, "done")
    assert (own.case, own.passed, own.status) == ("fix-failing-test", True, "done")
    # Plan, one write per reference file, finish: the usage is the task's own.
    assert [humaneval.rounds, own.rounds] == [2 + len(case.reference) for case in cases]
    assert humaneval.prompt_tokens > 0 and humaneval.steps == 1
    # The single-shot answer was a stub returning None: judged, and failed.
    assert humaneval.baseline is not None and not humaneval.baseline.passed
    assert "AssertionError" in humaneval.baseline.detail or "Error" in humaneval.baseline.detail
    assert own.baseline is None  # only HumanEval cases have a single-shot baseline


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


def test_held_out_problems_are_refused_unless_asked_for():
    assert max(TUNING_RANGE) == 39
    with pytest.raises(ValueError, match="held out"):
        parse_selection("humaneval:40", OWN_CASES)


def test_code_is_taken_from_the_answers_blocks():
    answer = "Here:\n```python\ndef f():\n    return 1\n```\nand\n```python\nX = 2\n```"
    assert extract_code(answer) == "def f():\n    return 1\n\n\nX = 2\n"
    assert extract_code("```python\ndef g():\n    return 3") == "def g():\n    return 3"
