"""The model client: knows the provider and nothing else.

Everything goes through the `openai` client's Chat Completions API, so OpenAI, any
OpenAI-compatible server and the embedded offline model share one code path. Small local
models don't emit native tool calls; for them ("structured" tool mode) the tools become a
JSON schema sent as `response_format` and the answer is turned back into `tool_calls`, so
the loop above never knows the difference.

Callers run `complete` inside `ctx.run_typed`: the returned `ModelTurn` is what the journal
stores, and a replay never calls the model again.

Every answer streams past a `Watch` (app/brain/degeneration.py): an answer that loops, or runs
past its bounds, is cut (the stream is closed, so the server stops generating) and the round is
asked once more with other sampling; when that answer is cut too, the turn carries a
`format_error` that tells the model, and the loop goes on. Either way the `ModelTurn` is what the
journal stores, so a replay never meets a different answer.

Live text: when AGENT_DELTA_URL is set (the web UI's /internal/deltas) and the caller names its
session, the text is also posted there as it arrives, for watchers only. That is best effort and
never journaled: the `ModelTurn` is assembled from the same chunks and is exactly what the
non-streaming request returns, so the journal does not depend on it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import httpx

from app import structured_tools
from app.brain.degeneration import OFFLINE_MAX_SECONDS, Bounds, Cut, Watch
from app.config import Settings, settings
from app.context import estimate
from app.errors import classify_llm_error
from app.models import ModelTurn, Usage

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

# `openai` is imported where a model is called, not with this module: it is most of the worker's
# import time, and on a host that scales to zero every request that makes no model call (state
# reads, sandbox operations, event appends) starts a fresh worker.


CUT_OFF = ("your answer was cut off after {tokens} tokens, the most one answer may take, so nothing in it "
           "was done. Make it shorter: say less, or split a long file into smaller modules.")
CUT_OFF_KEPT = 200  # characters of a cut-off answer kept in the transcript
LOOPED = ("your answer degenerated and was cut: {reason}, so nothing in it was done. Answer again, "
          "and write each thing once.")
NO_END = ("your answer was cut: {reason}, so nothing in it was done. Make it shorter: say less, or split "
          "a long file into smaller modules.")

# A cut answer is asked again with other sampling: an answer that looped at temperature 0 loops
# again on the same prompt, so the second one samples at RETRY_TEMPERATURE. The embedded model
# gets the rest of Qwen's recommended sampling for its small instruct models (top_p 0.8, top_k 20,
# repetition penalty 1.1) and llama.cpp's DRY sampler, which penalises extending a sequence that
# already occurred. Measured on the 1.5B with its answer prefilled deep in a run of backslashes:
# greedy, and the sampling above without DRY, kept writing backslashes; with DRY it closed the
# regex and the file within the 40 tokens asked, at allowed lengths 4 and 8 alike, so 8 (a row of
# a few zeros is left alone). The breakers are llama.cpp's own plus the JSON escape `\n`, so that
# in structured mode repeated lines of code (similar assertions) are not penalised, only a run
# within a line.
RETRY_TEMPERATURE = 0.7
OFFLINE_RETRY: dict[str, Any] = {
    "top_p": 0.8,
    "extra_body": {"top_k": 20, "repeat_penalty": 1.1,
                   "dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 8,
                   "dry_penalty_last_n": 1024,  # this server refuses -1 ("the whole context")
                   "dry_sequence_breakers": ["\n", "\\n", ":", "\"", "*"]},
}


class ModelClient:
    def __init__(self, config: Settings, bounds: Bounds | None = None) -> None:
        base_url, api_key, self.model, self.tool_mode = config.llm_endpoint()
        self.temperature = config.sampling_temperature()
        self.max_tokens = config.answer_token_limit()
        # The embedded model gets llama.cpp's sampling parameters on a retry; a provider would
        # reject them.
        self.offline = config.offline()
        # How long an answer may run (app/brain/degeneration.py): the embedded model's time is
        # bounded too, a provider's is not ours to judge.
        seconds = config.round_max_seconds or (OFFLINE_MAX_SECONDS if self.offline else None)
        self.bounds = bounds or Bounds(max_chars=config.answer_max_chars, max_seconds=seconds)
        # max_retries=0: retries belong to the journaled step (retry.model_step), where they are
        # bounded, backed off and visible in the Restate UI. The client's own retries (2 by
        # default, with their own sleeps) would multiply with Restate's: every step attempt
        # would be up to three requests, and its waits would hide inside one attempt.
        import openai

        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, timeout=config.llm_timeout_s, max_retries=0
        )
        # Where live text goes (the web UI), or "" for nowhere, and the secret the UI takes it
        # with (AGENT_DELTA_SECRET); see LiveText.
        self.delta_url = config.delta_url or ""
        self.delta_secret = config.delta_secret
        self._deltas = httpx.AsyncClient(timeout=DELTA_TIMEOUT_S, trust_env=False)
        # The server's tokenizer (see count_tokens): its root URL, or None when there is none.
        self._tokenizer_root = base_url.rstrip("/").removesuffix("/v1") if base_url else None
        self._tokenizer = httpx.AsyncClient(timeout=TOKENIZE_TIMEOUT_S, trust_env=False)

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                       call_id_prefix: str, *, session_id: str | None = None,
                       task_id: str | None = None, label: str | None = None,
                       temperature: float | None = None) -> ModelTurn:
        """One model round. Raises RetryableError, TerminalError, or a transient error.

        `session_id`, `task_id` and `label` (the journal step's name) only address the live
        text; they never change the request or the result. `temperature`: this round's, in
        place of the configured one (a fresh sample of a file; app/loop.py). No `tools`:
        a plain answer, with no tool schema or grammar.

        An answer cut for degenerating is asked once more with other sampling; the turn's usage
        counts both answers' tokens.
        """
        import openai

        request = self._request(messages, tools, temperature)

        def live() -> LiveText | None:  # one per answer: a retried answer starts its text over
            if self.delta_url and session_id:
                return LiveText(self._deltas, self.delta_url, self.delta_secret, session_id, task_id, label)
            return None

        try:
            return await self._watched(request, tools, call_id_prefix, live)
        except openai.OpenAIError as error:
            outcome = classify_llm_error(error)
            if outcome is error:
                raise  # transient as it is: Restate retries it with the step's backoff
            raise outcome from error

    async def _watched(self, request: dict[str, Any], tools: list[dict[str, Any]], call_id_prefix: str,
                       live: Callable[[], LiveText | None]) -> ModelTurn:
        """The round's answer; one that was cut is asked once more, with other sampling."""
        first = await self._stream(request, Watch(self.bounds), live())
        if first.completion is not None:
            return self._turn(first.completion, call_id_prefix, plain=not tools)
        prompt_tokens = estimate(request["messages"], tools)  # a cut answer never gets its usage
        bounds = self._bounds_after(first)
        if bounds is None:  # the first answer took the round's whole time
            return _cut_turn(first, first.usage(prompt_tokens))
        second = await self._stream(self._resampled(request), Watch(bounds), live())
        if second.completion is None:
            return _cut_turn(second, first.usage(prompt_tokens).plus(second.usage(prompt_tokens)))
        turn = self._turn(second.completion, call_id_prefix, plain=not tools)
        return turn.model_copy(update={"usage": turn.usage.plus(first.usage(turn.usage.prompt_tokens))})

    def _request(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                 temperature: float | None) -> dict[str, Any]:
        request: dict[str, Any] = {"model": self.model}
        if temperature is None:
            temperature = self.temperature
        if temperature is not None:
            request["temperature"] = temperature
        if self.max_tokens is not None:
            request["max_tokens"] = self.max_tokens
        if not tools:
            request["messages"] = messages
        elif self.tool_mode == "structured":
            request["messages"] = _structured_messages(messages, tools)
            request["response_format"] = structured_tools.response_format_for(tools)
        else:
            request["messages"] = messages
            request["tools"] = tools
        return request

    def _resampled(self, request: dict[str, Any]) -> dict[str, Any]:
        """The request again, sampled otherwise (see RETRY_TEMPERATURE). A provider that was
        sent no temperature samples at its default already, and some models refuse one."""
        again = dict(request)
        if "temperature" in request or self.offline:
            again["temperature"] = max(request.get("temperature") or 0.0, RETRY_TEMPERATURE)
        if self.offline:
            again.update(OFFLINE_RETRY)
        return again

    def _bounds_after(self, first: Streamed) -> Bounds | None:
        """The second answer's bounds: the time the first one left, or None when it left none.
        The time bound is the round's, so that a round takes no longer for being retried."""
        if self.bounds.max_seconds is None:
            return self.bounds
        left = self.bounds.max_seconds - first.seconds
        return replace(self.bounds, max_seconds=left) if left > 0 else None

    async def _stream(self, request: dict[str, Any], watch: Watch, live: LiveText | None) -> Streamed:
        """The request, streamed past `watch` (and to `live`); assembled into the completion,
        or cut as soon as the watch says so."""
        from openai.lib.streaming.chat import ChatCompletionStreamState

        state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
        streamed = Streamed()
        try:
            stream = await self._client.chat.completions.create(
                **request, stream=True, stream_options={"include_usage": True})
            try:
                async for chunk in stream:
                    state.handle_chunk(chunk)
                    text = _streamed_text(chunk)
                    streamed.add(text)
                    if live is not None:
                        live.add(text)
                    if (cut := watch.feed(text)) is not None:
                        streamed.cut = cut
                        break
            finally:
                await stream.close()  # after a cut, the server sees us go and stops generating
        finally:
            if live is not None:
                live.close()
        streamed.seconds = watch.seconds
        if streamed.cut is None:
            import openai

            try:
                streamed.completion = state.get_final_completion()
            except openai.LengthFinishReasonError as error:
                # The stream state refuses an answer cut at max_tokens; `_turn` tells the model.
                streamed.completion = error.completion
        return streamed

    def _turn(self, response: ChatCompletion, call_id_prefix: str, plain: bool) -> ModelTurn:
        choice = response.choices[0].message
        usage = Usage(
            prompt_tokens=response.usage.prompt_tokens if response.usage else 0,
            completion_tokens=response.usage.completion_tokens if response.usage else 0,
            rounds=1,
        )
        message: dict[str, Any] = {"role": "assistant", "content": choice.content or ""}
        if response.choices[0].finish_reason == "length":
            # Cut off at max_tokens: a half-written call must not run (a truncated write_file
            # would pass for a whole one in native mode), nor fill the next prompt.
            message["content"] = message["content"][:CUT_OFF_KEPT] + " … [cut off]"
            return ModelTurn(message=message, usage=usage, format_error=CUT_OFF.format(tokens=usage.completion_tokens))
        if plain:
            return ModelTurn(message=message, usage=usage)
        if self.tool_mode == "structured":
            try:
                message["tool_calls"] = structured_tools.to_tool_calls(choice.content or "", call_id_prefix)
            except structured_tools.StructuredAnswerError as error:
                return ModelTurn(message=message, usage=usage, format_error=str(error))
        elif choice.tool_calls:
            message["tool_calls"] = [
                {"id": c.id or f"{call_id_prefix}-{i}", "type": "function",
                 "function": {"name": c.function.name, "arguments": c.function.arguments or ""}}
                for i, c in enumerate(choice.tool_calls)
                if c.type == "function"
            ]
        return ModelTurn(message=message, usage=usage)

    async def count_tokens(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> int | None:
        """How many tokens the server's own tokenizer makes of this request's prompt, or None
        when the server has none (OpenAI, most proxies). llama.cpp's server renders the request
        with the model's chat template (`/apply-template`, the same parsing as a completion) and
        tokenizes it (`/tokenize`); both answer at once, even while a completion runs.
        Transport errors and 5xx raise, so the caller's step retries rather than guesses."""
        if self._tokenizer_root is None:
            return None
        body: dict[str, Any] = {"messages": messages}
        if self.tool_mode == "structured":
            body["messages"] = _structured_messages(messages, tools)
        else:
            body["tools"] = tools
        template = await self._tokenizer.post(f"{self._tokenizer_root}/apply-template", json=body)
        if 400 <= template.status_code < 500 or template.status_code == 501:
            self._tokenizer_root = None  # not llama.cpp (or it cannot render this): estimate from now on
            return None
        template.raise_for_status()
        tokens = await self._tokenizer.post(f"{self._tokenizer_root}/tokenize",
                                            json={"content": template.json()["prompt"]})
        tokens.raise_for_status()
        return len(tokens.json()["tokens"])


@dataclass
class Streamed:
    """One streamed answer: the whole completion, or why it was cut and how far it got."""

    completion: ChatCompletion | None = None
    cut: Cut | None = None
    head: str = ""  # the first CUT_OFF_KEPT characters
    pieces: int = 0  # chunks with text; llama.cpp streams one token per chunk
    seconds: float = 0.0  # from its first text to its last

    def add(self, text: str) -> None:
        if text:
            self.pieces += 1
            if len(self.head) < CUT_OFF_KEPT:
                self.head = (self.head + text)[:CUT_OFF_KEPT]

    def usage(self, prompt_tokens: int) -> Usage:
        """What a cut answer cost: its pieces for its tokens (the stream never got to its usage),
        the prompt's as given, and no round of its own (the round is the turn's)."""
        return Usage(prompt_tokens=prompt_tokens, completion_tokens=self.pieces, rounds=0)


def _cut_turn(streamed: Streamed, usage: Usage) -> ModelTurn:
    """The turn of a round whose last answer was cut: nothing in it runs, and the model is told."""
    assert streamed.cut is not None
    message = {"role": "assistant", "content": streamed.head + " … [cut off]"}
    error = (LOOPED if streamed.cut.kind == "loop" else NO_END).format(reason=streamed.cut.reason)
    return ModelTurn(message=message, usage=usage.plus(Usage(rounds=1)), format_error=error)


def _streamed_text(chunk: ChatCompletionChunk) -> str:
    """The text a chunk adds: content, or a tool call's name and arguments as they come."""
    parts: list[str] = []
    for choice in chunk.choices[:1]:
        parts.append(choice.delta.content or "")
        for call in choice.delta.tool_calls or []:
            if call.function is not None and call.function.name:
                parts.append(f"\n→ {call.function.name} ")
            if call.function is not None and call.function.arguments:
                parts.append(call.function.arguments)
    return "".join(parts)


DELTA_INTERVAL_S = 0.1  # how often live text is posted while a round streams
TOKENIZE_TIMEOUT_S = 10.0  # llama.cpp tokenizes 30 kB in about 30 ms
DELTA_TIMEOUT_S = 1.0  # a UI that is slow to answer loses live text, never the model call
DELTA_SECRET_HEADER = "x-delta-secret"  # ui/server.py checks it against AGENT_DELTA_SECRET
_senders: set[asyncio.Task[None]] = set()  # posting tasks, kept referenced until they finish


class LiveText:
    """The live text of one model call attempt, posted in batches to the web UI.

    One background task posts the batches in order and swallows every failure: the model call
    never waits for it. `attempt` is a fresh nonce per call, so a watcher can tell a retried
    round (which starts its text over) from the continuation of the same one. Each post carries
    the shared secret: the UI takes deltas from nobody else, loopback callers included.
    """

    def __init__(self, client: httpx.AsyncClient, url: str, secret: str, session_id: str, task_id: str | None,
                 label: str | None) -> None:
        self._client = client
        self._url = url
        self._secret = {DELTA_SECRET_HEADER: secret}
        self._head = {"session": session_id, "task_id": task_id, "ref": label, "attempt": uuid.uuid4().hex[:12]}
        self._pending: list[str] = []
        self._last_flush = time.monotonic()
        self._batches: asyncio.Queue[str | None] = asyncio.Queue()
        sender = asyncio.create_task(self._send_all())
        _senders.add(sender)
        sender.add_done_callback(_senders.discard)

    def add(self, text: str) -> None:
        if text:
            self._pending.append(text)
        if time.monotonic() - self._last_flush >= DELTA_INTERVAL_S:
            self._flush()

    def close(self) -> None:
        self._flush()
        self._batches.put_nowait(None)

    def _flush(self) -> None:
        if self._pending:
            self._batches.put_nowait("".join(self._pending))
            self._pending.clear()
        self._last_flush = time.monotonic()

    async def _send_all(self) -> None:
        while (text := await self._batches.get()) is not None:
            try:
                await self._client.post(self._url, json={**self._head, "text": text}, headers=self._secret)
            except (httpx.HTTPError, httpx.InvalidURL):
                pass  # best effort: the journaled model_round event carries the text anyway


def _structured_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rewrite a tool-calling transcript as plain chat for a model that answers in JSON.

    The tool list goes into the system prompt, earlier calls become the JSON the model wrote,
    and tool results become user turns, which every chat template understands. An earlier
    call is sent as the very text the model wrote whenever that text still says the same calls
    (context fitting may have shortened them): the server's prompt cache holds exactly those
    tokens, and re-serialised JSON (other spacing, escapes) would make it evaluate the whole
    answer again, a whole written file, on the next round.
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "system":
            out.append({"role": "system", "content": m["content"] + "\n\n" + structured_tools.tool_prompt(tools)})
        elif m["role"] == "assistant" and m.get("tool_calls"):
            calls = [{"tool": c["function"]["name"], "args": _loads(c["function"]["arguments"])}
                     for c in m["tool_calls"]]
            raw = m.get("content") or ""
            text = raw if _says(raw, calls) else json.dumps(calls[0] if len(calls) == 1 else calls)
            out.append({"role": "assistant", "content": text})
        elif m["role"] == "tool":
            out.append({"role": "user", "content": f"Tool result:\n{m['content']}"})
        else:
            out.append({"role": m["role"], "content": m.get("content") or ""})
    return out


def _says(raw: str, calls: list[dict[str, Any]]) -> bool:
    """Whether the model's text `raw` holds exactly `calls`."""
    try:
        parsed = structured_tools.to_tool_calls(raw, "check")
    except structured_tools.StructuredAnswerError:
        return False
    return [{"tool": c["function"]["name"], "args": _loads(c["function"]["arguments"])} for c in parsed] == calls


def _loads(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


@lru_cache(maxsize=1)
def model_client() -> ModelClient:
    """One client per worker process; it holds the HTTP connection pool."""
    return ModelClient(settings())
