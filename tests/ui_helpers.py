"""The web UI's tests' helpers: a small, strict SSE parser over httpx, and the UI server served
in-process against a canned Restate ingress (a fixed event log, history and workspace, session
owners, and a record of every call that reached it; no Restate server)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.client import free_ports
from ui.server import DELTA_SECRET_HEADER, UiConfig, build_app

# The worker and the UI share it (`make run` makes one per run); the UI takes no delta without it.
DELTA_SECRET = "test-delta-secret"
WITH_DELTAS = {"AGENT_DELTA_SECRET": DELTA_SECRET}  # a stack's env: the worker's and the UI's
FROM_THE_WORKER = {DELTA_SECRET_HEADER: DELTA_SECRET}  # the header a delta is posted with


@dataclass
class Sse:
    event: str
    data: dict[str, Any]
    id: int | None  # None for events without an `id:` line (deltas, meta)


def sse_stream(client: httpx.Client, url: str, headers: Mapping[str, str] | None = None,
               params: Mapping[str, Any] | None = None, timeout: float = 60.0) -> Iterator[Sse]:
    """Every event of one SSE response, as it arrives; comments (keep-alives) are skipped."""
    with client.stream("GET", url, headers=headers, params=params,
                       timeout=httpx.Timeout(timeout, connect=5.0)) as response:
        assert response.status_code == 200, (response.status_code, response.read())
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line == "":
                if "data" in fields:
                    yield Sse(fields.get("event", "message"), json.loads(fields["data"]),
                              int(fields["id"]) if "id" in fields else None)
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value


def logged_events(client: httpx.Client, session: str, until: str = "final_answer",
                  headers: Mapping[str, str] | None = None, after: int = 0) -> list[Sse]:
    """The session's logged events (those with an id) from `after` through the first `until`."""
    seen: list[Sse] = []
    for item in sse_stream(client, f"/api/sessions/{session}/events", headers, {"after": after}):
        if item.id is not None:
            seen.append(item)
            if item.event == until:
                return seen
    raise AssertionError(f"the stream ended before {until}")


# --- a canned Restate ingress --------------------------------------------------------------------


@dataclass
class CannedSession:
    """What the ingress answers for one session: its event log (Events.read), its history
    (Agent.history), its status (Agent.status) and its workspace's text files (Sandbox.list_files,
    Sandbox.read_file). Events appended while a page watches reach it live, through the UI
    server's poller, as the real log's would."""

    events: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=lambda: {"state": "idle", "task_id": None, "plan": []})
    files: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, text: str, task_id: str | None = None, detail: str | None = None,
            ref: str | None = None) -> dict[str, Any]:
        """Append an event, numbered and stamped as Events.append does."""
        event = {"seq": len(self.events) + 1, "time": time.time(), "kind": kind, "text": text,
                 "task_id": task_id, "detail": detail, "ref": ref}
        self.events.append(event)
        return event


Call = tuple[str, str, bytes]  # ("Agent.message", session, body): one request that reached the ingress


def canned_ingress(sessions: Mapping[str, CannedSession], calls: list[Call] | None = None,
                   owners: dict[str, str] | None = None) -> Starlette:
    """Restate's ingress for the handlers the page uses, answering from `sessions` (404 for any
    other session, as the Agent does for one that never had a message). `SessionOwner` keeps
    its owners in `owners`; every request is appended to `calls` first."""
    owners = {} if owners is None else owners

    async def handle(request: Request) -> JSONResponse:
        key, body = request.path_params["key"], await request.body()
        handler = f"{request.path_params['service']}.{request.path_params['handler']}"
        if calls is not None:
            calls.append((handler, key, body))
        ask = json.loads(body) if body.startswith(b"{") else {}
        if handler == "SessionOwner.get":
            return JSONResponse({"owner": owners.get(key)})
        if handler == "SessionOwner.claim":
            return JSONResponse({"owner": owners.setdefault(key, ask["owner"])})
        # What makes a session: a message, steering, an import, a fork (into another one).
        makers = {"Agent.message": {"task_id": "canned"}, "Agent.steer": {"task_id": "canned"},
                  "Agent.import": {"session": key, "kind": "archive"},
                  "Agent.fork": {"session": ask.get("session") or f"{key}-fork-canned", "checkpoint": ask.get("checkpoint")}}
        if handler in makers:
            return JSONResponse(makers[handler])
        session = sessions.get(key)
        if session is None:
            return JSONResponse({"message": "unknown session"}, status_code=404)
        if handler == "Events.read":
            after, limit = ask.get("after", 0), ask.get("limit", 200)
            return JSONResponse({"events": [e for e in session.events if e["seq"] > after][:limit],
                                 "next_seq": len(session.events) + 1, "compacted": {}})
        if handler == "Sandbox.read_file":
            return JSONResponse({"path": ask["path"], "content": session.files[ask["path"]]})
        entries = [{"path": path, "kind": "file", "size": len(text.encode())} for path, text in session.files.items()]
        answers = {"Agent.status": session.status, "Agent.history": {"messages": session.history},
                   "Agent.approvals": {"approvals": []}, "Agent.checkpoints": {"checkpoints": []},
                   "Agent.interrupt": {}, "Sandbox.list_files": {"entries": entries}, "Sandbox.info": {}}
        if handler not in answers:
            return JSONResponse({"message": f"{handler} is not canned"}, status_code=404)
        return JSONResponse(answers[handler])

    return Starlette(routes=[Route("/{service}/{key}/{handler}", handle, methods=["POST"])])


@contextmanager
def ui_over_canned_ingress(sessions: Mapping[str, CannedSession], calls: list[Call] | None = None,
                           owners: dict[str, str] | None = None, **settings: Any) -> Iterator[str]:
    """The real UI server (ui/server.py), in this process, over `canned_ingress(sessions, calls,
    owners)`, with `settings` (more of UiConfig's fields: tokens, ...); yields its URL."""
    ui_port, ingress_port = free_ports(2)
    ui = build_app(UiConfig(ingress_urls=[f"http://127.0.0.1:{ingress_port}"], admin_url="http://127.0.0.1:9",
                            **settings))
    stopping: asyncio.Event | None = None
    loop = asyncio.new_event_loop()

    def config(port: int) -> Config:
        c = Config()
        c.bind = [f"127.0.0.1:{port}"]
        c.accesslog = None
        c.graceful_timeout = 0.5  # a page's open event stream must not hold the shutdown up
        return c

    async def main() -> None:
        nonlocal stopping
        stopping = asyncio.Event()
        await asyncio.gather(serve(ui, config(ui_port), shutdown_trigger=stopping.wait),  # type: ignore[arg-type]
                             serve(canned_ingress(sessions, calls, owners), config(ingress_port),  # type: ignore[arg-type]
                                   shutdown_trigger=stopping.wait))

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), name="canned ui", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{ui_port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            httpx.get(f"{url}/api/config", trust_env=False, timeout=2)  # any answer (a 401 with tokens)
            break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the UI server did not start"
        time.sleep(0.05)
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(lambda: stopping and stopping.set())
        thread.join(timeout=10)
