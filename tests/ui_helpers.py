"""Reading the web UI's server-sent events from a test: a small, strict SSE parser over httpx."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Sse:
    event: str
    data: dict[str, Any]
    id: int | None  # None for events without an `id:` line (deltas, meta)


def sse_stream(client: httpx.Client, url: str, headers: Mapping[str, str] | None = None,
               params: Mapping[str, Any] | None = None, timeout: float = 60.0) -> Iterator[Sse]:
    """Every event of one SSE response, as it arrives; comments (keep-alives) are skipped."""
    with client.stream("GET", url, headers=headers, params=params,
                       timeout=httpx.Timeout(timeout, connect=5.0)) as response:
        assert response.status_code == 200, (response.status_code, response.read())
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line == "":
                if "data" in fields:
                    yield Sse(fields.get("event", "message"), json.loads(fields["data"]),
                              int(fields["id"]) if "id" in fields else None)
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value


def logged_events(client: httpx.Client, session: str, until: str = "final_answer",
                  headers: Mapping[str, str] | None = None, after: int = 0) -> list[Sse]:
    """The session's logged events (those with an id) from `after` through the first `until`."""
    seen: list[Sse] = []
    for item in sse_stream(client, f"/api/sessions/{session}/events", headers, {"after": after}):
        if item.id is not None:
            seen.append(item)
            if item.event == until:
                return seen
    raise AssertionError(f"the stream ended before {until}")
