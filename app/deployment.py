"""Serve this worker's code version under its own path, and nothing else.

Every code version is registered with Restate as its own deployment, at
`http://<host>:<port>/<version>` (stack/upgrade.py), and Restate keeps each invocation on the
deployment it started on: a journal is only ever replayed by the code that wrote it. A worker
started with WORKER_VERSION answers only requests under that path. A request for another
version (a registration that points at a port now serving other code) gets a 404 naming both,
never a replay on the wrong code. Without WORKER_VERSION (tests, a bare `hypercorn app.main:app`)
the app is served at the root as it is.
"""

from __future__ import annotations

import json

from restate.server_types import RestateAppT


def at_version(app: RestateAppT, version: str) -> RestateAppT:
    if not version:
        return app
    prefix = f"/{version}/"

    async def versioned(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http" and not scope["path"].startswith(prefix):
            message = (f"this worker serves deployment version {version!r} (under {prefix}); "
                       f"{scope['path']} is not one of its paths")
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": json.dumps({"message": message}).encode()})
            return
        await app(scope, receive, send)

    return versioned  # type: ignore[return-value]
