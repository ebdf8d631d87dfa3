"""Test-side clients: free loopback ports for a test's processes, and the Restate ingress.

The product never needs either (its ports come from configuration and its UI has its own
async ingress client, ui/ingress.py); tests and benchmarks do.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from stack.processes import HOST, http_client, response_body


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    # All sockets stay open until every port is chosen, so the kernel cannot hand one out twice.
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


class Ingress:
    """A small client for Restate's HTTP ingress: call a handler, send one-way, attach.

    Answers come back as (status, body), the body parsed as JSON when it is JSON and as text
    otherwise, because tests check error answers as much as results.
    """

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.base_url = f"http://{HOST}:{port}"
        self.timeout = timeout

    def url(self, service: str, key: str | None, handler: str) -> str:
        """The ingress URL of a handler; `key` is None for a plain service."""
        parts = [service] if key is None else [service, quote(key, safe="")]
        return "/".join([self.base_url, *parts, handler])

    def call(
        self,
        service: str,
        key: str | None,
        handler: str,
        body: Any = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Invoke a handler and wait for its result."""
        return self._post(self.url(service, key, handler), body, timeout, headers)

    def send(
        self,
        service: str,
        key: str | None,
        handler: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Invoke a handler one-way; the answer (202) carries the `invocationId`."""
        return self._post(self.url(service, key, handler) + "/send", body, None, headers)

    def attach(self, invocation_id: str, timeout: float | None = None) -> tuple[int, Any]:
        """Wait for a running or finished invocation's result."""
        response = http_client().get(
            f"{self.base_url}/restate/invocation/{invocation_id}/attach",
            timeout=timeout or self.timeout,
        )
        return response.status_code, response_body(response)

    def _post(
        self, url: str, body: Any, timeout: float | None, headers: Mapping[str, str] | None
    ) -> tuple[int, Any]:
        # No body and no content-type at all for handlers that take no input: the ingress
        # answers 400 to a content-type on an empty body.
        if isinstance(body, bytes):  # raw bytes (an archive), sent as they are
            response = http_client().post(url, content=body, headers={"content-type": "application/octet-stream",
                                                                       **(headers or {})},
                                          timeout=timeout or self.timeout)
            return response.status_code, response_body(response)
        response = http_client().post(url, json=body, headers=headers, timeout=timeout or self.timeout)
        return response.status_code, response_body(response)
