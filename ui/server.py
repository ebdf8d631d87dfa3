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
    POST /api/sessions/{s}/import           an archive's bytes, or {"git", "ref"} -> Agent.import
                                            (its own cap, AGENT_IMPORT_MAX_BYTES: 413 past it)
    POST /api/sessions/{s}/export           {"branch", "message", "push"} -> Agent.export
    GET  /api/sessions/{s}/status|history|approvals|checkpoints -> the Agent's shared handlers
    POST /api/sessions/{s}/approvals/{id}   {"decision", "reason"} -> Agent.resolve_approval
    GET  /api/sessions/{s}/files?path=      -> Sandbox.list_files
    GET  /api/sessions/{s}/file?path=       -> Sandbox.read_file
    GET  /api/sessions/{s}/sandbox          -> Sandbox.info (e.g. "waiting for a sandbox slot")
    GET  /api/sessions/{s}/diff?task=&against=   -> Agent.diff (JSON: files, +/- counts, patch)
    GET  /api/sessions/{s}/patch?task=&against=  the same diff as a `git apply`-able .patch download
    GET  /api/sessions/{s}/archive          the live workspace as a .tar.gz (Agent.archive)
    GET  /api/sessions/{s}/download         the workspace's text files as a .zip (ui/workspace.py)
    GET  /api/sessions/{s}/events           SSE: Last-Event-ID or ?after=, then live (ui/feed.py)
    POST /internal/deltas                   live model text from the worker (its AGENT_DELTA_SECRET)

What a request must look like (ui/guard.py): a Host that names this server, and for any request
that changes something this server's own page as its Origin and a JSON body (an archive for an
import), never a form's. Bodies are read within their limit as they arrive.

/internal/deltas takes the worker's shared secret, from loopback callers too (behind a same-host
proxy every browser is 127.0.0.1).

With UI_TOKEN or UI_TOKENS set, every route but /internal/deltas needs a token: `Authorization:
Bearer`, the cookie that visiting `/?token=...` sets, or `?token=` (for EventSource). Each token
is a user, and each session has an owner: the user whose token sent its first message (or
steering, or fork into it) through the UI, kept by the `SessionOwner` object (app/owners.py) so
that it outlives this process. An import into a session nobody owns claims it too. Every
`/api/sessions/{s}/...` route answers 403 to anyone else, before anything reaches the Agent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
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
from ui.guard import JSON, BrowserGuard, read_body, require_type
from ui.ingress import Answer, Ingress
from ui.refusals import HANDLERS, Passthrough, Refused
from ui.workspace import workspace_zip

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "ui_token"
MAX_BODY_BYTES = 1_000_000  # every JSON body; an import's archive has its own cap (UiConfig)
MAX_DELTA_BYTES = 256_000  # a batch of about 100 ms of model text is a few hundred bytes
DELTA_SECRET_HEADER = "x-delta-secret"  # app.llm.DELTA_SECRET_HEADER: what the worker sends
# What an import's body may be: an archive (the Agent tells the kinds apart by their content),
# or JSON naming a git source.
IMPORT_TYPES = frozenset({JSON, "application/octet-stream", "application/gzip", "application/x-gzip",
                          "application/x-tar", "application/x-gtar", "application/x-compressed-tar",
                          "application/zip", "application/x-zip-compressed", "application/x-bzip2",
                          "application/x-xz"})


@dataclass
class UiConfig:
    ingress_urls: list[str]
    admin_url: str
    tokens: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # Host names besides loopback and addresses; "*": any
    delta_secret: str = ""  # what the worker sends with each delta; "": take none
    poll_interval_s: float = 0.1
    heartbeat_s: float = 10.0
    import_max_bytes: int = 100_000_000  # the Agent's own cap (AGENT_IMPORT_MAX_BYTES)

    @classmethod
    def from_env(cls) -> UiConfig:
        from app.config import settings  # the ports are the product's own settings

        s = settings()
        return cls(ingress_urls=s.restate_ingresses, admin_url=f"http://127.0.0.1:{s.admin_port}",
                   tokens=tuple(s.ui_token_list), allowed_hosts=(s.ui_host, *s.ui_allowed_hosts),
                   delta_secret=s.delta_secret, poll_interval_s=s.ui_poll_ms / 1000, import_max_bytes=s.import_max_bytes)


