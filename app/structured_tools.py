"""Tool calls for small local models that do not emit native `tool_calls`.

Instead of `tools`, the request carries a JSON schema as `response_format`: one branch
`{"tool": <name>, "args": <parameters>}` per tool. llama.cpp's server compiles it into a grammar,
so every answer is a valid call; `to_tool_calls` turns it back into OpenAI `tool_calls`, so the
loop and the journal see the same message shape whichever provider answered.
"""

from __future__ import annotations

import json
import re
from typing import Any


class StructuredAnswerError(ValueError):
    """The answer holds no tool call. The message is written to be sent back to the model."""


def response_format_for(tools: list[dict]) -> dict:
    """The `response_format` that only admits a call of one of `tools`.

    llama.cpp (llguidance) accepts both `oneOf` and `anyOf`, and `const`; the branches are
    disjoint by their `tool` constant, so `oneOf` says what is meant.
    """
    branches = []
    for tool in tools:
        function = tool["function"]
        args = _inline_refs(function.get("parameters") or {"type": "object", "properties": {}})
        # Without this the grammar lets a small model wander into invented arguments.
        args.setdefault("additionalProperties", False)
        branches.append({
            "type": "object",
            "properties": {"tool": {"const": function["name"]}, "args": args},
            "required": ["tool", "args"],
            "additionalProperties": False,
        })
    return {"type": "json_schema",
            "json_schema": {"name": "tool_call", "strict": True, "schema": {"oneOf": branches}}}


def _inline_refs(schema: dict) -> dict:
    """Replace local `$ref`s (pydantic's `#/$defs/...`) by their definitions.

    llama.cpp compiles each branch on its own and cannot resolve a `$ref` to the root's `$defs`,
    so nested models have to be spelled out in place.
    """
    defs = schema.get("$defs", {})

    def resolve(node: object) -> object:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in defs:
                return resolve(defs[ref[8:]])
            return {k: resolve(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)  # type: ignore[return-value]


def tool_prompt(tools: list[dict]) -> str:
    """A short system-prompt addition naming the tools and the answer format."""
    lines = ['Answer with exactly one JSON object {"tool": NAME, "args": {...}}. Tools:']
    for tool in tools:
        function = tool["function"]
        params = ", ".join((function.get("parameters") or {}).get("properties", {}))
        description = function.get("description", "").strip().splitlines()
        lines.append(f"- {function['name']}({params})" + (f": {description[0]}" if description else ""))
    return "\n".join(lines)


def to_tool_calls(content: str, call_id_prefix: str) -> list[dict]:
    """Parse the model's answer into OpenAI `tool_calls` with ids `<prefix>-0`, `<prefix>-1`..."""
    calls = [_as_call(obj) for obj in _candidates(content)]
    calls = [call for call in calls if call is not None]
    if not calls:
        raise StructuredAnswerError(
            'Your answer was not a tool call. Reply with only a JSON object like '
            '{"tool": "<tool name>", "args": {...}} using one of the listed tools.'
        )
    return [
        {"id": f"{call_id_prefix}-{i}", "type": "function",
         "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}
        for i, (name, args) in enumerate(calls)
    ]


_FENCED = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)


def _candidates(content: str) -> list[Any]:
    """JSON values in the answer: the whole text, else fenced blocks, else the first object."""
    text = content.strip()
    try:
        whole = json.loads(text)
    except ValueError:
        pass
    else:
        return whole if isinstance(whole, list) else [whole]
    found: list[Any] = []
    for block in _FENCED.findall(text):
        try:
            value = json.loads(block)
        except ValueError:
            continue
        found.extend(value if isinstance(value, list) else [value])
    if found:
        return found
    decoder = json.JSONDecoder()
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            return [decoder.raw_decode(text, start)[0]]
        except ValueError:
            continue
    return []


def _as_call(obj: Any) -> tuple[str, dict] | None:
    """Our `{"tool", "args"}` shape, or the `{"name", "arguments"}` shape Qwen writes unprompted."""
    if not isinstance(obj, dict):
        return None
    name = obj.get("tool", obj.get("name"))
    args = obj.get("args", obj.get("arguments", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(name, str) or not name or not isinstance(args, dict):
        return None
    return name, args
