"""The sessions this client has used, remembered in a small file: the ingress has no list of
sessions (a session is just a key), so `agent sessions` shows the ones used from here.

The file is `$XDG_STATE_HOME/agent/sessions` (default `~/.local/state/agent/sessions`), one id a
line, the most recently used last.
"""

from __future__ import annotations

import os
from pathlib import Path

KEEP = 200  # the most recent ones; older ids drop off


def store_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "agent" / "sessions"


def remembered() -> list[str]:
    """The remembered session ids, the most recently used first."""
    try:
        lines = store_path().read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [line for line in reversed(lines) if line.strip()]


def remember(session: str) -> None:
    """Put `session` at the top of the list. A file that cannot be written is not an error:
    the list is a convenience, the sessions live on the server."""
    ids = [s for s in reversed(remembered()) if s != session] + [session]
    path = store_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text("\n".join(ids[-KEEP:]) + "\n", encoding="utf-8")
        temporary.replace(path)  # whole or not at all, even with two clients at once
    except OSError:
        pass
