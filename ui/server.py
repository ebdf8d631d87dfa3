"""The web UI's server: static files, a thin JSON API over Restate's ingress, and the SSE stream.

    python -m ui            # http://127.0.0.1:$UI_PORT (3000)

It holds no state of its own that matters: every answer comes from Restate through the
ingress (ui/ingress.py), and the live stream is the session's durable event log (ui/feed.py),
so the server can be restarted at any moment and a browser just reconnects where it was.

Routes (every `{s}` is a session id):

    GET  /                                  the page (ui/static/)
    GET  /api/config                        where the Restate UI is
    GET  /api/sessions?ids=a,b              which of these sessions exist, and their state
    POST /api/sessions/{s}/message|steer    {"text"}            -> Agent.message / Agent.steer
    POST /api/sessions/{s}/interrupt                            -> Agent.interrupt
    POST /api/sessions/{s}/rewind|fork      {"checkpoint", ...} -> Agent.rewind / Agent.fork
    GET  /api/sessions/{s}/status|history|approvals|checkpoints -> the Agent's shared handlers
    POST /api/sessions/{s}/approvals/{id}   {"decision", "reason"} -> Agent.resolve_approval
    GET  /api/sessions/{s}/files?path=      -> Sandbox.list_files
    GET  /api/sessions/{s}/file?path=       -> Sandbox.read_file
    GET  /api/sessions/{s}/sandbox          -> Sandbox.info (e.g. "waiting for a sandbox slot")
    GET  /api/sessions/{s}/download         the workspace as a .zip (ui/workspace.py)
    GET  /api/sessions/{s}/events           SSE: Last-Event-ID or ?after=, then live (ui/feed.py)
    POST /internal/deltas                   live model text from the worker (loopback only)

With UI_TOKEN set, every route but /internal/deltas needs the token: `Authorization: Bearer`,
the cookie that visiting `/?token=...` sets, or `?token=` (for EventSource).
"""

from __future__ import annotations

import hmac
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ui.feed import Hub
from ui.ingress import Answer, Ingress
from ui.workspace import workspace_zip

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "ui_token"
MAX_BODY_BYTES = 1_000_000
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass
class UiConfig:
    ingress_url: str
    admin_url: str
    token: str = ""
    poll_interval_s: float = 0.1
    heartbeat_s: float = 10.0

    @classmethod
    def from_env(cls) -> UiConfig:
        from app.config import settings  # the ports are the product's own settings

        s = settings()
        return cls(ingress_url=s.restate_ingress, admin_url=f"http://127.0.0.1:{s.admin_port}",
                   token=s.ui_token.strip(), poll_interval_s=s.ui_poll_ms / 1000)


