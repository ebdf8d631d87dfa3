"""The deploy targets in deploy/, tested as far as this machine allows (no Modal account, no AWS,
no Docker engine): each builds the real deployment with the real SDK objects, and answers a
Restate discovery request (and, for Lambda, a handler invocation) signed as Restate signs them.

Each target is driven in a fresh Python process with the environment that target gives its
code, because the settings and the sandbox backend are read once per process."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import modal

from deploy import modal_app
from stack import processes
from stack.identity import ensure_identity, generate_private_key_pem
from tests.restate_frames import CONTENT_TYPE, invocation_body, output_of
from tests.signing import signed_headers

REPO = Path(__file__).resolve().parent.parent
DISCOVERY = {"accept": "application/vnd.restate.endpointmanifest.v4+json"}


def run_python(code: str, env: dict[str, str], stdin: object) -> object:
    """Run `code` in a fresh interpreter at the repo root with exactly `env` (plus PATH), feeding
    it `stdin` as JSON; return the JSON it prints last."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("OPENAI_", "AGENT_", "RESTATE_", "SANDBOX_", "WORKER_", "MODAL_", "AWS_"))}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**base, **env}, input=json.dumps(stdin),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_modal_app_builds_with_the_real_sdk_and_serves_signed_discovery(tmp_path):
    # The definition: a Modal app whose one function is an ASGI web endpoint with our secret.
    assert isinstance(modal_app.app, modal.App) and isinstance(modal_app.worker, modal.Function)
    assert modal_app.worker._is_web_endpoint()
    [secret] = modal_app.worker._spec_.secrets
    assert secret.name == modal_app.SECRET_NAME
    assert isinstance(modal_app.image, modal.Image)
    assert modal_app.WORKER_ENV["SANDBOX_BACKEND"] == "modal"
    assert not any(pin.startswith("xllamacpp") for pin in modal_app.worker_requirements())
    assert "restate deployments register --use-http1.1 https://" in modal_app.__doc__

    # The function's body, run here as Modal runs it: it builds the ASGI app, which answers
    # Restate's discovery (signed) in request-response mode and refuses it unsigned.
    identity = ensure_identity(tmp_path)
    code = """
import asyncio, json, sys
import httpx
from deploy import modal_app
asgi = modal_app.worker.local()
async def main(requests):
    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="https://modal.example") as client:
        return [(r.status_code, r.text) for r in [await client.get("/discover", headers=h) for h in requests]]
print(json.dumps(asyncio.run(main(json.load(sys.stdin)))))
"""
    signed = {**DISCOVERY, **signed_headers(identity.private_key_file.read_bytes(), "/discover")}
    env = {**modal_app.WORKER_ENV, "AGENT_DATA_DIR": str(tmp_path / "data"), **identity.worker_env()}
    (unsigned_status, _), (status, manifest) = run_python(code, env, [DISCOVERY, signed])
    assert unsigned_status == 401
    assert status == 200
    manifest = json.loads(manifest)
    assert manifest["protocolMode"] == "REQUEST_RESPONSE"
    assert {"Agent", "Task", "Sandbox", "Events"} <= {s["name"] for s in manifest["services"]}


LAMBDA_RUNNER = """
import json, sys
from deploy.lambda_handler import handler
print(json.dumps([handler(event, None) for event in json.load(sys.stdin)]))
"""


def lambda_event(path: str, headers: dict[str, str], body: bytes = b"", method: str = "POST") -> dict:
    """An event as Restate sends it to a Lambda function."""
    return {"path": path, "httpMethod": method, "headers": headers,
            "body": base64.b64encode(body).decode(), "isBase64Encoded": True}


def test_lambda_handler_serves_discovery_and_a_handler_invocation(tmp_path):
    identity = ensure_identity(tmp_path)
    key = identity.private_key_file.read_bytes()
    read = "/invoke/Events/read"
    invoke_headers = {"content-type": CONTENT_TYPE, "accept": CONTENT_TYPE}
    events = [
        lambda_event("/discover", {**DISCOVERY, **signed_headers(key, "/discover")}, method="GET"),
        lambda_event("/discover", DISCOVERY, method="GET"),  # unsigned
        lambda_event(read, {**invoke_headers, **signed_headers(key, read)},
                     invocation_body("s1", b'{"after": 0}')),
        lambda_event(read, {**invoke_headers, **signed_headers(key, read)},
                     invocation_body("s1", b'{"after": "soon"}')),
        lambda_event(read, {**invoke_headers, **signed_headers(generate_private_key_pem(), read)},
                     invocation_body("s1", b'{"after": 0}')),  # signed with another key
    ]
    env = {"AWS_LAMBDA_FUNCTION_NAME": "durable-coding-agent", "SANDBOX_BACKEND": "modal",
           "AGENT_DATA_DIR": str(tmp_path / "data"), **identity.worker_env()}
    discovered, unsigned, served, refused_input, wrong_key = run_python(LAMBDA_RUNNER, env, events)

    assert discovered["statusCode"] == 200
    manifest = json.loads(base64.b64decode(discovered["body"]))
    assert manifest["protocolMode"] == "REQUEST_RESPONSE"
    assert "Events" in {s["name"] for s in manifest["services"]}
    assert unsigned["statusCode"] == 401 and wrong_key["statusCode"] == 401

    # A real invocation of Events/read, answered with Restate's frames: the (empty) log.
    assert served["statusCode"] == 200
    kind, value = output_of(base64.b64decode(served["body"]))
    assert kind == "value" and json.loads(value)["events"] == []
    # Bad input is the caller's error (400), not a retry.
    kind, (code, message) = output_of(base64.b64decode(refused_input["body"]))
    assert kind == "failure" and code == 400 and "after" in message


def test_dockerfile_copies_only_repo_files_and_runs_the_stacks_commands():
    """No Docker engine here, so `docker build` never ran: check what can be checked without it."""
    dockerfile = (REPO / "Dockerfile").read_text()
    instructions = [line for line in dockerfile.splitlines() if line and not line.startswith("#")]
    # Every COPY source is a file or directory of the repo (the image builds from it alone).
    copied = [source for line in instructions if line.startswith("COPY ")
              for source in line.split()[1:-1] if not source.startswith("--")]
    assert copied and all((REPO / source).exists() for source in copied), copied
    # The worker's command is the one stack/processes.py runs (hypercorn on the app), bound to
    # every interface of the container; the UI's is `python -m ui`.
    [cmd] = [json.loads(line.removeprefix("CMD ")) for line in instructions if line.startswith("CMD ")]
    assert cmd == ["python", *processes.worker_command("0.0.0.0:9080")]
    assert re.search(r"^# .*docker run .* python -m ui\b", dockerfile, re.MULTILINE)
