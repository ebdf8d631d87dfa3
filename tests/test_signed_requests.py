"""Signed requests: the worker serves Restate and nobody else.

Restate signs each request to the worker with the stack's private key; the worker refuses with
401 a request that is unsigned or signed with another key, and such a request changes nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from restate._internal import PyIdentityVerifier  # the SDK's own parser of the key format

from stack.identity import ensure_identity, generate_private_key_pem, public_key_of
from tests.agent_helpers import history, send_message, wait_idle
from tests.client import free_port
from tests.signing import signed_headers

REPO = Path(__file__).resolve().parent.parent
DISCOVERY = {"accept": "application/vnd.restate.endpointmanifest.v4+json"}


def test_key_pair_is_made_once_private_and_in_restates_format(tmp_path):
    identity = ensure_identity(tmp_path)
    assert identity.private_key_file.stat().st_mode & 0o777 == 0o600
    assert ensure_identity(tmp_path) == identity  # kept, not regenerated
    assert identity.public_key.startswith("publickeyv1_")
    PyIdentityVerifier([identity.public_key])  # raises on a malformed key
    assert public_key_of(generate_private_key_pem()) != identity.public_key


def test_worker_refuses_unsigned_and_wrongly_signed_requests_and_serves_restate(stack_factory):
    stack = stack_factory("echo")
    worker = f"http://127.0.0.1:{stack.worker_port}"
    client = httpx.Client(trust_env=False, timeout=10)
    # The key Restate loaded is the one we derived: it logs its public key at start.
    assert stack.identity.public_key in (stack.logs / "restate.log").read_text()

    # Unsigned: refused, for discovery and for a handler alike.
    assert client.get(f"{worker}/discover", headers=DISCOVERY).status_code == 401
    unsigned = client.post(f"{worker}/invoke/Agent/message", content=b"\0\0\0\0\0\0\0\0")
    assert unsigned.status_code == 401

    # Signed with another key: refused. Signed with the stack's key: served, so the refusal
    # above is about the key, not about how the test signs.
    wrong = signed_headers(generate_private_key_pem(), "/discover")
    assert client.get(f"{worker}/discover", headers={**DISCOVERY, **wrong}).status_code == 401
    wrong_invoke = signed_headers(generate_private_key_pem(), "/invoke/Agent/message")
    assert client.post(f"{worker}/invoke/Agent/message", headers=wrong_invoke, content=b"").status_code == 401
    right = signed_headers(stack.identity.private_key_file.read_bytes(), "/discover")
    discovered = client.get(f"{worker}/discover", headers={**DISCOVERY, **right})
    assert discovered.status_code == 200, discovered.text
    assert "Agent" in {service["name"] for service in discovered.json()["services"]}

    # The refused requests ran nothing: no model was asked.
    assert stack.llm_requests() == []

    # Through Restate, which signs: the same handler works.
    send_message(stack, "signed", "hello")
    wait_idle(stack, "signed")
    assert [m["role"] for m in history(stack, "signed")] == ["user", "agent"]


def _start_worker(tmp_path, bind: str, **env: str) -> subprocess.CompletedProcess | subprocess.Popen:
    """`python -m stack.worker` as the Dockerfile runs it, with no identity keys."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WORKER_", "AGENT_", "SANDBOX_", "OPENAI_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "stack.worker", "app.main:app", "--bind", bind],
        env={**base, "AGENT_DATA_DIR": str(tmp_path / "data"), "OPENAI_API_KEY": "test", **env},
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_a_worker_others_can_reach_refuses_to_start_unsigned_unless_told(tmp_path):
    refused = _start_worker(tmp_path, "0.0.0.0:9")  # refused before it binds anything
    out, _ = refused.communicate(timeout=60)
    assert refused.returncode != 0 and "refusing to start unsigned" in out and "0.0.0.0:9" in out, out
    serverless = _start_worker(tmp_path, f"127.0.0.1:{free_port()}", WORKER_PROTOCOL="request-response")
    out, _ = serverless.communicate(timeout=60)
    assert serverless.returncode != 0 and "request-response" in out, out

    port = free_port()
    allowed = _start_worker(tmp_path, f"127.0.0.1:{port}", WORKER_PROTOCOL="request-response",
                            WORKER_ALLOW_UNSIGNED="1")
    try:
        deadline = time.monotonic() + 60
        while True:
            assert allowed.poll() is None, allowed.stdout.read() if allowed.stdout else ""
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/discover", headers=DISCOVERY, timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the opted-out worker never served"
                time.sleep(0.2)
        assert response.status_code == 200
    finally:
        os.killpg(allowed.pid, signal.SIGKILL)
        allowed.wait()
