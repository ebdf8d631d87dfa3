"""Tool calls for small local models that do not emit native `tool_calls`.

Instead of `tools`, the request carries a JSON schema as `response_format`: one branch
`{"tool": <name>, "args": <parameters>}` per tool. llama.cpp's server compiles it into a grammar,
so every answer is a valid call; `to_tool_calls` turns it back into OpenAI `tool_calls`, so the
loop and the journal see the same message shape whichever provider answered.

With code blocks ("blocks" tool mode, llama.cpp built with llguidance, as the embedded model
is), a tool's `content` argument may instead follow the call's JSON as a fenced block:

    {"tool": "write_file", "args": {"path": "hello.py"}}
    ```python
    print("hello")
    ```

A small model writes code in a code block the way it writes code asked once; inside a JSON string
it writes worse code (escapes, newlines as `\n`). The grammar (`grammar_for`) admits either form;
a block ends at the first line that starts with its fence, so a file holding lines that start
with ``` is written with a four-backtick fence.
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


BLOCK_ARGUMENT = "content"  # a tool's argument that comes as a fenced block after the JSON (blocks mode)
FENCES = ("```", "````")  # a block's fence; the longer one for content with lines starting with ```


def grammar_for(tools: list[dict]) -> str:
    """llguidance's grammar (Lark syntax, llama.cpp's `grammar` field) admitting one call of one
    of `tools`: as JSON, or, for a tool with a string `content`, its other arguments as JSON
    and the content as a fenced block after it (that tool only so)."""
    plain, heads = [], []
    for branch in response_format_for(tools)["json_schema"]["schema"]["oneOf"]:
        args = branch["properties"]["args"]
        if args.get("properties", {}).get(BLOCK_ARGUMENT, {}).get("type") != "string":
            plain.append(branch)
            continue
        without = {**args, "properties": {k: v for k, v in args["properties"].items() if k != BLOCK_ARGUMENT},
                   "required": [k for k in args.get("required", []) if k != BLOCK_ARGUMENT]}
        heads.append({**branch, "properties": {**branch["properties"], "args": without}})
    starts, rules = [], []
    if plain:
        starts.append("call")
        rules.append(f"call: %json {json.dumps({'oneOf': plain})}")
    if heads:
        starts.append("block_call")
        rules += [f"head: %json {json.dumps({'oneOf': heads})}",
                  "block_call: " + " | ".join(f'head "\\n{fence}" LANG "\\n" block{len(fence)}' for fence in FENCES),
                  "LANG: /[A-Za-z0-9_+-]*/"]
        rules += [f"block{len(fence)}[stop={json.dumps(chr(10) + fence)}]: /(?s:.*)/" for fence in FENCES]
    return "\n".join(["%llguidance {}", "start: " + " | ".join(starts), *rules]) + "\n"


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


def tool_prompt(tools: list[dict], blocks: bool = False) -> str:
    """A short system-prompt addition naming the tools and the answer format."""
    lines = ['Answer with exactly one JSON object {"tool": NAME, "args": {...}}.']
    with_block = [t["function"]["name"] for t in tools if blocks and _block_tool(t)]
    if with_block:
        lines.append(f"{' and '.join(with_block)}: give {BLOCK_ARGUMENT} after the JSON, not in it, as a code "
                     'block: the whole file, every function complete with its body. For example:\n{"tool": "write_file", "args": {"path": "hello.py"}}\n'
                     '```python\nprint("hello")\n```')
    lines.append("Tools:")
    for tool in tools:
        function = tool["function"]
        params = ", ".join((function.get("parameters") or {}).get("properties", {}))
        description = function.get("description", "").strip().splitlines()
        lines.append(f"- {function['name']}({params})" + (f": {description[0]}" if description else ""))
    return "\n".join(lines)


def _block_tool(tool: dict) -> bool:
    properties = (tool["function"].get("parameters") or {}).get("properties", {})
    return properties.get(BLOCK_ARGUMENT, {}).get("type") == "string"


def render(calls: list[dict[str, Any]], blocks: bool = False) -> str:
    """`calls` ({"tool", "args"}) as the model would write them: a lone call with a `content`
    that can go in a block goes there (in blocks mode), anything else is JSON."""
    if len(calls) != 1:
        return json.dumps(calls)
    call = calls[0]
    args = call.get("args")
    content = args.get(BLOCK_ARGUMENT) if isinstance(args, dict) else None
    fence = _fence_for(content) if blocks and isinstance(content, str) else None
    if fence is None:
        return json.dumps(call)
    head = {"tool": call["tool"], "args": {k: v for k, v in args.items() if k != BLOCK_ARGUMENT}}
    return f"{json.dumps(head)}\n{fence}\n{content}{fence}"


def _fence_for(content: str) -> str | None:
    """The fence a block holding `content` can have, if any: a block's text ends with a newline
    (the one before the closing fence), and none of its lines starts with the fence."""
    if not content.endswith("\n"):
        return None
    return next((f for f in FENCES if not re.search(f"(?m)^{f}", content)), None)


def to_tool_calls(content: str, call_id_prefix: str) -> list[dict]:
    """Parse the model's answer into OpenAI `tool_calls` with ids `<prefix>-0`, `<prefix>-1`..."""
    block_call = _block_call(content)
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


_BLOCK_AFTER = re.compile(r"\s*(````?)[^`\n]*\n(.*?\n)(?:\1)?\s*", re.DOTALL)


def _block_call(content: str) -> tuple[str, dict] | None:
    """A call whose JSON is followed by a fenced block: the block is its `content` (ending with
    the newline before the closing fence). None when the answer is not of that shape."""
    text = content.strip()
    if not text.startswith("{"):
        return None
    try:
        head, end = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return None
    block = _BLOCK_AFTER.fullmatch(text, end)
    call = _as_call(head)
    if block is None or call is None or BLOCK_ARGUMENT in call[1]:
        return None
    return call[0], {**call[1], BLOCK_ARGUMENT: block.group(2)}


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
