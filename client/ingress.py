"""The client's only way into the product: Restate's HTTP ingress, at one URL or several (the
nodes of one cluster: any of them serves any session).

A request goes to the URL that answered last; one that cannot be connected to is skipped for
the next. Every call that changes something carries an idempotency key, so sending it again
after a connection lost mid-way (on the same node or another one) runs it once.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
# Agent.message may wait for an interrupted task's cleanup (AGENT_INTERRUPT_WAIT_S, 30 s), and an
# import or export clones or pushes a repository: generous, but not forever.
CALL_TIMEOUT_S = 300.0
CONNECT_TIMEOUT_S = 3.0
# Handlers that only read: sent again as they are, with no idempotency key.
READS = frozenset({"status", "history", "approvals", "checkpoints", "read", "diff", "archive"})


class Unreachable(Exception):
    """No ingress could be reached (nothing listens), or none answered in time."""

    def __init__(self, urls: list[str], why: str) -> None:
        self.urls = urls
        self.why = why
        where = ", ".join(urls)
        super().__init__(
            f"error: cannot reach the agent at {where} ({why}). Start it with `make run` "
            "(or `make cluster`), or point --ingress / AGENT_INGRESS at a running one.")


class Refused(Exception):
    """The server answered with an error status: its message, as it said it."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"error: {message} (HTTP {status})")


def parse_urls(value: str) -> list[str]:
    """`http://a:8080,http://b:8080` -> the URLs, without trailing slashes."""
    urls = [u.strip().rstrip("/") for u in value.split(",") if u.strip()]
    return urls or [DEFAULT_URL]


class Ingress:
    def __init__(self, urls: list[str], token: str | None = None) -> None:
        self.urls = urls
        self._current = 0
        headers = {"authorization": f"Bearer {token}"} if token else {}
        # trust_env=False: a proxy set in the environment must never see loopback traffic.
        self._http = httpx.Client(headers=headers, trust_env=False,
                                  timeout=httpx.Timeout(CALL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))

    def call(self, service: str, key: str, handler: str, body: Any = None,
             timeout: float = CALL_TIMEOUT_S) -> Any:
        """Invoke a handler and return its JSON answer. `body` None sends no body."""
        content = None if body is None else json.dumps(body).encode()
        return self.post(service, key, handler, content, "application/json", timeout).json()

    def post(self, service: str, key: str, handler: str, content: bytes | None,
             content_type: str = "application/json", timeout: float = CALL_TIMEOUT_S) -> httpx.Response:
        """POST `content` to `service/key/handler`; the answer, or Refused / Unreachable."""
        path = f"/{service}/{quote(key, safe='')}/{handler}"
        headers = {"content-type": content_type} if content else {}  # the ingress refuses one on no body
        if handler not in READS:
            headers["idempotency-key"] = str(uuid.uuid4())
        response = self._send(path, content, headers, timeout)
        if response.status_code >= 400:
            raise Refused(response.status_code, _message(response))
        return response

    def _send(self, path: str, content: bytes | None, headers: dict[str, str], timeout: float) -> httpx.Response:
        tried: list[str] = []
        why = "connection refused"
        for _ in range(len(self.urls)):
            at = self._current
            tried.append(self.urls[at])
            try:
                return self._http.post(self.urls[at] + path, content=content, headers=headers, timeout=timeout)
            except httpx.TimeoutException:
                # Slow is not gone: another node would be as slow (a cluster without a majority).
                raise Unreachable([self.urls[at]], f"no answer within {timeout:.0f} s") from None
            except httpx.TransportError as error:
                # Nothing was sent over a connection never made; a connection lost mid-way is
                # safe to repeat too: reads change nothing, and the rest carry an idempotency key.
                why = _reason(error)
                self._current = (at + 1) % len(self.urls)
        raise Unreachable(tried, why)


def _message(response: httpx.Response) -> str:
    """Restate's error body is `{"message": ..., "code": ...}`; anything else is shown as text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return response.text.strip()


def _reason(error: httpx.TransportError) -> str:
    if isinstance(error, httpx.ConnectError):
        text = str(error).lower()
        return "connection refused" if "refused" in text else f"cannot connect: {error}"
    return f"connection lost: {error.__class__.__name__}"
