"""The arithmetic and text of fitting the context window (app/context.py): pure functions."""

from __future__ import annotations

import json

from app import context
from tests.fakes.scripted_llm import apply_template, tokenize


def test_the_certain_bound_is_never_below_the_tokens_whatever_the_text():
    # Digits are a token each (as with Qwen): 3 characters a token would be far too few.
    for content in ["\n".join(str(n) for n in range(5_000)), "plain words " * 1_000, "ünïcode ✓ " * 500]:
        messages = [{"role": "system", "content": "s"}, {"role": "user", "content": content}]
        tokens = len(tokenize(apply_template({"messages": messages})))
        assert context.upper_bound(messages, []) >= tokens
    digits = [{"role": "user", "content": "1" * 9_000}]
    assert context.estimate(digits, []) < len(tokenize(apply_template({"messages": digits})))


def test_the_answer_keeps_a_quarter_of_the_window_and_at_least_1024_tokens():
    assert context.prompt_budget(8192) == 6144
    assert context.prompt_budget(2048) == 1024
    assert context.prompt_budget(128_000) == 96_000


def test_a_pointer_names_the_file_that_holds_the_whole_output_or_says_why_not():
    output = "exit code: 0\nstdout:\n" + "a" * 3_000
    assert context.pointer(output, ".agent/context/t-s1-m3.txt") == (
        "exit code: 0\n[3021 characters of this output were removed to fit the model's context; "
        "the whole output is in .agent/context/t-s1-m3.txt (read_file it to see it again)]")
    assert "could not be saved (workspace full)" in context.pointer(output, None, "workspace full")


def test_clipping_keeps_head_and_tail_and_older_calls_lose_only_long_arguments():
    clipped = context.clip("head " + "z" * 10_000 + " tail", 1_000, "the whole output is in x.txt")
    assert clipped.startswith("head ") and clipped.endswith(" tail") and len(clipped) < 1_200
    assert "the whole output is in x.txt" in clipped
    call = {"id": "c", "type": "function",
            "function": {"name": "write_file", "arguments": json.dumps({"path": "f.py", "content": "x" * 6_000})}}
    assert json.loads(context.shorter_call(call)["function"]["arguments"]) == {
        "path": "f.py", "content": "[6000 characters, removed to fit the model's context]"}


def test_the_latest_round_starts_at_the_last_assistant_message():
    messages = [{"role": "system"}, {"role": "user"}, {"role": "assistant"}, {"role": "tool"},
                {"role": "assistant"}, {"role": "tool"}, {"role": "user"}]
    assert context.latest_round(messages) == 4
