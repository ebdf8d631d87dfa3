"""What a request must look like before a route serves it: a UI on localhost, held against the
web pages its user visits.

A page on any site can make the browser send requests to http://127.0.0.1:3000 (a form post
needs nobody's leave), and with DNS rebinding (evil.example resolves to the attacker's server,
then to 127.0.0.1) it can read the answers too, under its own name. Without a token, the default
on loopback, nothing else stands in its way, so this server does what Jupyter's does:

- **Host.** The Host header must be a name of this server: `localhost`, an IP address (a
  rebinding needs a name: a page reaches an address only under that address's own origin),
  UI_HOST, or one of UI_ALLOWED_HOSTS (`*`: any). Else 403, on every route.
- **Origin.** A request that may change something (any method but GET, HEAD and OPTIONS) must
  come from this server's own page: its Origin is the Host it was sent to (scheme aside, for a
  TLS proxy in front). Browsers send Origin with every such request, same-origin fetches
  included, so a request without one is taken for a program's (curl, a script) only when it
  carries no cookie either (a cookie is what a browser adds by itself) and no `Sec-Fetch-Site`
  but this server's own. Else 403.
- **Content type.** The three types an HTML form can send (`text/plain`,
  `application/x-www-form-urlencoded`, `multipart/form-data`), which are the only bodies a page
  elsewhere can send without a CORS preflight (which this server never grants), get 415 on every
  route. Each route then takes only its own types (`require_type`: JSON, or an archive for an
  import) and reads its body within a limit as it arrives (`read_body`).

`/internal/deltas` is not for browsers but for the worker, which may reach the UI by a name of
its own (a container's): its shared secret is its guard (ui/server.py), so Host and Origin do
not apply there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ui.refusals import Refused, refusal

JSON = "application/json"
FORM_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WORKER_ONLY = "/internal/deltas"


class BrowserGuard:
    """Host on every request; Origin and no form body on every one that may change something."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.hosts = frozenset(h.strip().lower() for h in hosts if h.strip()) | {"localhost"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == WORKER_ONLY:
            await self.app(scope, receive, send)
            return
        problem = self.problem(Headers(scope=scope), scope["method"])
        if problem is None:
            await self.app(scope, receive, send)
            return
        await refusal(scope, *problem)(scope, receive, send)

    def problem(self, headers: Headers, method: str) -> tuple[int, str] | None:
        """(status, message) for a request this server must not serve, or None."""
        host = headers.get("host", "")
        if not self.names_us(host):
            return 403, (f"this UI does not answer to the name {host!r} (a page elsewhere may have made it point "
                         "here: DNS rebinding). If it is one of this UI's own names, add it to UI_ALLOWED_HOSTS.")
        if method in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is None:
            if "cookie" in headers or headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                return 403, "a browser's request that changes something must say its Origin"
        elif origin == "null" or urlsplit(origin).netloc.lower() != host.lower():
            return 403, f"a page at {origin} may not change anything here: only this UI's own page ({host}) may"
        if media_type(headers.get("content-type")) in FORM_TYPES:
            return 415, "this UI takes no form bodies (a page elsewhere can post those): send application/json"
        return None

    def names_us(self, host: str) -> bool:
        try:
            name = urlsplit(f"//{host}").hostname
        except ValueError:  # e.g. an unclosed "[::1"
            return False
        if not name:
            return False
        if "*" in self.hosts or name in self.hosts:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True


def media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def require_type(request: Request, allowed: Collection[str], what: str) -> str:
    """The body's media type when it is one of `allowed`; else 415."""
    kind = media_type(request.headers.get("content-type"))
    if kind not in allowed:
        said = f"content-type {kind}" if kind else "no content-type"
        raise Refused(415, f"{what} must be sent as {' or '.join(sorted(allowed))}, not with {said}")
    return kind


async def read_body(request: Request, limit: int, what: str, setting: str = "") -> bytes:
    """The body, refused (413) as soon as it passes `limit` bytes: a declared length at once,
    an undeclared one while it arrives, never after holding all of it."""
    named = f" ({setting})" if setting else ""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"{what} is {declared} bytes; the limit is {limit}{named}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"{what} is over {limit} bytes, the limit{named}")
        chunks.append(chunk)
    return b"".join(chunks)
