"""Keep a step's prompt within the model's context window.

A step's message list grows with every round, and the offline model has 8,192 tokens: past
that the server refuses the request (a 400), which would fail the whole task. So before each
round the loop sends a fitted copy of the list: while it is over budget, the oldest tool
outputs become short pointers (the first line, the size, and where the full output can be
found again) and the long arguments of the oldest tool calls (a file the model wrote) become a
note of their size, never those of the latest round. This is a pure function of the journaled
messages, so a replay sends exactly the same prompt.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Tokens are estimated from characters. Code and logs run at roughly 3-4 characters per
# token; 3 errs on the side of sending less.
CHARS_PER_TOKEN = 3
# Room left for the answer: a quarter of the window, at least 1,024 tokens.
MIN_ANSWER_TOKENS = 1024
MIN_KEEP_CHARS = 2_000  # of the latest round's outputs, whatever the budget
LONG_ARGUMENT = 200  # an earlier tool call's string argument longer than this may be removed
_SAVED = re.compile(r"the full output is in (\S+?)\)")


def budget_chars(context_tokens: int, tools: list[dict[str, Any]]) -> int:
    """How many characters of messages fit beside the tool schemas and the answer."""
    answer = max(MIN_ANSWER_TOKENS, context_tokens // 4)
    return max(0, (context_tokens - answer) * CHARS_PER_TOKEN - len(json.dumps(tools)))


def size(messages: list[dict[str, Any]]) -> int:
    return sum(len(m.get("content") or "") + len(json.dumps(m.get("tool_calls") or "")) for m in messages)


def fit(messages: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """`messages`, with the oldest tool outputs shortened until the whole fits in `budget`
    characters. Outputs after the last assistant message (the latest round's) are kept."""
    total = size(messages)
    if total <= budget:
        return messages
    fitted = list(messages)
    last_round = max((i for i, m in enumerate(fitted) if m.get("role") == "assistant"), default=len(fitted))
    for i, message in enumerate(fitted[:last_round]):
        if total <= budget:
            break
        if message.get("role") == "assistant" and message.get("tool_calls"):
            # What the model wrote earlier (a whole file for write_file) weighs as much as what
            # tools answered: its long string arguments go too, and the JSON stays valid.
            calls = [_shorter_call(call) for call in message["tool_calls"]]
            smaller = {**message, "tool_calls": calls}
            total -= size([message]) - size([smaller])
            fitted[i] = smaller
            continue
        content = message.get("content") or ""
        if message.get("role") != "tool":
            continue
        pointer = elide(content)
        if len(pointer) < len(content):
            fitted[i] = {**message, "content": pointer}
            total -= len(content) - len(pointer)
    # Still too big: the latest round's outputs keep their head and tail, like a long command's.
    latest = [i for i in range(last_round, len(fitted)) if fitted[i].get("role") == "tool"]
    for i in latest:
        if total <= budget:
            break
        content = fitted[i].get("content") or ""
        keep = max(MIN_KEEP_CHARS, len(content) - (total - budget))
        if keep >= len(content):
            continue
        clipped = (f"{content[:keep // 2]}\n... [{len(content) - keep} characters removed to fit the model's "
                   f"context] ...\n{content[-(keep // 2):]}")
        fitted[i] = {**fitted[i], "content": clipped}
        total -= len(content) - len(clipped)
    return fitted


def elide(output: str) -> str:
    """A short stand-in for a tool output that no longer fits."""
    first = output.splitlines()[0][:120] if output else ""
    saved = _SAVED.search(output)
    where = (f"the full output is in {saved.group(1)}" if saved
             else "run the command again or read the file to see it")
    return f"{first}\n[{len(output)} characters of this output were removed to fit the model's context; {where}]"


def _shorter_call(call: dict[str, Any]) -> dict[str, Any]:
    """A tool call with every string argument longer than LONG_ARGUMENT replaced by a note."""
    function = call.get("function") or {}
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError:
        return call
    if not isinstance(arguments, dict):
        return call
    shortened = {key: (f"[{len(value)} characters, removed to fit the model's context]"
                       if isinstance(value, str) and len(value) > LONG_ARGUMENT else value)
                 for key, value in arguments.items()}
    return {**call, "function": {**function, "arguments": json.dumps(shortened)}}
