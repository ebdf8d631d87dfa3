"""Small helpers for tests that talk to the Agent through the ingress."""

from __future__ import annotations

from typing import Any

from tests.harness import Stack


def send_message(stack: Stack, session: str, text: str) -> str:
    status, body = stack.call("Agent", session, "message", {"text": text})
    assert status == 200, (status, body)
    return body["task_id"]


def status(stack: Stack, session: str) -> dict[str, Any]:
    code, body = stack.call("Agent", session, "status")
    assert code == 200, (code, body)
    return body


def history(stack: Stack, session: str) -> list[dict[str, Any]]:
    code, body = stack.call("Agent", session, "history")
    assert code == 200, (code, body)
    return body["messages"]


def wait_idle(stack: Stack, session: str, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until the session has no running task; return its status."""
    return stack.wait_until(lambda: (s := status(stack, session))["state"] == "idle" and s,
                            timeout=timeout, message=f"session {session} to become idle")


def approvals(stack: Stack, session: str) -> list[dict[str, Any]]:
    """The session's pending approvals."""
    code, body = stack.call("Agent", session, "approvals")
    assert code == 200, (code, body)
    return body["approvals"]


def sandbox_info(stack: Stack, session: str) -> dict[str, Any]:
    """The session's Sandbox lifecycle state and counters."""
    code, body = stack.call("Sandbox", session, "info")
    assert code == 200, (code, body)
    return body


def read_file(stack: Stack, session: str, path: str) -> str:
    code, body = stack.call("Sandbox", session, "read_file", {"path": path})
    assert code == 200, (code, body)
    return body["content"]


def try_read_file(stack: Stack, session: str, path: str) -> str | None:
    code, body = stack.call("Sandbox", session, "read_file", {"path": path})
    return body["content"] if code == 200 else None


def tool_results(stack: Stack) -> list[str]:
    """Every tool result the model was shown, in order, without repeats of the same request."""
    seen: list[str] = []
    for entry in stack.llm_requests():
        for message in entry["request"].get("messages", []):
            if message.get("role") == "tool" and message["content"] not in seen:
                seen.append(message["content"])
    return seen


def repeated_requests(stack: Stack) -> list[dict[str, Any]]:
    """Model requests that were answered more than once (attempt > 0)."""
    return [e for e in stack.llm_requests() if e["attempt"] > 0]


def events(stack: Stack, session: str, kind: str | None = None) -> list[dict[str, Any]]:
    """The session's event log (the public Events/read), oldest first, optionally one kind."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        code, body = stack.call("Events", session, "read", {"after": after, "limit": 500})
        assert code == 200, (code, body)
        found.extend(body["events"])
        if not body["events"]:
            return [e for e in found if kind is None or e["kind"] == kind]
        after = body["events"][-1]["seq"]
