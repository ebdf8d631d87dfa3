"""Tool calls for small local models that do not emit native `tool_calls`.

Instead of `tools`, the request carries a grammar (llama.cpp's `grammar` field, in llguidance's
Lark syntax) that only admits a call: a JSON object `{"tool": <name>, "args": <parameters>}`
with one branch per tool, so every answer is a valid call. `to_tool_calls` turns it back into
OpenAI `tool_calls`, so the loop and the journal see the same message shape whichever provider
answered.

A string argument marked `contentMediaType` in its tool's schema (write_file's `content`) is not
written inside the JSON: it follows the object as a fenced block, raw. Inside a JSON string a
newline must be spelled as an escape, and the grammar then forbids the very tokens a code model
writes code with (a closing parenthesis and its newline are one token): a small model writing a
file through the escapes drops or changes characters. In a fenced block it writes code as it
learned to.
"""

from __future__ import annotations

import json
import re
from typing import Any

BLOCK_MARK = "contentMediaType"  # JSON Schema's annotation for a string's content type


class StructuredAnswerError(ValueError):
    """The answer holds no tool call. The message is written to be sent back to the model."""


def block_arg(tool: dict) -> str | None:
    """The argument of `tool` written as a fenced block after the call, if it has one."""
    properties = (tool["function"].get("parameters") or {}).get("properties", {})
    return next((name for name, prop in properties.items()
                 if prop.get("type") == "string" and BLOCK_MARK in prop), None)


def grammar_for(tools: list[dict]) -> str:
    """The llguidance grammar that only admits a call of one of `tools`.

    The JSON parts are JSON schemas inlined with `%json`: one `oneOf` branch per tool, disjoint
    by their `tool` constant (llama.cpp compiles `oneOf` and `const`). A tool with a block
    argument has its own branch without it, then the fence. The block is closed by the last
    fence line of the answer, not the first: a file may hold fenced blocks of its own (a
    README), and the model ends its answer after the closing fence.
    """
    plain = [tool for tool in tools if block_arg(tool) is None]
    blocky = [tool for tool in tools if block_arg(tool) is not None]
    rules = [f"call: %json {json.dumps({'oneOf': [_branch(tool) for tool in plain]})}"] if plain else []
    for i, tool in enumerate(blocky):
        rules.append(f'block_call_{i}: %json {json.dumps(_branch(tool, without=block_arg(tool)))} '
                     '"\\n```" FENCE_INFO "\\n" BLOCK')
    if blocky:
        rules += ["FENCE_INFO: /[A-Za-z0-9_+.-]{0,20}/", "BLOCK: /(?s:.*)\\n```[ \\t\\n]*/"]
    starts = (["call"] if plain else []) + [f"block_call_{i}" for i in range(len(blocky))]
    return "\n".join(["%llguidance {}", "start: " + " | ".join(starts), *rules]) + "\n"


def _branch(tool: dict, without: str | None = None) -> dict:
    """`{"tool": <name>, "args": <parameters>}` for one tool, less the argument `without`."""
    function = tool["function"]
    args = _inline_refs(function.get("parameters") or {"type": "object", "properties": {}})
    if without is not None:
        args["properties"] = {k: v for k, v in args.get("properties", {}).items() if k != without}
        args["required"] = [k for k in args.get("required", []) if k != without]
    # Without this the grammar lets a small model wander into invented arguments.
    args.setdefault("additionalProperties", False)
    return {
        "type": "object",
        "properties": {"tool": {"const": function["name"]}, "args": args},
        "required": ["tool", "args"],
        "additionalProperties": False,
    }


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
    example = None
    for tool in tools:
        function = tool["function"]
        block = block_arg(tool)
        params = ", ".join(p for p in (function.get("parameters") or {}).get("properties", {}) if p != block)
        description = function.get("description", "").strip().splitlines()
        after = f" + {block} as a fenced block" if block else ""
        lines.append(f"- {function['name']}({params}){after}" + (f": {description[0]}" if description else ""))
        if block and example is None:
            example = tool, block
    if example is not None:
        tool, block = example
        head = {"tool": tool["function"]["name"],
                "args": {name: "app.py" for name in _required(tool)[:1] if name != block}}
        lines.append(f"The {block} of {head['tool']} goes right after the object, raw, in a fenced block, e.g.\n"
                     f'{json.dumps(head)}\n```python\nx = 1\n```')
    return "\n".join(lines)


def _required(tool: dict) -> list[str]:
    return list((tool["function"].get("parameters") or {}).get("required", []))


def render_call(name: str, args: dict, tools: list[dict]) -> str:
    """A call as the model would have written it (the form `to_tool_calls` reads)."""
    tool = next((t for t in tools if t["function"]["name"] == name), None)
    block = block_arg(tool) if tool is not None else None
    if block is None or not isinstance(args.get(block), str):
        return json.dumps({"tool": name, "args": args}, ensure_ascii=False)
    head = {"tool": name, "args": {k: v for k, v in args.items() if k != block}}
    content = args[block]
    newline = "\n" if content and not content.endswith("\n") else ""
    return f"{json.dumps(head, ensure_ascii=False)}\n```\n{content}{newline}```"


def to_tool_calls(content: str, call_id_prefix: str, tools: list[dict] | None = None) -> list[dict]:
    """Parse the model's answer into OpenAI `tool_calls` with ids `<prefix>-0`, `<prefix>-1`...

    `tools` tells which calls carry a fenced block after their object (see the module doc)."""
    block_call = _block_call(content, tools or [])
    calls = [block_call] if block_call is not None else [_as_call(obj) for obj in _candidates(content)]
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


# After the call's object: the fence line (an info string such as `python` allowed), the
# block's lines, each with its newline, and the answer's last fence.
_BLOCK = re.compile(r"[ \t]*\n```[^\n`]*\n(.*)```\s*", re.DOTALL)


def _block_call(content: str, tools: list[dict]) -> tuple[str, dict] | None:
    """A call whose block argument follows its object as a fenced block, or None."""
    text = content.strip()
    try:
        head, end = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return None
    call = _as_call(head)
    match = _BLOCK.fullmatch(text, end) if call is not None else None
    if call is None or match is None:
        return None
    name, args = call
    tool = next((t for t in tools if t["function"]["name"] == name), None)
    block = block_arg(tool) if tool is not None else None
    if block is None or block in args:
        return None
    return name, {**args, block: match.group(1)}


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
