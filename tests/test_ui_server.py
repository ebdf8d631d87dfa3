"""The web UI's server without a browser: the resumable event stream, live deltas, the token,
the API's pass-through of Restate's answers, the workspace download, and an import's way in and
the change's way out (its own body cap, the diff, the .patch and .tar.gz downloads)."""

from __future__ import annotations

import io
import json
import socket
import tarfile
import threading
import time
import types
import zipfile

import httpx
import pytest

from tests.agent_helpers import send_message, wait_idle
from tests.client import free_port
from tests.fakes.import_scripts import SUB, TOP, TREE, project_archive
from tests.ui_helpers import (DELTA_SECRET, FROM_THE_WORKER, WITH_DELTAS, Call, CannedSession, Sse, logged_events,
                              sse_stream, ui_over_canned_ingress)
from ui import feed, workspace
from ui.server import DELTA_SECRET_HEADER, MAX_DELTA_BYTES

SCRIPTS = "tests.fakes.ui_scripts"


JSON = {"content-type": "application/json"}
ARCHIVE = {"content-type": "application/octet-stream"}


def ui_client(stack, **kwargs) -> httpx.Client:
    return httpx.Client(base_url=stack.ui_url, trust_env=False, timeout=30.0, **kwargs)


def log(stack, session: str) -> list[dict]:
    code, body = stack.call("Events", session, "read", {"after": 0, "limit": 500})
    assert code == 200, (code, body)
    return body["events"]


def test_the_stream_resumes_with_last_event_id_across_a_worker_kill(stack_factory):
    stack = stack_factory("tests.fakes.spine_scripts:appender", ui=True)
    client = ui_client(stack)
    send_message(stack, "resume", "append four lines")

    # A second client stays connected from start to finish, through the crash.
    watcher: list[Sse] = []
    watching = threading.Thread(target=lambda: watcher.extend(logged_events(ui_client(stack), "resume")))
    watching.start()

    # The first client reads until the first command's result, and hangs up.
    first: list[Sse] = []
    for item in sse_stream(client, "/api/sessions/resume/events", params={"after": 0}):
        if item.id is not None:
            first.append(item)
            if item.event == "tool_result":
                break
    # Kill the worker mid-task (step 1's second command sleeps 3 s), let the task go on
    # without the client for a while, then reconnect with the last id it saw.
    time.sleep(0.5)
    stack.kill_worker()
    stack.start_worker()
    time.sleep(2.0)
    rest = logged_events(client, "resume", headers={"Last-Event-ID": str(first[-1].id)})
    watching.join(timeout=90)

    final = log(stack, "resume")
    assert [e["kind"] for e in final].count("final_answer") == 1
    assert rest, "nothing after the reconnect"
    for stream in (first + rest, watcher):
        seqs = [item.id for item in stream]
        assert seqs == list(range(1, len(final) + 1)), seqs  # no gap, no duplicate, in order
        assert [item.data for item in stream] == final
        assert all(item.event == item.data["kind"] for item in stream)


def test_deltas_reach_watchers_without_ids_and_a_new_attempt_starts_over(stack_factory):
    stack = stack_factory("echo", ui=True, env=WITH_DELTAS)
    client = ui_client(stack)
    send_message(stack, "live", "hello")

    def post(attempt: str, text: str) -> None:
        delta = {"session": "live", "task_id": "t1", "ref": "step 1: x, round 1", "attempt": attempt, "text": text}
        assert client.post("/internal/deltas", json=delta, headers=FROM_THE_WORKER).status_code == 204

    post("a1", "Hel")
    post("a1", "lo")
    deltas: list[Sse] = []
    for item in sse_stream(client, "/api/sessions/live/events", params={"after": 0}):
        if item.event == "delta":
            deltas.append(item)
            if len(deltas) == 1:  # the snapshot of the round so far; now a retry starts over
                post("a2", "Again")
            if len(deltas) == 2:
                break
    snapshot, live = deltas
    assert snapshot.id is None and live.id is None  # deltas never move Last-Event-ID
    assert snapshot.data == {"ref": "step 1: x, round 1", "task_id": "t1", "attempt": "a1", "text": "Hello",
                             "snapshot": True}
    assert live.data == {"ref": "step 1: x, round 1", "task_id": "t1", "attempt": "a2", "text": "Again"}
    # A reconnecting client gets the new attempt's text only.
    for item in sse_stream(client, "/api/sessions/live/events", params={"after": 0}):
        if item.event == "delta":
            assert item.data["text"] == "Again" and item.data["attempt"] == "a2"
            break
    # Garbage is refused.
    assert client.post("/internal/deltas", json={"session": "live"}, headers=FROM_THE_WORKER).status_code == 400


