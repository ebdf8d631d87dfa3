"""The agent's Restate deployment on Modal: an ASGI web function in request-response mode.

    modal secret create durable-coding-agent OPENAI_API_KEY=... WORKER_IDENTITY_KEYS=publickeyv1_...
    modal deploy deploy/modal_app.py
    restate deployments register --use-http1.1 https://<workspace>--durable-coding-agent.modal.run

Modal starts a container when a request arrives and stops it when requests stop coming (scale to
zero), so the worker speaks Restate's request-response protocol: every request carries the
journal so far, and nothing lives in the container between requests. Sandboxes are Modal
Sandboxes (SANDBOX_BACKEND=modal), made by the function with the credentials Modal gives it.

Secrets come from the Modal secret `durable-coding-agent`: the model's key (OPENAI_API_KEY, and
OPENAI_BASE_URL / AGENT_MODEL if wanted) and WORKER_IDENTITY_KEYS, the public key of the Restate
server that will call it (so the public URL answers 401 to everyone else). docs/deploy.md has
the whole procedure.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import modal

APP_NAME = "durable-coding-agent"
SECRET_NAME = "durable-coding-agent"
REPO_ROOT = Path(__file__).resolve().parent.parent

# The settings every container starts with (app/config.py reads them; the secret adds the rest).
WORKER_ENV = {
    "WORKER_PROTOCOL": "request-response",
    "SANDBOX_BACKEND": "modal",
    "AGENT_DATA_DIR": "/tmp/agent",  # the container's disk is scratch: state lives in Restate
}


def worker_requirements() -> list[str]:
    """The worker's pinned dependencies, from pyproject.toml, without the offline model's
    engine: a deployment on Modal talks to a hosted model."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return [pin for pin in project["dependencies"] if not pin.startswith("xllamacpp")]


_IGNORE = ["**/__pycache__/**", "**/*.pyc"]
image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(*worker_requirements())
    .env(WORKER_ENV)
    .add_local_dir(REPO_ROOT / "app", "/root/app", ignore=_IGNORE)
    .add_local_dir(REPO_ROOT / "sandbox", "/root/sandbox", ignore=_IGNORE)
)
app = modal.App(APP_NAME, image=image)


@app.function(secrets=[modal.Secret.from_name(SECRET_NAME)], timeout=900)
@modal.concurrent(max_inputs=20)  # one container serves many requests; each is short
@modal.asgi_app(label=APP_NAME)
def worker():  # type: ignore[no-untyped-def] - Modal reads the bare function
    """Build the deployment's ASGI app; Modal serves it at https://<workspace>--durable-coding-agent.modal.run."""
    from app.main import build_app

    return build_app(protocol="request-response")
