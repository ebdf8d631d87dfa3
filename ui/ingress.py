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
    def __init__(self, base_url: str) -> None:
        # trust_env=False: a proxy configured in the environment must never see loopback traffic.
        self._http = httpx.AsyncClient(base_url=base_url, timeout=CALL_TIMEOUT_S, trust_env=False)

    async def call(self, service: str, key: str, handler: str, body: Any = None) -> Answer:
        """Invoke `service/key/handler` with `body`: JSON bytes as they are (the handler judges
        them), anything else encoded as JSON, or None for handlers that take no input."""
        url = f"/{service}/{quote(key, safe='')}/{handler}"
        content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        timeout = READ_TIMEOUT_S if handler in READS else CALL_TIMEOUT_S
        try:
            # No content-type on an empty body: the ingress answers 400 to that.
            response = await self._http.post(url, content=content or None, timeout=timeout,
                                              headers={"content-type": "application/json"} if content else None)
        except httpx.TimeoutException:
            message = UNAVAILABLE.format(seconds=timeout)
            return Answer(503, json.dumps({"message": message}).encode())
        except httpx.HTTPError as error:
            message = f"the Restate ingress is unreachable: {error!r}"
            return Answer(502, json.dumps({"message": message}).encode())
        return Answer(response.status_code, response.content,
                      response.headers.get("content-type", "application/json"))

    async def read_events(self, session: str, after: int, limit: int = 500) -> Answer:
        """One page of the session's event log (Events.read), oldest first."""
        return await self.call("Events", session, "read", {"after": after, "limit": limit})

    async def close(self) -> None:
        await self._http.aclose()