def test_model_rounds_stream_live_text_to_watchers(stack_factory):
    """Needs app/loop.py to pass session_id, task_id and label to complete() (see llm.py)."""
    stack = stack_factory("hello_world", ui=True, env=WITH_DELTAS)
    client = ui_client(stack)
    send_message(stack, "words", "write hello.py")
    deltas: dict[str, str] = {}
    rounds = []
    for item in sse_stream(client, "/api/sessions/words/events", params={"after": 0}):
        if item.event == "delta":
            deltas[item.data["ref"]] = deltas.get(item.data["ref"], "") + item.data["text"]
        elif item.event == "model_round":
            rounds.append(item.data["ref"])
        elif item.event == "final_answer":
            break
    assert deltas, "no live deltas arrived: does app/loop.py pass session_id/task_id/label to complete()?"
    # Every delta belongs to a journaled round (or the plan), and the write round streamed its call.
    assert set(deltas) <= set(rounds) | {"plan"}, (deltas.keys(), rounds)
    write_round = next(ref for ref in rounds if "round 1" in ref)
    assert "write_file" in deltas.get(write_round, "") and "hello, world" in deltas[write_round]


def test_every_route_needs_the_token_when_one_is_set(stack_factory):
    stack = stack_factory("echo", ui=True, env=WITH_DELTAS, ui_env={"UI_TOKEN": "s3cret"})
    client = ui_client(stack)
    for path in ("/", "/static/app.js", "/api/config", "/api/sessions/t/status", "/api/sessions/t/checkpoints",
                 "/api/sessions/t/events"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"authorization": "Bearer wrong"}).status_code == 401, path
    for action in ("message", "rewind", "fork"):
        assert client.post(f"/api/sessions/t/{action}", json={"text": "hi"}).status_code == 401, action
    assert client.get("/api/sessions/t/events?token=wrong").status_code == 401

    bearer = {"authorization": "Bearer s3cret"}
    assert client.get("/", headers=bearer).status_code == 200
    code = client.post("/api/sessions/t/message", json={"text": "hi"}, headers=bearer).status_code
    assert code == 200
    # Visiting /?token= sets a cookie that works for everything after, the stream included.
    visit = client.get("/?token=s3cret")
    assert visit.status_code == 303 and "ui_token" in visit.headers["set-cookie"]
    with ui_client(stack, cookies={"ui_token": "s3cret"}) as browser:
        assert browser.get("/api/sessions/t/history").status_code == 200
        assert logged_events(browser, "t")[-1].event == "final_answer"
    # EventSource cannot set headers, so ?token= works too.
    stream = sse_stream(client, "/api/sessions/t/events", params={"after": 1, "token": "s3cret"})
    assert next(item for item in stream if item.id is not None).id == 2
    # The worker posts deltas without a token: that route takes the worker's secret instead.
    delta = {"session": "t", "ref": "r", "attempt": "a", "text": "x"}
    assert client.post("/internal/deltas", json=delta, headers=FROM_THE_WORKER).status_code == 204


