"""The embedded offline model drives the whole durable stack: no API key, no fake.

This is the one test that runs the real Qwen2.5-Coder-1.5B on the CPU. If the weights are not
installed yet it installs them (never skipping), then it asks for a tiny task and checks what
actually happened in the sandbox, through the public Sandbox handlers.
"""

from __future__ import annotations


import pytest

from app.config import Settings
from stack import model, model_server
from tests.client import free_port
from tests.agent_helpers import events, history, read_file, send_message, wait_idle


@pytest.fixture
def offline_model(tmp_path):
    model.ensure("1.5b")  # installs and verifies the pinned weights when missing
    config = Settings(local_model="1.5b", local_model_port=free_port(), local_model_threads=2)
    proc = model_server.start(config, tmp_path / "model.log")
    try:
        model_server.wait_ready(config.local_model_port, 180, proc=proc, log_path=tmp_path / "model.log")
        yield config
    finally:
        model_server.stop(proc)


@pytest.mark.slow
def test_offline_model_writes_and_runs_hello(stack_factory, offline_model):
    base_url, _, model_name, tool_mode = offline_model.llm_endpoint()
    assert tool_mode == "structured"
    stack = stack_factory("echo", env={
        "OPENAI_BASE_URL": base_url, "AGENT_MODEL": model_name, "AGENT_TOOL_MODE": tool_mode,
        "AGENT_TEMPERATURE": "0", "AGENT_MAX_STEPS": "3", "AGENT_MAX_ROUNDS": "6",
    })
    send_message(stack, "offline", "create hello.py that prints hello, then run it")
    final = wait_idle(stack, "offline", timeout=600)

    assert "hello" in read_file(stack, "offline", "hello.py").lower()
    # Every tool result is in the session's event log: one of them ran it and printed hello.
    results = [e["detail"] or "" for e in events(stack, "offline", "tool_result")]
    assert any(r.startswith("exit code: 0") and "hello" in r.lower() for r in results), results
    assert history(stack, "offline")[-1]["role"] == "agent", final
    assert final["last_usage"]["rounds"] >= 3  # plan, write, run (at least)
