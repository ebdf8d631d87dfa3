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

With UI_TOKEN, UI_TOKENS or UI_ADMIN_TOKENS set, every route but /internal/deltas needs a token,
and each session answers its owner only (ui/access.py): a session's first user owns it, forks
included, and one that exists without an owner answers admin tokens only. /internal/deltas takes
the worker's shared secret instead, from loopback callers too (behind a same-host proxy every
browser is 127.0.0.1).
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
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

from ui.access import COOKIE, NEW, Owners, TokenGate, known
from ui.feed import Hub
from ui.guard import JSON, BrowserGuard, read_body, require_type
from ui.ingress import Answer, Ingress
from ui.refusals import HANDLERS, Passthrough, Refused
from ui.workspace import workspace_zip

STATIC = Path(__file__).resolve().parent / "static"
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
    admin_tokens: tuple[str, ...] = ()  # users too, who may also open every session
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
                   tokens=tuple(s.ui_token_list), admin_tokens=tuple(s.ui_admin_tokens),
                   allowed_hosts=(s.ui_host, *s.ui_allowed_hosts), delta_secret=s.delta_secret,
                   poll_interval_s=s.ui_poll_ms / 1000, import_max_bytes=s.import_max_bytes)

    @property
    def tokens_on(self) -> bool:
        return bool(self.tokens or self.admin_tokens)


def build_app(config: UiConfig) -> Starlette:
    ingress = Ingress(config.ingress_urls)
    hub = Hub(ingress, config.poll_interval_s, config.heartbeat_s)
    owners = Owners(ingress, config.tokens_on)

    def passthrough(answer: Answer) -> Response:
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    async def body_of(request: Request) -> bytes:
        require_type(request, {JSON}, "this request's body")
        return await read_body(request, MAX_BODY_BYTES, "the request body")

    # --- pages -------------------------------------------------------------------------------

    async def index(request: Request) -> Response:
        offered = request.query_params.get("token")
        if config.tokens_on and offered:
            # Trade the token in the URL for a cookie, and drop it from the address bar. Only a
            # token the gate takes, and only from a link typed, pasted or opened from outside the
            # browser: a page elsewhere must not sign this browser in as someone (login CSRF).
            response: Response = RedirectResponse("/", status_code=303)
            if known(config.tokens + config.admin_tokens, offered) is None:
                return response  # the gate let the request in by another token: keep that one
            if request.headers.get("sec-fetch-site", "none") not in ("none", "same-origin"):
                raise Refused(403, "a token link followed from another page does not sign in here: paste the "
                                   "link into the address bar")
            response.set_cookie(COOKIE, offered, httponly=True, samesite="strict")
            return response
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    async def ui_config(request: Request) -> Response:
        return JSONResponse({"restate_ui": f"{config.admin_url}/ui/"})

    # --- who may use a session ------------------------------------------------------------

    def owned(endpoint: Any) -> Any:
        """`endpoint`, for whoever may use the session (ui/access.py; 403 for the others). A
        session nobody has used yet becomes the caller's."""
        async def checked(request: Request) -> Response:
            await owners.check(request, request.path_params["session"])
            return await endpoint(request)
        return checked

    # --- the Agent ---------------------------------------------------------------------------

    async def sessions(request: Request) -> Response:
        """Which of these sessions exist, and their state; listing one claims nothing."""
        ids = [i for i in request.query_params.get("ids", "").split(",") if i][:100]
        found = []
        for session in ids:
            try:
                standing = await owners.standing(request, session)
            except Passthrough:
                found.append({"id": session, "state": "unknown"})
                continue
            if standing != NEW and not owners.may_use(request, standing):
                found.append({"id": session, "state": "forbidden"})
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
        """Agent.fork into a session that is the forker's before it exists: named here when the
        request names none (as the Agent would: `<session>-fork-<8 hex>`), and claimed first."""
        session, body = request.path_params["session"], await body_of(request)
        try:
            ask = json.loads(body)
        except ValueError:
            ask = None
        if not isinstance(ask, dict):  # the Agent answers the 400
            return passthrough(await ingress.call("Agent", session, "fork", body))
        target = ask.get("session") or f"{session[:40]}-fork-{secrets.token_hex(4)}"
        if isinstance(target, str):
            await owners.check(request, target)
        return passthrough(await ingress.call("Agent", session, "fork", {**ask, "session": target}))

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
        Route(f"{s}/message", owned(agent_call("message", True)), methods=["POST"]),
        Route(f"{s}/steer", owned(agent_call("steer", True)), methods=["POST"]),
        Route(f"{s}/interrupt", owned(agent_call("interrupt", False)), methods=["POST"]),
        Route(f"{s}/rewind", owned(agent_call("rewind", True)), methods=["POST"]),
        Route(f"{s}/fork", owned(fork), methods=["POST"]),
        Route(f"{s}/import", owned(import_), methods=["POST"]),
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
    if config.tokens_on:
        middleware.append(Middleware(TokenGate, tokens=config.tokens, admin_tokens=config.admin_tokens))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers=HANDLERS)
    app.state.hub = hub
    return app


def attachment(filename: str) -> dict[str, str]:
    """The header that makes a browser save an answer as `filename` (kept to characters that
    need no quoting: a session id may hold anything)."""
    return {"content-disposition": f'attachment; filename="{re.sub(r"[^A-Za-z0-9._-]", "_", filename)}"'}