def build_app(config: UiConfig) -> Starlette:
    ingress = Ingress(config.ingress_urls)
    hub = Hub(ingress, config.poll_interval_s, config.heartbeat_s)

    def passthrough(answer: Answer) -> Response:
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    async def body_of(request: Request) -> bytes:
        require_type(request, {JSON}, "this request's body")
        return await read_body(request, MAX_BODY_BYTES, "the request body")

    # --- pages -------------------------------------------------------------------------------

    async def index(request: Request) -> Response:
        if config.tokens and request.query_params.get("token"):
            # Trade the token in the URL for a cookie, and drop it from the address bar.
            response: Response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, request.query_params["token"], httponly=True, samesite="strict")
            return response
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    async def ui_config(request: Request) -> Response:
        return JSONResponse({"restate_ui": f"{config.admin_url}/ui/"})

    # --- who owns a session ------------------------------------------------------------------

    async def owner_of(request: Request, session: str, claim: bool = False) -> str | None:
        """The session's owner; with `claim`, the caller becomes it unless there is one.
        None when tokens are off (one user) or nobody has claimed the session yet."""
        if not config.tokens:
            return None
        if claim:
            answer = await ingress.call("SessionOwner", session, "claim", {"owner": request.state.owner})
        else:
            answer = await ingress.call("SessionOwner", session, "get")
        if not answer.ok:  # an invalid session id (400), Restate unreachable (502): say so
            raise Passthrough(answer)
        return answer.json().get("owner")

    async def check_owner(request: Request, session: str, claim: bool = False) -> None:
        owner = await owner_of(request, session, claim)
        if owner is not None and owner != request.state.owner:
            raise Refused(403, f"session {session!r} belongs to another user of this UI")

    def owned(endpoint: Any, claim: bool = False) -> Any:
        """`endpoint`, for the session's owner only (403 for other tokens)."""
        async def checked(request: Request) -> Response:
            await check_owner(request, request.path_params["session"], claim)
            return await endpoint(request)
        return checked

    # --- the Agent ---------------------------------------------------------------------------

    async def sessions(request: Request) -> Response:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i][:100]
        found = []
        for session in ids:
            try:
                await check_owner(request, session)
            except Refused:
                found.append({"id": session, "state": "forbidden"})
                continue
            except Passthrough:
                found.append({"id": session, "state": "unknown"})
                continue
            answer = await ingress.call("Agent", session, "status")
            state = answer.json()["state"] if answer.ok else "new" if answer.status == 404 else "unknown"
            found.append({"id": session, "state": state})
        return JSONResponse({"sessions": found})

    def agent_call(handler: str, with_body: bool) -> Any:
        async def endpoint(request: Request) -> Response:
            body = await body_of(request) if with_body else None
            return passthrough(await ingress.call("Agent", request.path_params["session"], handler, body))
        return endpoint

    async def fork(request: Request) -> Response:
        """Agent.fork, and the new session belongs to whoever forked it."""
        body = await body_of(request)
        try:
            named = json.loads(body or b"{}").get("session")
        except (ValueError, AttributeError):
            named = None  # the Agent answers the 400
        if isinstance(named, str) and named:
            await check_owner(request, named)  # claimed below, once the fork exists
        answer = await ingress.call("Agent", request.path_params["session"], "fork", body)
        if answer.ok and config.tokens:
            await check_owner(request, answer.json()["session"], claim=True)
        return passthrough(answer)

    async def resolve(request: Request) -> Response:
        try:
            choice = json.loads(await body_of(request) or b"{}")
        except ValueError as error:
            raise Refused(400, f"malformed JSON: {error}") from None
        if not isinstance(choice, dict):
            raise Refused(400, "the body must be a JSON object {\"decision\", \"reason\"}")
        body = {**choice, "approval_id": request.path_params["approval_id"]}
        return passthrough(await ingress.call("Agent", request.path_params["session"], "resolve_approval", body))

    # --- bringing code in, and the change out -------------------------------------------------

    async def import_(request: Request) -> Response:
        """Agent.import, with the body as the browser (or curl) sent it: an archive's bytes, or
        JSON naming a git source. The Agent tells them apart by their content. Past the import
        cap it is refused (413) as it arrives: the Agent would refuse it too, after a pointless
        journal entry of that size."""
        kind = require_type(request, IMPORT_TYPES, "an import")
        body = await read_body(request, config.import_max_bytes, "the archive", "AGENT_IMPORT_MAX_BYTES")
        return passthrough(await ingress.call("Agent", request.path_params["session"], "import", body, kind))

    def diff_ask(request: Request) -> dict[str, Any]:
        return {k: request.query_params[k] for k in ("task", "against") if request.query_params.get(k)}

    async def diff(request: Request) -> Response:
        return passthrough(await ingress.call("Agent", request.path_params["session"], "diff", diff_ask(request)))

    async def patch(request: Request) -> Response:
        """The diff as a file for `git apply`: binary files in git's binary format."""
        session, ask = request.path_params["session"], diff_ask(request)
        answer = await ingress.call("Agent", session, "diff", {**ask, "binary": True})
        if not answer.ok:
            return passthrough(answer)
        found = answer.json()
        if found.get("truncated"):  # a cut patch would not apply: better no file than a broken one
            raise Refused(409, "the diff is too large for a .patch; download the workspace's .tar.gz instead")
        name = f"{session}-{ask['task']}.patch" if "task" in ask else f"{session}.patch"
        return Response(found["patch"], media_type="text/x-diff", headers=attachment(name))

    async def archive(request: Request) -> Response:
        session = request.path_params["session"]
        answer = await ingress.call("Agent", session, "archive")
        if not answer.ok:
            return passthrough(answer)
        return Response(answer.body, media_type="application/gzip", headers=attachment(f"{session}.tar.gz"))

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
        stream, error = await workspace_zip(ingress, session)
        if error is not None:
            return passthrough(error)
        return StreamingResponse(stream, media_type="application/zip", headers=attachment(f"{session}-workspace.zip"))

    # --- live --------------------------------------------------------------------------------

    async def events(request: Request) -> Response:
        raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
        try:
            after = int(raw)
        except ValueError:
            raise Refused(400, f"Last-Event-ID / after must be an event seq, not {raw!r}") from None
        if after < 0:
            raise Refused(400, "Last-Event-ID / after must not be negative")
        return StreamingResponse(hub.stream(request.path_params["session"], after),
                                 media_type="text/event-stream",
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def deltas(request: Request) -> Response:
        """Live text from the worker, who alone has the secret; checked before a byte is read."""
        offered = request.headers.get(DELTA_SECRET_HEADER, "")
        if not config.delta_secret or not hmac.compare_digest(offered.encode(), config.delta_secret.encode()):
            off = "" if config.delta_secret else " (none is set here: live text is off)"
            raise Refused(403, f"deltas come from the worker only, with AGENT_DELTA_SECRET{off}")
        require_type(request, {JSON}, "a delta")
        try:
            delta = json.loads(await read_body(request, MAX_DELTA_BYTES, "a delta"))
            if not all(isinstance(delta.get(k), str) for k in ("session", "ref", "attempt", "text")):
                raise ValueError("session, ref, attempt and text must be strings")
        except (ValueError, AttributeError) as error:
            raise Refused(400, f"bad delta: {error}") from None
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
        # A message or steering to a session nobody owns yet (a new one) makes it the caller's.
        Route(f"{s}/message", owned(agent_call("message", True), claim=True), methods=["POST"]),
        Route(f"{s}/steer", owned(agent_call("steer", True), claim=True), methods=["POST"]),
        Route(f"{s}/interrupt", owned(agent_call("interrupt", False)), methods=["POST"]),
        Route(f"{s}/rewind", owned(agent_call("rewind", True)), methods=["POST"]),
        Route(f"{s}/fork", owned(fork), methods=["POST"]),
        # An import may be a new session's first request: like a message, it claims it.
        Route(f"{s}/import", owned(import_, claim=True), methods=["POST"]),
        Route(f"{s}/export", owned(agent_call("export", True)), methods=["POST"]),
        Route(f"{s}/diff", owned(diff)),
        Route(f"{s}/patch", owned(patch)),
        Route(f"{s}/archive", owned(archive)),
        Route(f"{s}/status", owned(agent_call("status", False))),
        Route(f"{s}/history", owned(agent_call("history", False))),
        Route(f"{s}/approvals", owned(agent_call("approvals", False))),
        Route(f"{s}/checkpoints", owned(agent_call("checkpoints", False))),
        Route(f"{s}/approvals/{{approval_id:path}}", owned(resolve), methods=["POST"]),
        Route(f"{s}/files", owned(sandbox_call("list_files"))),
        Route(f"{s}/file", owned(sandbox_call("read_file"))),
        Route(f"{s}/sandbox", owned(sandbox_info)),
        Route(f"{s}/download", owned(download)),
        Route(f"{s}/events", owned(events)),
        Route("/internal/deltas", deltas, methods=["POST"]),
    ]
    # The guard first: a request under a foreign Host, or a cross-site write, gets no further.
    middleware = [Middleware(BrowserGuard, hosts=config.allowed_hosts)]
    if config.tokens:
        middleware.append(Middleware(TokenGate, tokens=config.tokens))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers=HANDLERS)
    app.state.hub = hub
    return app


