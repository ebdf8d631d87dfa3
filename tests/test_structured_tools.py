"""The structured-output adapter: tools become a JSON schema, answers become OpenAI tool_calls."""

from __future__ import annotations

import json

import pytest

from app.structured_tools import StructuredAnswerError, response_format_for, to_tool_calls, tool_prompt

TOOLS = [
    {"type": "function", "function": {
        "name": "write_file", "description": "Write a file in the workspace.\nOverwrites.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                       "required": ["path", "content"]}}},
    {"type": "function", "function": {
        "name": "run", "description": "Run a shell command.",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}},
]


def test_schema_has_one_branch_per_tool_keyed_by_a_constant_name():
    fmt = response_format_for(TOOLS)

    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "tool_call"
    branches = fmt["json_schema"]["schema"]["oneOf"]
    assert [b["properties"]["tool"] for b in branches] == [{"const": "write_file"}, {"const": "run"}]
    assert all(b["required"] == ["tool", "args"] for b in branches)
    run_args = branches[1]["properties"]["args"]
    assert run_args["properties"] == {"command": {"type": "string"}}
    assert run_args["required"] == ["command"]
    assert run_args["additionalProperties"] is False
    assert "additionalProperties" not in TOOLS[1]["function"]["parameters"], "the caller's tools are not mutated"
    json.dumps(fmt)  # it goes over the wire as is


def test_tool_prompt_is_short_and_names_every_tool_and_its_arguments():
    prompt = tool_prompt(TOOLS)

    assert "- write_file(path, content): Write a file in the workspace." in prompt
    assert "- run(command): Run a shell command." in prompt
    assert '{"tool": NAME, "args": {...}}' in prompt
    assert len(prompt) < 300


def test_a_constrained_answer_becomes_an_openai_tool_call_with_a_deterministic_id():
    answer = '{\n  "tool": "write_file",\n  "args": {"path": "hello.py", "content": "print(\'hello\')\\n"}\n}'

    calls = to_tool_calls(answer, "task-1-step-0-round-2")

    assert calls == [{"id": "task-1-step-0-round-2-0", "type": "function", "function": {
        "name": "write_file", "arguments": json.dumps({"path": "hello.py", "content": "print('hello')\n"})}}]
    assert to_tool_calls(answer, "task-1-step-0-round-2") == calls


def test_a_fenced_json_block_in_free_text_is_parsed():
    answer = 'I will run it.\n```json\n{"tool": "run", "args": {"command": "python hello.py"}}\n```\nDone.'

    [call] = to_tool_calls(answer, "p")

    assert call["function"] == {"name": "run", "arguments": '{"command": "python hello.py"}'}


def test_the_first_object_in_free_text_and_qwens_own_call_shape_are_understood():
    answer = '<tool_call>\n{"name": "run", "arguments": {"command": "ls"}}\n</tool_call>'

    [call] = to_tool_calls(answer, "p")

    assert call["function"] == {"name": "run", "arguments": '{"command": "ls"}'}


@pytest.mark.parametrize("answer", ["Sure, I wrote the file.", '{"path": "x.py"}', "```json\n{oops\n```", ""])
def test_an_answer_without_a_call_is_refused_with_a_message_for_the_model(answer):
    with pytest.raises(StructuredAnswerError, match=r'Reply with only a JSON object like \{"tool"'):
        to_tool_calls(answer, "p")


def test_nested_models_are_inlined_for_llama_cpp():
    from app.planner import plan_tool

    schema = response_format_for([plan_tool(4)])["json_schema"]["schema"]
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text
    items = schema["oneOf"][0]["properties"]["args"]["properties"]["steps"]["items"]
    assert set(items["properties"]) == {"title", "instructions"}


def test_an_earlier_call_is_resent_as_the_models_own_text_unless_it_was_shortened():
    from app.context import shorter_call
    from app.llm import _structured_messages

    raw = '{"tool":"write_file","args":{"path":"a.py","content":"' + "x = 1\\n" * 100 + '"}}'
    call = to_tool_calls(raw, "c")
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "go"},
                {"role": "assistant", "content": raw, "tool_calls": call},
                {"role": "tool", "tool_call_id": "c-0", "content": "wrote 600 bytes to a.py"},
                {"role": "assistant", "content": '{"tool":"finish","args":{"result":"ok"}}',
                 "tool_calls": to_tool_calls('{"tool":"finish","args":{"result":"ok"}}', "d")}]
    # As written, byte for byte: the model server's prompt cache holds those tokens.
    assert _structured_messages(messages, [])[2]["content"] == raw
    # Shortened to fit the window (app/window.py), the long argument is gone from the call, and
    # from what is sent, although the model's own text still holds it.
    fitted = [*messages[:2], {**messages[2], "tool_calls": [shorter_call(c) for c in call]}, *messages[3:]]
    shortened = _structured_messages(fitted, [])[2]["content"]
    assert "x = 1" not in shortened and "removed to fit" in shortened
