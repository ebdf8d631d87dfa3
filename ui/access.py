"""Who may use the web UI, and which of its sessions.

Without tokens (UI_TOKEN, UI_TOKENS and UI_ADMIN_TOKENS unset) the UI has one user, on loopback
only (`python -m ui` refuses anything else), and every session is theirs.

With tokens, every route but /internal/deltas needs one (`TokenGate`, 401 otherwise):
`Authorization: Bearer <token>`, the cookie a visit to `/?token=<token>` sets, or `?token=`
(EventSource cannot send headers). Each token is a user, known to Restate only as
`owner_id(token)`, a hash, kept by `SessionOwner` (app/owners.py) so that it outlives this
process. A session answers (`Owners.check`, before anything reaches the Agent):

- one that has an owner: its owner, and the admin tokens (UI_ADMIN_TOKENS); 403 for the others.
- one that does not exist yet (Agent.status says 404): the first token that uses it, for
  anything, a read included, which becomes its owner (`SessionOwner.claim` is exclusive: of two
  first uses, one wins). So an event stream opened on an unused id never shows someone else's
  session later. A fork's new session is named and claimed the same way, before the fork.
- one that exists and has no owner (made through the ingress, or before the UI had tokens): the
  admin tokens only, and using it does not make it theirs. No other token takes it over; before,
  such a session answered every token.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ui.guard import WORKER_ONLY
from ui.ingress import Ingress
from ui.refusals import Passthrough, Refused

COOKIE = "ui_token"
# A session's standing for the user asking.
MINE, THEIRS, NOBODYS, NEW = "mine", "theirs", "nobody's", "new"


def owner_id(token: str) -> str:
    """The owner id a token stands for: a hash, so Restate's state never holds a token."""
    return hashlib.sha256(b"durable-coding-agent ui owner\0" + token.encode()).hexdigest()[:32]


def known(tokens: Iterable[str], candidate: str) -> str | None:
    """`candidate` if it is one of `tokens` (compared in constant time), else None."""
    for token in tokens:
        if candidate and hmac.compare_digest(candidate.encode(), token.encode()):
            return token
    return None


class TokenGate:
    """No known token, no answer (401). A known one makes its owner id the request's
    `state.owner`, and `state.admin` says whether it is an admin token."""

    def __init__(self, app: ASGIApp, tokens: tuple[str, ...], admin_tokens: tuple[str, ...] = ()) -> None:
        self.app = app
        self.tokens = tuple(dict.fromkeys(tokens + admin_tokens))
        self.admin_tokens = admin_tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == WORKER_ONLY:  # the worker has a secret instead
            await self.app(scope, receive, send)
            return
        token = self._token(Request(scope))
        if token is not None:
            state = scope.setdefault("state", {})
            state["owner"] = owner_id(token)
            state["admin"] = known(self.admin_tokens, token) is not None
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
            token = known(self.tokens, candidate)
            if token is not None:
                return token
        return None


class Owners:
    """The rule above, over `SessionOwner` and `Agent.status` through the ingress."""

    def __init__(self, ingress: Ingress, tokens_on: bool) -> None:
        self.ingress = ingress
        self.on = tokens_on

    async def check(self, request: Request, session: str) -> None:
        """Return if the request's user may use `session`, which becomes theirs if it is new;
        raise Refused(403) if not."""
        standing = await self.standing(request, session)
        if standing == NEW:
            owner = await self._owner(session, "claim", {"owner": request.state.owner})
            standing = MINE if owner == request.state.owner else THEIRS
        if self.may_use(request, standing):
            return
        if standing == NOBODYS:
            raise Refused(403, f"session {session!r} has no owner (it was made through the ingress, or before "
                               "this UI had tokens): only an admin token (UI_ADMIN_TOKENS) may open it")
        raise Refused(403, f"session {session!r} belongs to another user of this UI")

    async def standing(self, request: Request, session: str) -> str:
        """MINE, THEIRS, NOBODYS or NEW for the request's user (MINE for all without tokens)."""
        if not self.on:
            return MINE
        owner = await self._owner(session, "get")
        if owner is None:
            return NOBODYS if await self._exists(session) else NEW
        return MINE if owner == request.state.owner else THEIRS

    def may_use(self, request: Request, standing: str) -> bool:
        """Whether the user may use a session of this standing (an admin: any it need not claim)."""
        return standing == MINE or (standing in (THEIRS, NOBODYS) and bool(request.state.admin))

    async def _owner(self, session: str, handler: str, body: dict[str, str] | None = None) -> str | None:
        answer = await self.ingress.call("SessionOwner", session, handler, body)
        if not answer.ok:  # an invalid session id (400), Restate unreachable (502): say so
            raise Passthrough(answer)
        owner: str | None = answer.json().get("owner")
        return owner

    async def _exists(self, session: str) -> bool:
        answer = await self.ingress.call("Agent", session, "status")
        if answer.status == 404:
            return False
        if not answer.ok:
            raise Passthrough(answer)
        return True
