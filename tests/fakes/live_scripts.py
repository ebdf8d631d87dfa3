"""A model that runs a dev server in the background and fetches a page from it in the next command.

Each command appends to `runs.log` first, so the workspace counts how often each really ran.
When a tool result says the sandbox's background processes were stopped (the worker holding
them died, or the sandbox was suspended), the model does what it is told: it starts the server
again and fetches once more. The fetch reply is slow, so a test can kill the worker between the
two commands, or let an idle sandbox be suspended.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.scripts import finish, is_planning, last_tool_result, make_plan, message_text, run, slow

PAGE = "<h1>served from the sandbox</h1>"
FETCH_DELAY_S = 3.0
START = ("echo start >> runs.log; python3 -m http.server 8000 & "
         "for i in $(seq 100); do python3 -c \"import socket; socket.create_connection(('127.0.0.1', 8000))\" "
         "2>/dev/null && break; sleep 0.1; done; echo serving")
FETCH = ("echo fetch >> runs.log; python3 -c \"import urllib.request; "
         "print(urllib.request.urlopen('http://127.0.0.1:8000/page.html', timeout=5).read().decode())\"")
STOPPED = "were stopped"  # a tool result says the server is gone: after a worker kill, or a suspension


def serve_and_fetch(request: dict[str, Any]):
    if is_planning(request):
        return make_plan([("Serve and fetch", "Serve the workspace over HTTP in the background, fetch page.html")])
    messages = request.get("messages", [])
    commands = [m for m in messages if m.get("role") == "assistant" and m.get("tool_calls")]
    last = last_tool_result(request) or ""
    told = any(STOPPED in message_text(m) for m in messages if m.get("role") == "tool")
    if not commands:
        return run(f"printf '{PAGE}' > page.html && {START}")
    if "serving" in last and PAGE not in last:
        # The first time, slowly: time to kill the worker (or suspend the sandbox) in between.
        return run(FETCH) if told else slow(run(FETCH), FETCH_DELAY_S)
    if STOPPED in last:
        return run(START)
    if PAGE in last:
        return finish("fetched page.html from the background server")
    return finish(f"could not fetch the page: {last[-300:]}")
