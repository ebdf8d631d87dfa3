"""The offline model server: a managed child process that speaks OpenAI chat completions."""

from __future__ import annotations

import json
import os
import socket

import pytest

from app.config import settings
from app.structured_tools import response_format_for, to_tool_calls, tool_prompt
from stack import model, model_server
from stack.model_server import ModelServerError
from tests.client import free_port


def test_a_server_that_cannot_load_its_model_fails_fast_with_its_log(tmp_path, monkeypatch):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf")
    monkeypatch.setattr(model, "ensure", lambda size: broken)
    port, log = free_port(), tmp_path / "model.log"

    proc = model_server.start(settings().model_copy(update={"local_model_port": port}), log)
    try:
        with pytest.raises(ModelServerError, match=r"(?s)exited with code 1.*Failed to init server"):
            model_server.wait_ready(port, 60, proc=proc, log_path=log)
    finally:
        model_server.stop(proc)


def test_a_busy_port_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ModelServerError, match=f"port {port} is already in use"):
            model_server.start(settings().model_copy(update={"local_model_port": port}), tmp_path / "log")


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    """The configured offline model on a private port (the product's own may be running)."""
    port, log = free_port(), tmp_path_factory.mktemp("model") / "model.log"
    proc = model_server.start(settings().model_copy(update={"local_model_port": port}), log)
    try:
        model_server.wait_ready(port, 180, proc=proc, log_path=log)
        yield proc, f"http://127.0.0.1:{port}/v1"
    finally:
        model_server.stop(proc)


@pytest.fixture
def client(real_server):
    from openai import OpenAI

    return OpenAI(base_url=real_server[1], api_key="unused")


@pytest.mark.slow
def test_the_real_model_chats_and_streams(client):
    messages = [{"role": "user", "content": "Say hello in one word."}]

    answer = client.chat.completions.create(model="local", messages=messages, max_tokens=8, temperature=0)
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(model="local", messages=messages, max_tokens=8,
                                                    temperature=0, stream=True)
        if chunk.choices
    )

    assert answer.choices[0].message.content.strip()
    assert streamed == answer.choices[0].message.content


@pytest.mark.slow
def test_the_real_model_answers_the_tool_schema_with_a_parseable_call(client):
    tools = [
        {"type": "function", "function": {"name": "write_file", "description": "Write a file.", "parameters": {
            "type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"]}}},
        {"type": "function", "function": {"name": "run", "description": "Run a shell command.", "parameters": {
            "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}},
    ]

    answer = client.chat.completions.create(
        model="local", temperature=0, max_tokens=120, response_format=response_format_for(tools),
        messages=[{"role": "system", "content": "You are a coding agent.\n" + tool_prompt(tools)},
                  {"role": "user", "content": "Create hello.py that prints hello."}],
    )

    [call] = to_tool_calls(answer.choices[0].message.content, "slow")
    assert call["function"]["name"] == "write_file"
    assert json.loads(call["function"]["arguments"])["path"] == "hello.py"


@pytest.mark.slow
def test_stop_takes_the_server_down(real_server):
    proc, _ = real_server

    model_server.stop(proc)

    assert proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)


def test_ngram_drafting_is_configured_only_when_asked_for(tmp_path):
    import xllamacpp

    plain = model_server.server_params(tmp_path / "m.gguf", port=1, threads=2, ctx=4096, alias="x")
    drafted = model_server.server_params(tmp_path / "m.gguf", port=1, threads=2, ctx=4096, alias="x", draft="ngram")
    ngram = xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE
    assert ngram not in plain.speculative.types
    assert drafted.speculative.types == [ngram]
    assert drafted.speculative.ngram_simple.size_n == model_server.NGRAM_KEY
    assert "--draft" in model_server.command(tmp_path / "m.gguf", port=1, threads=2, ctx=4096, alias="x", draft="ngram")
