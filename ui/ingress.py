"""The UI server's only way into the product: Restate's HTTP ingress.

Every answer comes back as it is (status, body, content type), so an error from a handler (a
400 for an oversize message, a 404 for an unknown session, a 409 for an approval resolved
twice) reaches the browser with Restate's own status and message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

# Agent.message may wait for an interrupted task's cleanup (AGENT_INTERRUPT_WAIT_S, 30 s).
CALL_TIMEOUT_S = 90.0
# Reads answer at once whenever Restate can serve the session. One that takes longer means it
# cannot now: it is restarting, or a cluster lost most of its nodes and holds every request
# until a majority is back. The browser then shows why, instead of waiting without a word.
READ_TIMEOUT_S = 10.0
READS = {"status", "history", "approvals", "checkpoints", "read", "list_files", "read_file", "info"}
# An import clones or unpacks up to AGENT_IMPORT_MAX_BYTES, and an export may push, both over
# the network from the worker: minutes, not seconds, for a large repository.
LONG_CALLS = {"import", "export"}
LONG_CALL_TIMEOUT_S = 600.0
UNAVAILABLE = ("Restate did not answer within {seconds:.0f} s: it is restarting, or most nodes of "
               "the cluster are down. Nothing is lost; the session carries on once they are back. "
               "Try again shortly.")


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)


class Ingress:
    """One or more ingresses of the same Restate cluster (any node's serves any session). A
    request goes to the one that answered last; one that cannot be connected to is skipped for
    the next. A request that may have reached a node (a connection lost mid-way) is not sent
    again elsewhere, except a read; a timeout is not a reason to try another node."""

    def __init__(self, base_urls: list[str]) -> None:
        if not base_urls:
            raise ValueError("no ingress URL")
        self._urls = list(base_urls)
        self._current = 0
        # trust_env=False: a proxy configured in the environment must never see loopback traffic.
        self._http = httpx.AsyncClient(timeout=CALL_TIMEOUT_S, trust_env=False)

    async def call(self, service: str, key: str, handler: str, body: Any = None,
                   content_type: str = "application/json") -> Answer:
        """Invoke `service/key/handler` with `body`: bytes as they are (the handler judges them;
        `content_type` says what they are, e.g. an archive's), anything else encoded as JSON,
        or None for handlers that take no input. The answer's body is bytes too, so a handler
        that answers a file (Agent.archive) comes back intact."""
        path = f"/{service}/{quote(key, safe='')}/{handler}"
        content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        read = handler in READS
        timeout = READ_TIMEOUT_S if read else LONG_CALL_TIMEOUT_S if handler in LONG_CALLS else CALL_TIMEOUT_S
        for attempt in range(len(self._urls)):
            at = self._current
            try:
                # No content-type on an empty body: the ingress answers 400 to that.
                response = await self._http.post(self._urls[at] + path, content=content or None, timeout=timeout,
                                                  headers={"content-type": content_type} if content else None)
            except httpx.TimeoutException:  # slow is not gone: every node would be as slow
                message = UNAVAILABLE.format(seconds=timeout)
                return Answer(503, json.dumps({"message": message}).encode())
            except httpx.HTTPError as error:
                # Nothing was sent over a connection that was never made; a read is safe to repeat.
                if (read or isinstance(error, httpx.ConnectError)) and attempt + 1 < len(self._urls):
                    self._next(at)
                    continue
                message = f"the Restate ingress is unreachable: {error!r}"
                return Answer(502, json.dumps({"message": message}).encode())
            return Answer(response.status_code, response.content,
                          response.headers.get("content-type", "application/json"))
        raise AssertionError("unreachable: the last attempt returns")

    def _next(self, failed: int) -> None:
        """Move on from the ingress at `failed` (unless a concurrent request already did)."""
        if self._current == failed:
            self._current = (failed + 1) % len(self._urls)

    async def read_events(self, session: str, after: int, limit: int = 500) -> Answer:
        """One page of the session's event log (Events.read), oldest first."""
        return await self.call("Events", session, "read", {"after": after, "limit": limit})

    async def close(self) -> None:
        await self._http.aclose()
