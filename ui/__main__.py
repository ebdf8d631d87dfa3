"""`python -m ui`: serve the web UI on 127.0.0.1:$UI_PORT (3000) with hypercorn."""

from __future__ import annotations

import asyncio

from hypercorn.asyncio import serve
from hypercorn.config import Config

from app.config import settings
from ui.server import UiConfig, build_app


def main() -> None:
    config = Config()
    config.bind = [f"127.0.0.1:{settings().ui_port}"]  # loopback only, like every service here
    config.accesslog = None
    asyncio.run(serve(build_app(UiConfig.from_env()), config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
