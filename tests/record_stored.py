"""Record the state a real run leaves, for tests/test_stored.py to read with later code.

    .venv/bin/python -m tests.record_stored tests/fixtures/stored/<commit>.json

Runs the real stack through an archive import, a finished task (verdict, checkpoint), a
second task waiting on an approval, a rewind and a fork, then writes every state entry of
every object (service, key, state key, value) as Restate holds it.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from tests.agent_helpers import approvals, send_message, wait_idle
from tests.harness import REPO_ROOT, Stack


def _archive() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        data = b"def f():\n    return 1\n"
        info = tarfile.TarInfo("a.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def record(out: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="record-stored-"))
    rows: list[dict[str, str]] = []
    done = Stack(root / "done", "tests.fakes.spine_scripts:risky", {"AGENT_APPROVAL": "none"}).start()
    try:
        assert done.call("Agent", "rec", "import", _archive())[0] == 200
        send_message(done, "rec", "deploy")
        wait_idle(done, "rec")
        code, points = done.call("Agent", "rec", "checkpoints")
        first, last = points["checkpoints"][0]["checkpoint_id"], points["checkpoints"][-1]["checkpoint_id"]
        assert done.call("Agent", "rec", "fork", {"checkpoint": last, "session": "rec-fork"})[0] == 200
        assert done.call("Agent", "rec", "rewind", {"checkpoint": first})[0] == 200
        rows += _state(done)
    finally:
        done.close()
    waiting = Stack(root / "waiting", "tests.fakes.spine_scripts:risky",
                    {"AGENT_APPROVAL": "patterns", "AGENT_APPROVAL_PATTERNS": "push"}).start()
    try:
        send_message(waiting, "waiting", "deploy")
        waiting.wait_until(lambda: approvals(waiting, "waiting"), message="the approval")
        rows += _state(waiting)
    finally:
        waiting.close()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"commit": commit, "state": rows}, indent=1, sort_keys=True) + "\n")


def _state(stack: Stack) -> list[dict[str, str]]:
    return [{"service": r["service_name"], "key": r["service_key"], "name": r["key"], "value": r["value_utf8"]}
            for r in stack.query("SELECT service_name, service_key, key, value_utf8 FROM state "
                                 "ORDER BY service_name, service_key, key")]


if __name__ == "__main__":
    record(Path(sys.argv[1]))