def build_app(config: UiConfig) -> Starlette:
    ingress = Ingress(config.ingress_url)
    hub = Hub(ingress, config.poll_interval_s, config.heartbeat_s)

    def passthrough(answer: Answer) -> Response:
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    async def body_of(request: Request) -> bytes:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise _Refused(413, f"request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
        return body

    # --- pages -------------------------------------------------------------------------------

    async def index(request: Request) -> Response:
        if config.token and request.query_params.get("token"):
            # Trade the token in the URL for a cookie, and drop it from the address bar.
            response: Response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, request.query_params["token"], httponly=True, samesite="strict")
            return response
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    async def ui_config(request: Request) -> Response:
        return JSONResponse({"restate_ui": f"{config.admin_url}/ui/"})

    # --- the Agent ---------------------------------------------------------------------------

    async def sessions(request: Request) -> Response:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i][:100]
        found = []
        for session in ids:
            answer = await ingress.call("Agent", session, "status")
            state = answer.json()["state"] if answer.ok else "new" if answer.status == 404 else "unknown"
            found.append({"id": session, "state": state})
        return JSONResponse({"sessions": found})

    def agent_call(handler: str, with_body: bool) -> Any:
        async def endpoint(request: Request) -> Response:
            body = await body_of(request) if with_body else None
            return passthrough(await ingress.call("Agent", request.path_params["session"], handler, body))
        return endpoint

    async def resolve(request: Request) -> Response:
        try:
            choice = json.loads(await body_of(request) or b"{}")
        except ValueError as error:
            raise _Refused(400, f"malformed JSON: {error}") from None
        if not isinstance(choice, dict):
            raise _Refused(400, "the body must be a JSON object {\"decision\", \"reason\"}")
        body = {**choice, "approval_id": request.path_params["approval_id"]}
        return passthrough(await ingress.call("Agent", request.path_params["session"], "resolve_approval", body))

    # --- the workspace -----------------------------------------------------------------------

    def sandbox_call(handler: str) -> Any:
        async def endpoint(request: Request) -> Response:
            path = request.query_params.get("path", ".")
            return passthrough(await ingress.call("Sandbox", request.path_params["session"], handler, {"path": path}))
        return endpoint

    async def sandbox_info(request: Request) -> Response:
        return passthrough(await ingress.call("Sandbox", request.path_params["session"], "info"))

    async def download(request: Request) -> Response:
        session = request.path_params["session"]
        data, error = await workspace_zip(ingress, session)
        if error is not None:
            return passthrough(error)
        return Response(data, media_type="application/zip",
                        headers={"content-disposition": f'attachment; filename="{session}-workspace.zip"'})

    # --- live --------------------------------------------------------------------------------

    async def events(request: Request) -> Response:
        raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
        try:
            after = int(raw)
        except ValueError:
            raise _Refused(400, f"Last-Event-ID / after must be an event seq, not {raw!r}") from None
        if after < 0:
            raise _Refused(400, "Last-Event-ID / after must not be negative")
        return StreamingResponse(hub.stream(request.path_params["session"], after),
                                 media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def deltas(request: Request) -> Response:
        if request.client is None or request.client.host not in LOOPBACK:
            raise _Refused(403, "deltas are accepted from this machine only")
        try:
            delta = json.loads(await body_of(request))
            if not all(isinstance(delta.get(k), str) for k in ("session", "ref", "attempt", "text")):
                raise ValueError("session, ref, attempt and text must be strings")
        except (ValueError, AttributeError) as error:
            raise _Refused(400, f"bad delta: {error}") from None
        hub.delta(delta)
        return Response(status_code=204)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        for feed in list(hub.feeds.values()):
            if feed.task is not None:
                feed.task.cancel()
        await ingress.close()

    s = "/api/sessions/{session}"
    routes = [
        Route("/", index),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/api/config", ui_config),
        Route("/api/sessions", sessions),
        Route(f"{s}/message", agent_call("message", True), methods=["POST"]),
        Route(f"{s}/steer", agent_call("steer", True), methods=["POST"]),
        Route(f"{s}/interrupt", agent_call("interrupt", False), methods=["POST"]),
        Route(f"{s}/rewind", agent_call("rewind", True), methods=["POST"]),
        Route(f"{s}/fork", agent_call("fork", True), methods=["POST"]),
        Route(f"{s}/status", agent_call("status", False)),
        Route(f"{s}/history", agent_call("history", False)),
        Route(f"{s}/approvals", agent_call("approvals", False)),
        Route(f"{s}/checkpoints", agent_call("checkpoints", False)),
        Route(f"{s}/approvals/{{approval_id:path}}", resolve, methods=["POST"]),
        Route(f"{s}/files", sandbox_call("list_files")),
        Route(f"{s}/file", sandbox_call("read_file")),
        Route(f"{s}/sandbox", sandbox_info),
        Route(f"{s}/download", download),
        Route(f"{s}/events", events),
        Route("/internal/deltas", deltas, methods=["POST"]),
    ]
    gate = [Middleware(TokenGate, token=config.token)] if config.token else []
    app = Starlette(routes=routes, middleware=gate, lifespan=lifespan, exception_handlers={_Refused: _refused})
    app.state.hub = hub
    return app


class _Refused(Exception):
    """A request the UI server itself turns down, with the status and message to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _Refused)
    return JSONResponse({"message": exc.message}, status_code=exc.status)


class TokenGate:
    """With UI_TOKEN set: no token, no answer (401). /internal/deltas is for the worker, which
    has no token; that route checks for a loopback client instead."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/internal/deltas" or self._allowed(Request(scope)):
            await self.app(scope, receive, send)
            return
        response = JSONResponse({"message": "this UI needs its access token: open /?token=<UI_TOKEN>, "
                                            "or send Authorization: Bearer <UI_TOKEN>"}, status_code=401)
        await response(scope, receive, send)

    def _allowed(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        offered = [auth[7:] if auth.lower().startswith("bearer ") else "",
                   request.cookies.get(COOKIE, ""), request.query_params.get("token", "")]
        return any(o and hmac.compare_digest(o.encode(), self.token.encode()) for o in offered)
