"""The structured-output adapter: tools become a JSON schema, answers become OpenAI tool_calls."""

from __future__ import annotations

import json

import pytest

from app.structured_tools import StructuredAnswerError, grammar_for, render_call, to_tool_calls, tool_prompt

TOOLS = [
    {"type": "function", "function": {
        "name": "write_file", "description": "Write a file in the workspace.\nOverwrites.",
        "parameters": {"type": "object",
                       "properties": {"path": {"type": "string"},
                                      "content": {"type": "string", "contentMediaType": "text/plain"}},
                       "required": ["path", "content"]}}},
    {"type": "function", "function": {
        "name": "run", "description": "Run a shell command.",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}},
]


def _json_rule(grammar: str, rule: str) -> dict:
    """The schema a `rule: %json {...} ...` line of the grammar inlines."""
    [line] = [line for line in grammar.splitlines() if line.startswith(f"{rule}: %json ")]
    return json.JSONDecoder().raw_decode(line, len(f"{rule}: %json "))[0]


def test_grammar_has_one_branch_per_tool_keyed_by_a_constant_name_and_the_block_after_its_object():
    grammar = grammar_for(TOOLS)

    assert grammar.startswith("%llguidance {}\nstart: call | block_call_0\n")
    [run_branch] = _json_rule(grammar, "call")["oneOf"]
    assert run_branch["properties"]["tool"] == {"const": "run"}
    assert run_branch["required"] == ["tool", "args"]
    assert run_branch["properties"]["args"]["properties"] == {"command": {"type": "string"}}
    assert run_branch["properties"]["args"]["additionalProperties"] is False
    write_branch = _json_rule(grammar, "block_call_0")
    assert write_branch["properties"]["tool"] == {"const": "write_file"}
    assert write_branch["properties"]["args"]["properties"] == {"path": {"type": "string"}}  # content: after it
    assert write_branch["properties"]["args"]["required"] == ["path"]
    assert grammar.splitlines()[3].endswith('"\\n```" FENCE_INFO "\\n" BLOCK')
    assert "BLOCK: /(?s:.*)\\n```[ \\t\\n]*/" in grammar.splitlines()  # up to the answer's last fence
    assert "additionalProperties" not in TOOLS[1]["function"]["parameters"], "the caller's tools are not mutated"
    assert "content" in TOOLS[0]["function"]["parameters"]["required"]


def test_tools_without_a_block_argument_make_a_grammar_of_json_alone():
    grammar = grammar_for(TOOLS[1:])

    assert grammar.splitlines()[:2] == ["%llguidance {}", "start: call"]
    assert "block" not in grammar


def test_tool_prompt_is_short_and_names_every_tool_its_arguments_and_the_block_form():
    prompt = tool_prompt(TOOLS)

    assert "- write_file(path) + content as a fenced block: Write a file in the workspace." in prompt
    assert "- run(command): Run a shell command." in prompt
    assert '{"tool": NAME, "args": {...}}' in prompt
    assert '{"tool": "write_file", "args": {"path": "app.py"}}\n```python\n' in prompt
    assert len(prompt) < 500


def test_a_block_after_the_object_is_the_block_argument_byte_for_byte():
    code = 'def f(s):\n    """Say "hi".\n    >>> f(\'a\\\\b\')\n    """\n    return s.replace("`", "``` ")\n\n'
    answer = '{"tool": "write_file", "args": {"path": "f.py"}}\n```python\n' + code + "```"

    [call] = to_tool_calls(answer, "p", TOOLS)

    assert call["function"]["name"] == "write_file"
    assert json.loads(call["function"]["arguments"]) == {"path": "f.py", "content": code}


@pytest.mark.parametrize("name, args, content", [
    ("write_file", {"path": "a.py", "content": "x = '''\n``` inside\n'''\n"}, "x = '''\n``` inside\n'''\n"),
    ("write_file", {"path": "README.md", "content": "# A\n\n```sh\nmake\n```\n\nDone.\n"},
     "# A\n\n```sh\nmake\n```\n\nDone.\n"),
    ("write_file", {"path": "b.txt", "content": "no newline at the end"}, "no newline at the end\n"),
    ("run", {"command": "ls"}, None),
])
def test_a_call_written_back_as_the_model_writes_it_reads_the_same(name, args, content):
    [call] = to_tool_calls(render_call(name, args, TOOLS), "p", TOOLS)

    assert json.loads(call["function"]["arguments"]) == (args if content is None else {**args, "content": content})


def test_without_the_tools_a_block_is_not_read_as_an_argument():
    answer = '{"tool": "write_file", "args": {"path": "f.py"}}\n```\nx = 1\n```'

    [call] = to_tool_calls(answer, "p")  # the JSON object alone: validation then says what is missing

    assert json.loads(call["function"]["arguments"]) == {"path": "f.py"}


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

    schema = _json_rule(grammar_for([plan_tool(4)]), "call")
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


def test_an_earlier_block_call_is_resent_as_written():
    from app.llm import _structured_messages

    raw = '{"tool": "write_file", "args": {"path": "a.py"}}\n```python\nprint("a")\n```'
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "go"},
                {"role": "assistant", "content": raw, "tool_calls": to_tool_calls(raw, "c", TOOLS)}]

    assert _structured_messages(messages, TOOLS)[2]["content"] == raw
    # Without the model's own text (a replay from another client), it is written the same way.
    rewritten = _structured_messages([*messages[:2], {**messages[2], "content": ""}], TOOLS)[2]["content"]
    assert to_tool_calls(rewritten, "d", TOOLS)[0]["function"] == messages[2]["tool_calls"][0]["function"]