def test_answers_from_restate_pass_through_and_the_workspace_downloads(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:workspace_maker", ui=True, env={"AGENT_MAX_MESSAGE_CHARS": "50"})
    client = ui_client(stack)
    unknown = client.get("/api/sessions/nobody/history")
    assert unknown.status_code == 404 and "unknown session" in unknown.json()["message"]
    too_long = client.post("/api/sessions/w/message", json={"text": "x" * 51})
    assert too_long.status_code == 400 and "limit is 50" in too_long.json()["message"]
    assert client.post("/api/sessions/w/message", content=b"{oops", headers=JSON).status_code == 400
    assert client.get("/api/sessions/w/events", params={"after": "x"}).status_code == 400

    assert client.post("/api/sessions/w/message", json={"text": "make files"}).status_code == 200
    wait_idle(stack, "w")
    assert client.get("/api/sessions/w/file", params={"path": "src/hello.py"}).json()["content"] == "print('hello')\n"
    assert client.get("/api/sessions/w/file", params={"path": "../etc/passwd"}).status_code == 400
    listing = {e["path"] for e in client.get("/api/sessions/w/files", params={"path": "."}).json()["entries"]}
    assert {"src/hello.py", "blob.bin", "big.txt"} <= listing
    sandbox = client.get("/api/sessions/w/sandbox").json()
    assert sandbox["command"] is None and sandbox["slots"]["in_use"] == 0
    assert client.post("/api/sessions/w/approvals/nope", json={"decision": "approve"}).status_code == 409
    points = client.get("/api/sessions/w/checkpoints").json()["checkpoints"]
    assert [p["step"] for p in points] == [1]
    assert client.post("/api/sessions/w/rewind", json={"checkpoint": "nope"}).status_code == 404
    assert client.post("/api/sessions/w/fork", json={"checkpoint": points[0]["checkpoint_id"],
                                                      "session": "w"}).status_code == 400

    download = client.get("/api/sessions/w/download")
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(download.content))
    assert archive.read("src/hello.py") == b"print('hello')\n"
    manifest = archive.read("MANIFEST.txt").decode()
    assert "blob.bin: not UTF-8 text" in manifest and "big.txt: 300000 bytes" in manifest
    assert "blob.bin" not in archive.namelist() and "big.txt" not in archive.namelist()
    sessions = client.get("/api/sessions", params={"ids": "w,nobody"}).json()["sessions"]
    assert sessions == [{"id": "w", "state": "idle"}, {"id": "nobody", "state": "new"}]


@pytest.mark.parametrize("mode, script", [("native", "hello_world"), ("structured", f"{SCRIPTS}:structured")])
def test_a_streamed_model_call_returns_exactly_what_a_plain_one_does(llm_factory, mode, script):
    import asyncio

    import app.main  # noqa: F401  (app.tools needs the services imported in order)
    from app import tools
    from app.config import Settings
    from app.llm import ModelClient
    from app.planner import plan_tool

    llm = llm_factory(script)
    received: list[dict] = []
    server = _DeltaSink(received)
    calls = [([{"role": "system", "content": "PLAN"}, {"role": "user", "content": "x"}], [plan_tool(3)]),
             ([{"role": "system", "content": "s"}, {"role": "user", "content": "Current step 1: Write\nx"}],
              tools.SCHEMAS)]

    async def both(messages, tool_list):
        plain = await ModelClient(Settings(openai_base_url=llm.base_url, tool_mode=mode)).complete(
            messages, tool_list, "p")
        streaming = ModelClient(Settings(openai_base_url=llm.base_url, tool_mode=mode, delta_url=server.url,
                                         delta_secret=DELTA_SECRET))
        live = await streaming.complete(messages, tool_list, "p", session_id="s", task_id="t", label="plan")
        nowhere = ModelClient(Settings(openai_base_url=llm.base_url, tool_mode=mode,
                                       delta_url="http://127.0.0.1:9/closed"))
        lost = await nowhere.complete(messages, tool_list, "p", session_id="s", task_id="t", label="plan")
        await asyncio.sleep(0.3)  # the deltas are posted in the background
        return plain, live, lost

    with server:
        for messages, tool_list in calls:
            plain, live, lost = asyncio.run(both(messages, tool_list))
            assert live == plain and lost == plain  # the journal cannot tell the difference
    texts = "".join(d["text"] for d in received)
    assert all(d["session"] == "s" and d["task_id"] == "t" and d["ref"] == "plan" for d in received)
    assert all(d["secret"] == DELTA_SECRET for d in received)  # the header the UI checks
    assert len({d["attempt"] for d in received}) == 2  # one nonce per call
    assert ("make_plan" in texts) and (("write_file" in texts) if mode == "native" else ("finish" in texts))


