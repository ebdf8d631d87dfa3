"""`python -m ui`: serve the web UI on $UI_HOST:$UI_PORT (127.0.0.1:3000) with hypercorn.

It refuses to listen on anything but loopback without a token (UI_TOKEN, UI_TOKENS or
UI_ADMIN_TOKENS): the UI can steer every session, so an open one on a network would hand the
agent to anyone. It says at start what it will not do for want of a setting: answer to a host
name beyond loopback (UI_ALLOWED_HOSTS), take the worker's live text (AGENT_DELTA_SECRET).
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config

from app.config import settings
from ui.server import UiConfig, build_app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def main() -> int:
    s = settings()
    if not is_loopback(s.ui_host) and not s.ui_token_list:
        print(f"[ui] refusing to listen on {s.ui_host}:{s.ui_port} without a token: anyone who "
              "reaches it could read and steer every session. Set UI_TOKENS (one token per user, "
              "comma-separated) or UI_TOKEN, or UI_HOST=127.0.0.1.", file=sys.stderr, flush=True)
        return 2
    if not is_loopback(s.ui_host) and not s.ui_allowed_hosts:
        print(f"[ui] on {s.ui_host}:{s.ui_port} it answers to IP addresses, localhost and {s.ui_host} only: "
              "add the names browsers use for it to UI_ALLOWED_HOSTS (ui/guard.py).", file=sys.stderr, flush=True)
    if not s.delta_secret:
        print("[ui] AGENT_DELTA_SECRET is not set: live model text is off (`make run` sets it for the UI and "
              "the worker).", file=sys.stderr, flush=True)
    config = Config()
    host = f"[{s.ui_host}]" if ":" in s.ui_host and not s.ui_host.startswith("[") else s.ui_host
    config.bind = [f"{host}:{s.ui_port}"]
    config.accesslog = None
    asyncio.run(serve(build_app(UiConfig.from_env()), config))  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
