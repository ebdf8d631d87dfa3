"""The UI server's answers that are not a route's own: its refusals, and the ingress's errors
passed on as they are. A route raises one; the app's exception handlers turn it into the answer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from ui.ingress import Answer


class Refused(Exception):
    """A request the UI server itself turns down, with the status and message to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Passthrough(Exception):
    """An answer from the ingress to give the browser as it is (e.g. 400 for a bad session id)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def refusal(scope: Scope, status: int, message: str) -> Response:
    """The answer to a refused request. Over HTTP/1.1 it closes the connection: the request's
    body may be unread (that is often the point), and a server that closes without saying so
    makes a client that reuses the connection fail its next request."""
    close = {"connection": "close"} if str(scope.get("http_version", "1.1")).startswith("1") else None
    return JSONResponse({"message": message}, status_code=status, headers=close)


async def refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return refusal(request.scope, exc.status, exc.message)


async def passthrough(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Passthrough)
    return Response(exc.answer.body, status_code=exc.answer.status, media_type=exc.answer.content_type)


HANDLERS = {Refused: refused, Passthrough: passthrough}