class _DeltaSink:
    """A tiny HTTP server in a thread that records the deltas posted to it."""

    def __init__(self, received: list[dict]) -> None:
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                delta = json.loads(self.rfile.read(int(self.headers["content-length"])))
                received.append({**delta, "secret": self.headers.get(DELTA_SECRET_HEADER)})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/internal/deltas"

    def __enter__(self) -> _DeltaSink:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_an_ingress_that_cannot_be_reached_is_skipped_for_the_next(stack_factory):
    # A cluster's UI is given every node's ingress (RESTATE_INGRESS_URL, comma separated): a
    # node that is down must not take the UI down with it. Here the first "node" is a dead port.
    stack = stack_factory("echo", ui=True)
    stack.kill_ui()
    stack.ui_env = {"RESTATE_INGRESS_URL": f"http://127.0.0.1:{free_port()},http://127.0.0.1:{stack.ingress_port}"}
    stack.start_ui()
    client = ui_client(stack)

    sent = client.post("/api/sessions/two/message", json={"text": "hello"})  # a write: never sent before
    assert sent.status_code == 200, sent.text
    wait_idle(stack, "two")
    history = client.get("/api/sessions/two/history")
    assert history.status_code == 200 and [m["role"] for m in history.json()["messages"]] == ["user", "agent"]


# --- bringing code in and the change out (issue 21) -----------------------------------------------

IMPORTS = "tests.fakes.import_scripts"


def test_an_import_over_the_ui_cap_is_refused_before_it_reaches_the_agent(stack_factory):
    # The UI's cap alone is small here (the worker keeps its default), so a session that does
    # not exist afterwards shows the Agent never saw the body: an import would have made it.
    stack = stack_factory("echo", ui=True, ui_env={"AGENT_IMPORT_MAX_BYTES": "1000"})
    client = ui_client(stack)
    declared = client.post("/api/sessions/big/import", content=b"x" * 5000, headers=ARCHIVE)
    assert declared.status_code == 413 and "the limit is 1000" in declared.json()["message"]
    streamed = client.post("/api/sessions/big/import", content=iter([b"x" * 600, b"x" * 600]),  # no length
                           headers=ARCHIVE)
    assert streamed.status_code == 413 and "AGENT_IMPORT_MAX_BYTES" in streamed.json()["message"]
    assert client.get("/api/sessions/big/status").status_code == 404
    # Under the cap, the body reaches the Agent as it was sent, and its 400 comes back.
    garbage = client.post("/api/sessions/big/import", content=b"not an archive", headers=ARCHIVE)
    assert garbage.status_code == 400, garbage.text


