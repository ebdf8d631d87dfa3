"""The worker process: import a Restate deployment, then serve it with hypercorn.

    python -m stack.worker app.main:app --bind 127.0.0.1:9080

What `hypercorn app.main:app --bind ...` does (HTTP/2 cleartext, hypercorn's defaults), in one
process. hypercorn's own command keeps a parent process that binds the socket and then starts
a second interpreter, which imports hypercorn again and the application, and serves: after a
crash, two interpreter starts before the first request is answered. Here there is one: the
application is imported (app.main also probes the sandbox's isolation), then the port listens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import importlib
import signal
import traceback
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config
from restate.server import install_shutdown_hook


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stack.worker", description=__doc__.splitlines()[0])
    parser.add_argument("application", help="the ASGI application, module:attribute")
    parser.add_argument("--bind", required=True, help="host:port to listen on")
    parser.add_argument("--config", help="a hypercorn TOML config file (hypercorn.toml)")
    args = parser.parse_args()
    os.environ["WORKER_BIND"] = args.bind  # the app refuses to serve beyond loopback unsigned (app/main.py)
    module, _, attribute = args.application.partition(":")
    app = getattr(importlib.import_module(module), attribute or "app")
    config = Config.from_toml(args.config) if args.config else Config()
    config.bind = [args.bind]
    asyncio.run(_serve(app, config))


async def _serve(app: Any, config: Config) -> None:
    """Serve until SIGTERM or SIGINT, then stop as hypercorn does (close the listener, give
    open requests `graceful_timeout`).

    hypercorn's own signal handling cannot be used: on its first request the Restate SDK puts
    its SIGTERM handler on the event loop in hypercorn's place (it tells running invocations
    the input is closing, nothing more), so SIGTERM stopped nothing and every stop waited for
    the supervisor's grace and a SIGKILL. The SDK's hook registry chains handlers instead of
    replacing them; stopping the server is registered there, beside the SDK's own hook.

    While connections drain, hypercorn's HTTP/2 handler can trip over a frame Restate sent for
    a stream it has already closed (a KeyError out of its task group). The stop was asked for
    and nothing is lost by it (an invocation cut off resumes on the next worker), so it is
    logged and the worker still exits 0; before a stop, any error ends the worker as usual.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        install_shutdown_hook(loop, stop.set, signum)
    try:
        await serve(app, config, mode="asgi", shutdown_trigger=stop.wait)
    except Exception:
        if not stop.is_set():
            raise
        traceback.print_exc()
        print("worker: the error above came while connections closed, after the stop was asked for", flush=True)


if __name__ == "__main__":
    main()
