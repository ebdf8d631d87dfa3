"""A scripted OpenAI-compatible Chat Completions server, run as a subprocess by the tests.

    python -m tests.fakes.scripted_llm --port P --script tests.fakes.scripts:NAME --log PATH

A script is a plain function `(request: dict) -> Reply | Sequence[Reply]` that looks only at the
request (in practice its messages). Because it is pure, a request replayed after a crash gets the
same answer, just as the journal would have recorded it. A sequence of replies stands for
successive attempts of the very same request: `[error(429, retry_after=1), text("ok")]` fails once
and then answers. (The attempt counts live in this process, so they restart when it does.)

Every request is appended to the JSONL log before it is answered (and before any delay), flushed
and fsynced, so a test can count model rounds and can kill the worker while a call is in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib
import json
import os
import re
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

DEFAULT_SCRIPTS = "tests.fakes.scripts"


@dataclass(frozen=True)
class Reply:
    """One scripted answer: text, tool calls, or an HTTP error; optionally after a delay.

    `tool_calls` holds (name, arguments) pairs. Arguments given as a dict are sent as JSON; a
    string is sent as it is, so a script can send malformed arguments on purpose.
    """

    content: str | None = None
    tool_calls: tuple[tuple[str, dict[str, Any] | str], ...] = ()
    status: int = 200
    retry_after: float | None = None
    error_message: str = "scripted error"
    delay_s: float = 0.0
    cut_off: bool = False  # answered as if max_tokens ran out: finish_reason "length"
    piece_delay_s: float = 0.0  # streamed: a pause before each piece of content, as a model's tokens come

    def summary(self) -> dict[str, Any]:
        """What the request log records about this reply: the fields that say something."""
        summary = {k: v for k, v in asdict(self).items() if v not in (None, (), [], 0.0)}
        if self.status == 200:
            del summary["error_message"]
        return summary


Script = Callable[[dict[str, Any]], "Reply | Sequence[Reply]"]


def load_script(spec: str) -> Script:
    """The script named `module:NAME`; a bare `NAME` is looked up in tests.fakes.scripts."""
    module_name, _, name = spec.rpartition(":")
    return getattr(importlib.import_module(module_name or DEFAULT_SCRIPTS), name)


def build_app(script: Script, log_path: Path, max_prompt_chars: int | None = None,
              context_tokens: int | None = None) -> Starlette:
    """The ASGI app: POST /v1/chat/completions answers from `script`; GET /health says ok.

    With `max_prompt_chars`, a request whose messages and tools are longer than that is refused
    with 400, as a model server refuses a prompt over its context window. With `context_tokens`,
    the server also has a tokenizer like llama.cpp's (`/apply-template`, `/tokenize`; see
    `tokenize`), and refuses a prompt of more tokens than that; the log records each request's
    `prompt_tokens`."""
    attempts: Counter[str] = Counter()

    async def chat_completions(request: Request) -> Response:
        body = await request.json()
        digest = _digest(body.get("messages", []))
        attempt = attempts[digest]
        attempts[digest] += 1
        prompt_chars = len(json.dumps(body.get("messages", []))) + len(json.dumps(body.get("tools") or []))
        prompt_tokens = len(tokenize(apply_template(body)))
        try:
            if max_prompt_chars is not None and prompt_chars > max_prompt_chars:
                reply = Reply(status=400, error_message=f"the request has {prompt_chars} characters, more than "
                                                        f"this server's context ({max_prompt_chars})")
            elif context_tokens is not None and prompt_tokens > context_tokens:
                reply = Reply(status=400, error_message=f"the request ({prompt_tokens} tokens) exceeds the "
                                                        f"available context size ({context_tokens} tokens)")
            else:
                reply = _pick(script(body), attempt)
        except Exception as exc:  # a broken script is a test bug: make it loud, not retried
            traceback.print_exc()
            reply = Reply(status=400, error_message=f"scripted_llm: the script raised {exc!r}")
        _append_log(log_path, {"time": time.time(), "attempt": attempt, "request": body,
                               "prompt_tokens": prompt_tokens, "reply": reply.summary()})
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.status != 200:
            return _error_response(reply)
        model = body.get("model", "scripted")
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = _stream(reply, digest, model, body.get("messages", []), include_usage)
            return StreamingResponse(chunks, media_type="text/event-stream")
        return JSONResponse(_completion(reply, digest, model, body.get("messages", [])))

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def template(request: Request) -> Response:
        return JSONResponse({"prompt": apply_template(await request.json())})

    async def tokens(request: Request) -> Response:
        return JSONResponse({"tokens": [len(t) for t in tokenize((await request.json())["content"])]})

    routes = [Route("/v1/chat/completions", chat_completions, methods=["POST"]), Route("/health", health)]
    if context_tokens is not None:
        routes += [Route("/apply-template", template, methods=["POST"]), Route("/tokenize", tokens, methods=["POST"])]
    return Starlette(routes=routes)


# --- a tokenizer, for a context window in tokens -------------------------------------------------

# Like a real BPE vocabulary, prose packs several characters into a token and digits and
# symbols take one each (Qwen's tokenizer splits numbers into digits), so a counter that
# assumes 3 characters a token is wrong for numeric output, as it is with the real model.
_TOKEN = re.compile(r"[A-Za-z]{1,4}|\s+|.", re.DOTALL)


def tokenize(prompt: str) -> list[str]:
    return _TOKEN.findall(prompt)


def apply_template(body: dict[str, Any]) -> str:
    """The prompt a chat request becomes, in ChatML as Qwen's template writes it."""
    parts = []
    if body.get("tools"):
        parts.append(f"<|im_start|>tools\n{json.dumps(body['tools'])}<|im_end|>\n")
    for message in body.get("messages", []):
        content = message.get("content") or ""
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        calls = json.dumps(message["tool_calls"]) if message.get("tool_calls") else ""
        parts.append(f"<|im_start|>{message.get('role')}\n{content}{calls}<|im_end|>\n")
    return "".join(parts) + "<|im_start|>assistant\n"


