"""What fits in the model's context window: pure functions over message lists.

`app/window.py` decides, round by round, how a step's prompt (and the planner's view of the
conversation) is kept within the window; this module holds the arithmetic and the text it
uses, with no I/O, so the same journaled inputs always give the same prompt.

Two measures of size, both in tokens:
- `upper_bound`: the request's JSON length. Byte-level BPE tokenizers (Qwen's, GPT's) make
  at most one token of each byte, and JSON escaping only adds bytes, so a request whose bound
  is within the budget fits for certain, with no tokenizer asked.
- `estimate`: the bound at 3 characters a token, for a model whose server has no tokenizer.
  Code and prose run at 3-4 characters a token; digits, hex and non-Latin text run at one, so
  when a tokenizer exists (llama.cpp) the window asks it instead.
"""

from __future__ import annotations

import json
from typing import Any

CHARS_PER_TOKEN = 3
# Room left for the answer: a quarter of the window, at least 1,024 tokens.
MIN_ANSWER_TOKENS = 1024
# The chat template's own text beyond the JSON: a default system prompt, role markers per
# message, and with tools a native tool-calling preamble (Qwen's is about 500 bytes).
TEMPLATE_SLACK, MESSAGE_SLACK, TOOLS_SLACK = 128, 16, 1_000
LONG_ARGUMENT = 200  # an older tool call's string argument longer than this is removed
POINTER_MIN = 400  # a tool output shorter than this stays: its pointer would save little


def answer_tokens(context_tokens: int) -> int:
    """The room kept for the model's answer: a quarter of the window, at least 1,024 tokens."""
    return max(MIN_ANSWER_TOKENS, context_tokens // 4)


def prompt_budget(context_tokens: int) -> int:
    """Tokens a prompt (messages and tool schemas) may take, leaving room for the answer."""
    return max(0, context_tokens - answer_tokens(context_tokens))


def upper_bound(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> int:
    """At least as many as the tokens of the request, whatever the byte-level tokenizer."""
    slack = TEMPLATE_SLACK + MESSAGE_SLACK * len(messages) + (TOOLS_SLACK if tools else 0)
    return len(json.dumps(messages)) + len(json.dumps(tools)) + slack


def estimate(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> int:
    """A guess at the request's tokens, for a server without a tokenizer."""
    return upper_bound(messages, tools) // CHARS_PER_TOKEN


def latest_round(messages: list[dict[str, Any]]) -> int:
    """Index of the latest assistant message: it and what follows are the latest round."""
    return max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=len(messages))


def pointer(output: str, saved_in: str | None, why: str = "") -> str:
    """The stand-in for a tool output moved out of the context: its first line, its size, and
    the file that holds all of it (readable with read_file)."""
    first = output.splitlines()[0][:120] if output else ""
    where = (f"the whole output is in {saved_in} (read_file it to see it again)" if saved_in
             else f"it could not be saved ({why}); run the command again to see it")
    return f"{first}\n[{len(output)} characters of this output were removed to fit the model's context; {where}]"


def shorter_call(call: dict[str, Any]) -> dict[str, Any]:
    """A tool call with every string argument longer than LONG_ARGUMENT replaced by a note:
    what the model wrote earlier (a whole file for write_file) weighs as much as what tools
    answered, and the file itself is in the workspace. The JSON stays valid."""
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


def clip(text: str, keep: int, where: str = "") -> str:
    """`text` cut to about `keep` characters: its head and tail around a marker."""
    keep = max(0, keep)
    if len(text) <= keep:
        return text
    note = f"; {where}" if where else ""
    return (f"{text[:keep // 2]}\n... [{len(text) - keep} characters removed to fit the model's context{note}] ...\n"
            f"{text[len(text) - keep // 2:] if keep // 2 else ''}")


def transcript(messages: list[dict[str, Any]]) -> str:
    """Messages as plain text, for a summariser to read."""
    lines = []
    for m in messages:
        text = m.get("content") or ""
        for call in m.get("tool_calls") or []:
            function = call.get("function") or {}
            text += f"\n→ {function.get('name', '?')}({function.get('arguments', '')})"
        lines.append(f"[{m.get('role', '?')}] {text.strip()}")
    return "\n".join(lines)