def test_import_diff_patch_archive_and_export_pass_through_the_ui(stack_factory, tmp_path):
    stack = stack_factory(f"{IMPORTS}:edits_two_files", ui=True)
    client = ui_client(stack)
    unknown = client.get("/api/sessions/nobody/diff")
    assert unknown.status_code == 404 and "unknown session" in unknown.json()["message"]
    assert client.get("/api/sessions/nobody/patch").status_code == 404
    assert client.get("/api/sessions/nobody/archive").status_code == 404

    imported = client.post("/api/sessions/p/import", content=project_archive(),
                           headers={"content-type": "application/gzip"})
    assert imported.status_code == 200, imported.text
    source = imported.json()
    assert (source["session"], source["kind"], source["files"], source["stripped"]) == ("p", "archive", 4, TOP)
    assert client.get("/api/sessions/p/status").json()["source"]["checkpoint"] == source["checkpoint"]
    assert client.post("/api/sessions/p/import", json={"git": ""}).status_code == 400

    assert client.post("/api/sessions/p/message", json={"text": "add sub"}).status_code == 200
    wait_idle(stack, "p")
    task = client.get("/api/sessions/p/history").json()["messages"][-1]["task_id"]
    expected = [("README.md", "modified", 1, 1), ("src/calc.py", "modified", 4, 0)]
    for params in ({"task": task}, {}, {"against": source["checkpoint"]}):
        diff = client.get("/api/sessions/p/diff", params=params)
        assert diff.status_code == 200, (params, diff.text)
        found = diff.json()
        assert [(f["path"], f["status"], f["added"], f["removed"]) for f in found["files"]] == expected, params
        assert "+def sub(a, b):" in found["patch"] and "-Adds numbers." in found["patch"]
    assert client.get("/api/sessions/p/diff", params={"task": "nope"}).status_code == 404
    assert client.get("/api/sessions/p/diff", params={"against": "nope"}).status_code == 404

    patch = client.get("/api/sessions/p/patch", params={"task": task})
    assert patch.status_code == 200 and patch.headers["content-type"].startswith("text/x-diff")
    assert patch.headers["content-disposition"] == f'attachment; filename="p-{task}.patch"'
    assert patch.text.startswith("diff --git a/README.md b/README.md")
    whole = client.get("/api/sessions/p/patch")
    assert whole.headers["content-disposition"] == 'attachment; filename="p.patch"' and whole.text == patch.text

    archive = client.get("/api/sessions/p/archive")
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/gzip"
    assert archive.headers["content-disposition"] == 'attachment; filename="p.tar.gz"'
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        files = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
        assert set(TREE) <= set(files)
        assert tar.extractfile(files["src/calc.py"]).read().decode() == TREE["src/calc.py"] + SUB

    refused = client.post("/api/sessions/p/export", json={"branch": "agent/sub"})
    assert refused.status_code == 409 and ".patch" in refused.json()["message"]  # an archive has no origin


def test_an_import_makes_a_new_session_its_uploaders(stack_factory):
    stack = stack_factory("echo", ui=True, ui_env={"UI_TOKENS": "alice,bob"})
    alice = ui_client(stack, headers={"authorization": "Bearer alice"})
    bob = ui_client(stack, headers={"authorization": "Bearer bob"})
    assert alice.post("/api/sessions/hers/import", content=project_archive(), headers=ARCHIVE).status_code == 200
    for path in ("diff", "patch", "archive"):
        assert bob.get(f"/api/sessions/hers/{path}").status_code == 403, path
        assert alice.get(f"/api/sessions/hers/{path}").status_code == 200, path
    assert bob.post("/api/sessions/hers/import", content=project_archive(), headers=ARCHIVE).status_code == 403
    assert bob.post("/api/sessions/hers/export", json={"branch": "b"}).status_code == 403


# --- the worker's way in, the token link, and what the server holds (over a canned ingress) ------


def test_deltas_need_the_workers_secret_even_from_loopback():
    # Behind a reverse proxy on the same host every browser is 127.0.0.1 too.
    delta = {"session": "s", "ref": "r", "attempt": "a", "text": "forged"}
    with ui_over_canned_ingress({}, delta_secret=DELTA_SECRET) as url, \
            httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
        for headers in ({}, {DELTA_SECRET_HEADER: "guess"}, {"authorization": f"Bearer {DELTA_SECRET}"}):
            refused = client.post("/internal/deltas", json=delta, headers=headers)
            assert refused.status_code == 403, (headers, refused.status_code)
        assert client.post("/internal/deltas", json=delta, headers=FROM_THE_WORKER).status_code == 204
    with ui_over_canned_ingress({}) as url:  # no secret set: live text is off, nobody gets in
        assert httpx.post(f"{url}/internal/deltas", json=delta, headers={DELTA_SECRET_HEADER: ""},
                          trust_env=False).status_code == 403


