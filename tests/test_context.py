"""Fitting a step's messages to the model's context (app/context.py): pure functions."""

from __future__ import annotations

import json

from app import context


def round_of(i: int, written: int, output: str) -> list[dict]:
    call = {"id": f"c{i}", "type": "function",
            "function": {"name": "write_file", "arguments": json.dumps({"path": f"f{i}.py", "content": "x" * written})}}
    return [{"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"c{i}", "content": output}]


START = [{"role": "system", "content": "system"}, {"role": "user", "content": "the step"}]


def test_messages_within_the_budget_are_sent_as_they_are():
    messages = START + round_of(1, 100, "wrote 100 bytes")
    assert context.fit(messages, 10_000) is messages


def test_old_outputs_and_old_written_files_make_room_and_the_latest_round_stays_whole():
    messages = START + [m for i in range(6) for m in round_of(i, 6_000, f"exit code: 0\nstdout:\n{'y' * 5_000}")]
    budget = context.budget_chars(8192, [])
    assert context.size(messages) > budget

    fitted = context.fit(messages, budget)

    assert context.size(fitted) <= budget
    assert fitted[-2:] == messages[-2:]  # the latest round, untouched
    first_call = json.loads(fitted[2]["tool_calls"][0]["function"]["arguments"])
    assert first_call == {"path": "f0.py", "content": "[6000 characters, removed to fit the model's context]"}
    assert fitted[3]["content"].startswith("exit code: 0\n[") and "removed to fit" in fitted[3]["content"]
    assert messages[3]["content"].endswith("y")  # the journaled list itself is never changed


def test_a_latest_round_too_big_on_its_own_keeps_its_head_and_tail():
    messages = START + round_of(1, 10, "head " + "z" * 30_000 + " tail")
    fitted = context.fit(messages, 6_000)
    assert fitted[-1]["content"].startswith("head ") and fitted[-1]["content"].endswith(" tail")
    assert context.size(fitted) < context.size(messages)


def test_a_pointer_is_used_only_when_it_is_shorter_and_names_the_saved_output():
    saved = "exit code: 0\nstdout:\n" + "a" * 3_000 + "\n(output was truncated; the full output is in .agent/outputs/x.log)"
    assert "the full output is in .agent/outputs/x.log" in context.elide(saved)
    messages = START + round_of(1, 10, "short result, 230 characters " + "b" * 200) + round_of(2, 10, "ok")
    fitted = context.fit(messages, 10)  # impossible budget: shorten what can be shortened
    assert fitted[3]["content"] == messages[3]["content"]  # a pointer would not be shorter