def attachment(filename: str) -> dict[str, str]:
    """The header that makes a browser save an answer as `filename` (kept to characters that
    need no quoting: a session id may hold anything)."""
    return {"content-disposition": f'attachment; filename="{re.sub(r"[^A-Za-z0-9._-]", "_", filename)}"'}


def owner_id(token: str) -> str:
    """The owner id a token stands for: a hash, so Restate's state never holds a token."""
    return hashlib.sha256(b"durable-coding-agent ui owner\0" + token.encode()).hexdigest()[:32]


class TokenGate:
    """With tokens set: no token, no answer (401); a known token makes its owner id the
    request's `state.owner`. /internal/deltas is for the worker, which has no token; that
    route checks the worker's secret instead."""

    def __init__(self, app: ASGIApp, tokens: tuple[str, ...]) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/internal/deltas":
            await self.app(scope, receive, send)
            return
        token = self._token(Request(scope))
        if token is not None:
            scope.setdefault("state", {})["owner"] = owner_id(token)
            await self.app(scope, receive, send)
            return
        response = JSONResponse({"message": "this UI needs an access token: open /?token=<your token>, "
                                            "or send Authorization: Bearer <your token>"}, status_code=401)
        await response(scope, receive, send)

    def _token(self, request: Request) -> str | None:
        """The first offered token that is one of ours (header, then cookie, then query)."""
        auth = request.headers.get("authorization", "")
        offered = [auth[7:] if auth.lower().startswith("bearer ") else "",
                   request.cookies.get(COOKIE, ""), request.query_params.get("token", "")]
        for candidate in offered:
            for token in self.tokens:
                if candidate and hmac.compare_digest(candidate.encode(), token.encode()):
                    return token
        return None