# --- OpenAI response shapes ----------------------------------------------------------------------


def _completion(reply: Reply, digest: str, model: str, messages: list[Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
            for call_id, name, args in _tool_calls(reply, digest)
        ]
    return {
        "id": f"chatcmpl-{digest[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": _finish_reason(reply)}],
        "usage": _usage(reply, messages),
    }


async def _stream(
    reply: Reply, digest: str, model: str, messages: list[Any], include_usage: bool
) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format, ending with `data: [DONE]`."""

    def event(delta: dict[str, Any] | None, finish_reason: str | None = None,
              usage: dict[str, int] | None = None) -> str:
        chunk: dict[str, Any] = {
            "id": f"chatcmpl-{digest[:24]}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model,
            "choices": [] if delta is None else
            [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            chunk["usage"] = usage
        return f"data: {json.dumps(chunk)}\n\n"

    yield event({"role": "assistant", "content": ""})
    async for piece in _paced(_pieces(reply.content or ""), reply.piece_delay_s):
        yield event({"content": piece})
    for index, (call_id, name, args) in enumerate(_tool_calls(reply, digest)):
        yield event({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                     "function": {"name": name, "arguments": ""}}]})
        for piece in _pieces(args):
            yield event({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield event({}, _finish_reason(reply))
    if include_usage:  # like OpenAI: a last chunk with no choices, only the usage
        yield event(None, usage=_usage(reply, messages))
    yield "data: [DONE]\n\n"


async def _paced(pieces: list[str], delay_s: float) -> AsyncIterator[str]:
    """`pieces`, each after `delay_s`; the server's log says so when the client goes away before
    the last one (it cut the answer short)."""
    sent = 0
    try:
        for piece in pieces:
            if delay_s:
                await asyncio.sleep(delay_s)
            yield piece
            sent += 1
    finally:
        if sent < len(pieces):
            print(f"scripted_llm: the client went away after {sent} of {len(pieces)} pieces", flush=True)


def _error_response(reply: Reply) -> Response:
    headers = {} if reply.retry_after is None else {"retry-after": f"{reply.retry_after:g}"}
    if reply.status == 429:
        kind = "rate_limit_error"
    elif reply.status < 500:
        kind = "invalid_request_error"
    else:
        kind = "server_error"
    error = {"message": reply.error_message, "type": kind, "param": None, "code": None}
    return JSONResponse({"error": error}, status_code=reply.status, headers=headers)


def _tool_calls(reply: Reply, digest: str) -> list[tuple[str, str, str]]:
    """(id, name, arguments JSON) per call; ids derive from the request so replays match."""
    return [
        (f"call_{digest[:12]}_{i}", name, args if isinstance(args, str) else json.dumps(args))
        for i, (name, args) in enumerate(reply.tool_calls)
    ]


def _finish_reason(reply: Reply) -> str:
    if reply.cut_off:
        return "length"
    return "tool_calls" if reply.tool_calls else "stop"


def _usage(reply: Reply, messages: list[Any]) -> dict[str, int]:
    # About four characters per token: rough, but it grows with the conversation as real ones do.
    prompt = max(1, len(json.dumps(messages)) // 4)
    completion = max(1, (len(reply.content or "") + len(json.dumps(reply.tool_calls))) // 4)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _pieces(text: str, size: int = 8) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def _pick(replies: Reply | Sequence[Reply], attempt: int) -> Reply:
    # Not `isinstance(replies, Reply)`: run with -m, this module is __main__, and the scripts'
    # Reply is the class of tests.fakes.scripted_llm, a different object.
    if isinstance(replies, Sequence):
        return replies[min(attempt, len(replies) - 1)]
    return replies


def _digest(messages: list[Any]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


def _append_log(log_path: Path, entry: dict[str, Any]) -> None:
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")
        log.flush()
        os.fsync(log.fileno())


def main(argv: list[str] | None = None) -> None:
    """Serve a script on 127.0.0.1 until killed."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--script", required=True,
                        help=f"module:NAME, or a NAME in {DEFAULT_SCRIPTS}")
    parser.add_argument("--log", type=Path, required=True, help="JSONL file, one line per request")
    parser.add_argument("--max-prompt-chars", type=int, default=None,
                        help="refuse (400) a prompt longer than this, as a server refuses one over its context")
    parser.add_argument("--context-tokens", type=int, default=None,
                        help="serve a tokenizer, and refuse (400) a prompt of more tokens than this")
    args = parser.parse_args(argv)

    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    # A load test opens hundreds of connections at once; hypercorn's default queue (100) would
    # overflow and reset some of them, which the worker then sees as model errors.
    config.backlog = 1024
    app = build_app(load_script(args.script), args.log, args.max_prompt_chars, args.context_tokens)
    asyncio.run(serve(app, config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
