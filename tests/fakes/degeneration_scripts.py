"""Models whose answers degenerate, for tests/test_degeneration.py.

The degenerate answer streams slowly (`LOOP_PIECES` pieces, `PIECE_DELAY_S` apart: about half a
minute in all), as the 1.5B streamed backslashes for minutes, so a test can tell an answer that
was cut from one streamed to its end. A retry sends the very same messages, so it is the
script's next attempt.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.scripted_llm import Reply

PIECE_DELAY_S = 0.005
LOOP = "import re\n\nWORD = re.compile(r'[^" + "\\" * 48_000  # 6,000 pieces of 8 characters
HEALTHY = "\n".join(f"line {n}: the answer goes on" for n in range(1, 2_000))  # no loop, and no end soon
FILE = {"path": "wordfreq.py",
        "content": "import re\n\n\ndef words(text):\n    return re.findall(r'\\w+', text.lower())\n"}


def _looping() -> Reply:
    return Reply(content=LOOP, piece_delay_s=PIECE_DELAY_S)


def loop_then_write(request: dict[str, Any]) -> list[Reply]:
    """A loop first; asked again, a write_file call, native or as the JSON a small model writes."""
    if request.get("tools"):
        return [_looping(), Reply(tool_calls=(("write_file", FILE),))]
    return [_looping(), Reply(content=json.dumps({"tool": "write_file", "args": FILE}))]


def always_loop(request: dict[str, Any]) -> Reply:
    return _looping()


def never_ends(request: dict[str, Any]) -> Reply:
    return Reply(content=HEALTHY, piece_delay_s=PIECE_DELAY_S)
