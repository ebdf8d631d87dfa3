"""The Restate deployment: every service in one ASGI app, served by hypercorn over HTTP/2.

    python -m stack.worker app.main:app --bind 127.0.0.1:9080   (or: hypercorn app.main:app ...)
"""

from __future__ import annotations

import restate

from app.agent import agent_object
from app.events import events_object
from app.owners import session_owner
from app.backend import backend
from app.config import settings
from app.deployment import at_version
from app.sandbox_service import sandbox_object
from app.snapshots import snapshots_object
from app.task import task_workflow

# Build the sandbox backend now: it probes its isolation (bubblewrap, cgroups) and refuses
# to start unprotected, so a misconfigured machine fails at start, not at the first command.
backend()

# Every service of the deployment (bench/ serves these plus a benchmark service).
SERVICES = [agent_object, task_workflow, sandbox_object, snapshots_object, events_object, session_owner]

# Served under its version's path when the supervisor runs it (app/deployment.py).
app = at_version(restate.app(services=SERVICES), settings().worker_version)