def test_an_oversize_body_is_cut_off_while_it_is_read():
    with ui_over_canned_ingress({}, delta_secret=DELTA_SECRET) as url:
        port = int(url.rsplit(":", 1)[1])
        declared = httpx.post(f"{url}/internal/deltas", content=b"x" * (MAX_DELTA_BYTES + 1),
                              headers={**FROM_THE_WORKER, **JSON}, trust_env=False)
        assert declared.status_code == 413
        # No length said: the answer must come as soon as the body passes the limit, while the
        # client has not finished sending (a server that read it all first would wait forever).
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(f"POST /internal/deltas HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
                         f"content-type: application/json\r\n{DELTA_SECRET_HEADER}: {DELTA_SECRET}\r\n"
                         "transfer-encoding: chunked\r\n\r\n".encode())
            chunk = b"x" * 50_000
            for _ in range(MAX_DELTA_BYTES // len(chunk) + 1):  # just past the limit, never the end
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            answer = conn.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_token_link_sets_the_cookie_only_for_a_token_the_ui_accepts():
    with ui_over_canned_ingress({}, tokens=("good",)) as url, \
            httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
        # A signed-in browser (its cookie passes the gate) sent to /?token=bad keeps its cookie.
        kept = client.get("/?token=bad", headers={"cookie": "ui_token=good"})
        assert kept.status_code == 303 and "set-cookie" not in kept.headers
        assert client.get("/?token=bad").status_code == 401
        # A link to /?token=<someone's token> followed from another site (login CSRF): no cookie.
        crossed = client.get("/?token=good", headers={"sec-fetch-site": "cross-site"})
        assert crossed.status_code == 403 and "set-cookie" not in crossed.headers
        # Typed, pasted, or opened from the terminal that printed it: the cookie, and the
        # token leaves the address bar.
        for headers in ({"sec-fetch-site": "none"}, {}):
            typed = client.get("/?token=good", headers=headers)
            assert typed.status_code == 303 and typed.headers["set-cookie"].startswith("ui_token=good;")


def test_a_round_nobody_settles_is_forgotten_once_idle(monkeypatch):
    # A session nobody watches has no poller, so no journaled event ever settles its rounds.
    clock = [1000.0]
    monkeypatch.setattr(feed, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))
    hub = feed.Hub(ingress=None)  # type: ignore[arg-type]  (deltas never read the log)
    hub.delta({"session": "unwatched", "ref": "r1", "attempt": "a", "text": "x" * 1000})
    clock[0] += feed.LIVE_TTL_S / 2
    hub.delta({"session": "busy", "ref": "r1", "attempt": "a", "text": "y"})
    assert set(hub.live) == {"unwatched", "busy"}
    clock[0] += feed.LIVE_TTL_S / 2 + feed.SWEEP_EVERY_S + 1
    hub.delta({"session": "busy", "ref": "r2", "attempt": "a", "text": "z"})
    assert set(hub.live) == {"busy"} and set(hub.live["busy"]) == {"r1", "r2"}


def test_the_zip_is_streamed_and_no_file_past_its_cap_is_read(monkeypatch):
    files = {f"f{i}.txt": f"{i}" * 1000 for i in range(10)}
    calls: list[Call] = []
    monkeypatch.setattr(workspace, "MAX_ZIP_BYTES", 3_500)  # room for three files
    with ui_over_canned_ingress({"s": CannedSession(files=files)}, calls) as url:
        download = httpx.get(f"{url}/api/sessions/s/download", trust_env=False, timeout=10)
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    assert "content-length" not in download.headers  # sent as it is made, not collected first
    read = [key for handler, key, body in calls if handler == "Sandbox.read_file"]
    assert sorted(json.loads(body)["path"] for handler, _, body in calls if handler == "Sandbox.read_file") \
        == ["f0.txt", "f1.txt", "f2.txt"], read
    archive = zipfile.ZipFile(io.BytesIO(download.content))
    assert archive.read("f1.txt") == b"1" * 1000
    manifest = archive.read("MANIFEST.txt").decode()
    assert all(f"f{i}.txt: left out, the zip reached 3500 bytes" in manifest for i in range(3, 10)), manifest
