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
import importlib

from hypercorn.asyncio import serve
from hypercorn.config import Config


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stack.worker", description=__doc__.splitlines()[0])
    parser.add_argument("application", help="the ASGI application, module:attribute")
    parser.add_argument("--bind", required=True, help="host:port to listen on")
    parser.add_argument("--config", help="a hypercorn TOML config file (hypercorn.toml)")
    args = parser.parse_args()
    module, _, attribute = args.application.partition(":")
    app = getattr(importlib.import_module(module), attribute or "app")
    config = Config.from_toml(args.config) if args.config else Config()
    config.bind = [args.bind]
    asyncio.run(serve(app, config, mode="asgi"))  # serve() stops cleanly on SIGTERM and SIGINT


if __name__ == "__main__":
    main()
