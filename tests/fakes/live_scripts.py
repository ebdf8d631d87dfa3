"""A model that runs a dev server in the background and fetches a page from it in the next command.

Each command appends to `runs.log` first, so the workspace counts how often each really ran.
When a tool result says the sandbox's background processes were stopped (the worker holding
them died), the model does what it is told: it starts the server again and fetches once more.
The fetch reply is slow, so a test can kill the worker between the two commands.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.scripts import finish, is_planning, last_tool_result, make_plan, run, slow

PAGE = "<h1>served from the sandbox</h1>"
FETCH_DELAY_S = 3.0
START = ("echo start >> runs.log; python3 -m http.server 8000 & "
         "for i in $(seq 100); do python3 -c \"import socket; socket.create_connection(('127.0.0.1', 8000))\" "
         "2>/dev/null && break; sleep 0.1; done; echo serving")
FETCH = ("echo fetch >> runs.log; python3 -c \"import urllib.request; "
         "print(urllib.request.urlopen('http://127.0.0.1:8000/page.html', timeout=5).read().decode())\"")
STOPPED = "left running in the background were stopped"


def serve_and_fetch(request: dict[str, Any]):
    if is_planning(request):
        return make_plan([("Serve and fetch", "Serve the workspace over HTTP in the background, fetch page.html")])
    commands = [m for m in request.get("messages", []) if m.get("role") == "assistant" and m.get("tool_calls")]
    last = last_tool_result(request) or ""
    if not commands:
        return run(f"printf '{PAGE}' > page.html && {START}")
    if "serving" in last and PAGE not in last:
        return slow(run(FETCH), FETCH_DELAY_S)  # time to kill the worker between the two commands
    if STOPPED in last:
        return run(START)
    if PAGE in last:
        return finish("fetched page.html from the background server")
    return finish(f"could not fetch the page: {last[-300:]}")
