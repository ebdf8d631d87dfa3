"""The Restate deployment: every service in one ASGI app, served by hypercorn over HTTP/2.

    python -m stack.worker app.main:app --bind 127.0.0.1:9080   (or: hypercorn app.main:app ...)

WORKER_PROTOCOL picks how Restate talks to it: `bidi` (the default; one HTTP/2 stream per
invocation) or `request-response` (one HTTP request per step, replaying the journal each time:
what serverless platforms and HTTP/1.1-only hosts can do). WORKER_IDENTITY_KEYS, when set, makes
it refuse with 401 every request that Restate did not sign. deploy/ serves the same app on
Modal and AWS Lambda; docs/deploy.md has the details.
"""

from __future__ import annotations

from typing import Any, Literal

import restate

from app.agent import agent_object
from app.backend import backend
from app.config import settings
from app.deployment import at_version
from app.events import events_object
from app.owners import session_owner
from app.sandbox_service import sandbox_object
from app.snapshots import snapshots_object
from app.task import task_workflow

# Every service of the deployment (bench/ serves these plus a benchmark service).
SERVICES = [agent_object, task_workflow, sandbox_object, snapshots_object, events_object, session_owner]


def build_app(protocol: Literal["bidi", "request-response"] | None = None) -> Any:
    """The deployment as an ASGI app (or, on AWS Lambda, the SDK's Lambda handler).

    `protocol` overrides WORKER_PROTOCOL, for hosts that can only do one of them.
    """
    config = settings()
    chosen = protocol or config.worker_protocol
    exposure = exposed(config.worker_bind, chosen)
    if exposure and not config.identity_keys and not config.allow_unsigned:
        raise SystemExit(
            f"worker: refusing to start unsigned: {exposure}, and WORKER_IDENTITY_KEYS is not set, so anyone who "
            "can reach it could run commands in its sandboxes. Set WORKER_IDENTITY_KEYS to Restate's request-"
            "signing public key (docs/deploy.md, \"Signed requests\", says how to make the pair), or WORKER_ALLOW_UNSIGNED=1 "
            "if something else keeps everyone but Restate out.")
    # Build the sandbox backend now: it probes its isolation (bubblewrap, cgroups) and refuses
    # to start unprotected, so a misconfigured machine fails at start, not at the first command.
    backend()
    return restate.app(services=SERVICES,
                       protocol="bidi" if chosen == "bidi" else "request_response",
                       identity_keys=config.identity_keys)


def exposed(bind: str, protocol: str) -> str | None:
    """Why others than this machine may reach the worker, or None when only loopback can."""
    if protocol == "request-response":
        return "it serves request-response, the protocol of serverless hosts (Lambda, Modal), which are public"
    if not bind or "://" in bind or bind.startswith("unix:"):
        return None  # a socket handed over (fd://, bound by stack/cluster.py on loopback) or a file
    host = bind.rpartition(":")[0].strip("[]")
    if host not in ("127.0.0.1", "::1", "localhost"):
        return f"it listens on {bind}, beyond loopback"
    return None


# Served under its version's path when the supervisor runs it (app/deployment.py).
app = at_version(build_app(), settings().worker_version)
