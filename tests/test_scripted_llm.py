"""The scripted LLM speaks OpenAI Chat Completions well enough for the real `openai` client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.harness import ScriptedLLM

def tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


PLAN_TOOL = tool("make_plan")
STEP_TOOLS = [tool(name) for name in
              ("run_command", "write_file", "read_file", "list_files", "edit_file", "finish")]
PLANNING = [{"role": "system", "content": "You PLAN coding tasks."},
            {"role": "user", "content": "write hello.py"}]
STEP_1 = [{"role": "system", "content": "You carry out one step.\nCurrent step 1: Write hello.py"},
          {"role": "user", "content": "Go."}]


def client(llm: ScriptedLLM) -> openai.OpenAI:
    # max_retries=0: the tests want to see every answer, errors included.
    return openai.OpenAI(base_url=llm.base_url, api_key="test", max_retries=0)


def with_result(messages: list[dict[str, Any]], message: Any, result: str) -> list[dict[str, Any]]:
    """The conversation after the assistant's tool call and the tool's result."""
    call = message.tool_calls[0]
    return [*messages, message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": result}]


def test_planning_call_gets_the_plan_as_a_tool_call(
    llm_factory: Callable[[str], ScriptedLLM],
) -> None:
    llm = llm_factory("hello_world")
    answer = client(llm).chat.completions.create(model="m", messages=PLANNING, tools=[PLAN_TOOL])

    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "make_plan"
    assert json.loads(call.function.arguments)["steps"][0]["title"] == "Write hello.py"
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert [r["request"]["messages"] for r in llm.requests()] == [PLANNING]


def test_step_rounds_follow_the_tool_results_and_replay_identically(
    llm_factory: Callable[[str], ScriptedLLM],
) -> None:
    llm = llm_factory("hello_world")
    chat = client(llm).chat.completions

    first = chat.create(model="m", messages=STEP_1, tools=STEP_TOOLS).choices[0].message
    assert first.tool_calls[0].function.name == "write_file"
    second_messages = with_result(STEP_1, first, "wrote hello.py")
    second = chat.create(model="m", messages=second_messages, tools=STEP_TOOLS).choices[0].message
    assert json.loads(second.tool_calls[0].function.arguments) == {"command": "python3 hello.py"}
    third_messages = with_result(second_messages, second, "hello, world")
    third = chat.create(model="m", messages=third_messages, tools=STEP_TOOLS).choices[0].message
    assert third.tool_calls[0].function.name == "finish"

    # The same conversation again (a replay after a crash) gets the same answer, ids included.
    again = chat.create(model="m", messages=STEP_1, tools=STEP_TOOLS).choices[0].message
    assert again.tool_calls == first.tool_calls
    assert len(llm.requests()) == 4


def test_rate_limit_carries_retry_after_then_the_answer_comes(
    llm_factory: Callable[[str], ScriptedLLM],
) -> None:
    llm = llm_factory("rate_limited")
    chat = client(llm).chat.completions

    with pytest.raises(openai.RateLimitError) as caught:
        chat.create(model="m", messages=PLANNING, tools=[PLAN_TOOL])
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "1"

    answer = chat.create(model="m", messages=PLANNING, tools=[PLAN_TOOL])
    assert answer.choices[0].message.tool_calls[0].function.name == "make_plan"
    assert [r["attempt"] for r in llm.requests()] == [0, 1]


def test_bad_request_is_a_400(llm_factory: Callable[[str], ScriptedLLM]) -> None:
    llm = llm_factory("bad_request")
    with pytest.raises(openai.BadRequestError):
        client(llm).chat.completions.create(model="m", messages=PLANNING)


def test_streaming_text(llm_factory: Callable[[str], ScriptedLLM]) -> None:
    llm = llm_factory("echo")
    stream = client(llm).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hello there, streaming world"}],
        stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: hello there, streaming world"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


def test_streaming_tool_calls(llm_factory: Callable[[str], ScriptedLLM]) -> None:
    llm = llm_factory("hello_world")
    stream = client(llm).chat.completions.create(
        model="m", messages=STEP_1, tools=STEP_TOOLS, stream=True,
    )
    name, arguments, ids, finish = "", "", set[str](), None
    for chunk in stream:
        assert chunk.usage is None  # usage only when stream_options asks for it
        for delta in chunk.choices[0].delta.tool_calls or []:
            assert delta.index == 0
            if delta.id:
                ids.add(delta.id)
            name += delta.function.name or ""
            arguments += delta.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish

    assert name == "write_file" and len(ids) == 1 and finish == "tool_calls"
    assert json.loads(arguments) == {"path": "hello.py", "content": "print('hello, world')\n"}


def test_a_slow_reply_is_logged_before_it_is_answered(
    llm_factory: Callable[[str], ScriptedLLM],
) -> None:
    llm = llm_factory("slow_model")  # step 1's first round answers after 3 s
    answered = threading.Event()

    def ask() -> None:
        httpx.post(f"{llm.base_url}/chat/completions", json={"model": "m", "messages": STEP_1},
                   timeout=10)
        answered.set()

    threading.Thread(target=ask, daemon=True).start()
    deadline = time.monotonic() + 2
    while not llm.requests() and time.monotonic() < deadline:
        time.sleep(0.02)

    assert llm.requests()[0]["reply"]["delay_s"] == 3.0
    assert not answered.is_set()  # the call is in flight: a test could kill the worker now
    assert answered.wait(5)
