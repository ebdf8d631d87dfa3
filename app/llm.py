"""The model client: knows the provider and nothing else.

Everything goes through the `openai` client's Chat Completions API, so OpenAI, any
OpenAI-compatible server and the embedded offline model share one code path. Small local
models don't emit native tool calls; for them ("structured" tool mode) the tools become a
JSON schema sent as `response_format` and the answer is turned back into `tool_calls`, so
the loop above never knows the difference.

Callers run `complete` inside `ctx.run_typed`: the returned `ModelTurn` is what the journal
stores, and a replay never calls the model again.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import openai

from app import structured_tools
from app.config import Settings, settings
from app.errors import classify_llm_error
from app.models import ModelTurn, Usage


class ModelClient:
    def __init__(self, config: Settings) -> None:
        base_url, api_key, self.model, self.tool_mode = config.llm_endpoint()
        self.temperature = config.temperature
        # The openai client must not retry on its own: retries belong to the journaled step,
        # where they are bounded, backed off, and visible in the Restate UI.
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, timeout=config.llm_timeout_s, max_retries=0
        )

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                       call_id_prefix: str) -> ModelTurn:
        """One model round. Raises RetryableError, TerminalError, or a transient error."""
        request: dict[str, Any] = {"model": self.model}
        if self.temperature is not None:
            request["temperature"] = self.temperature
        if self.tool_mode == "structured":
            request["messages"] = _structured_messages(messages, tools)
            request["response_format"] = structured_tools.response_format_for(tools)
        else:
            request["messages"] = messages
            request["tools"] = tools
        try:
            response = await self._client.chat.completions.create(**request)
        except openai.OpenAIError as error:
            raise classify_llm_error(error) from error

        choice = response.choices[0].message
        usage = Usage(
            prompt_tokens=response.usage.prompt_tokens if response.usage else 0,
            completion_tokens=response.usage.completion_tokens if response.usage else 0,
            rounds=1,
        )
        message: dict[str, Any] = {"role": "assistant", "content": choice.content or ""}
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


def _structured_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rewrite a tool-calling transcript as plain chat for a model that answers in JSON.

    The tool list goes into the system prompt, earlier calls become the JSON the model wrote,
    and tool results become user turns, which every chat template understands.
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "system":
            out.append({"role": "system", "content": m["content"] + "\n\n" + structured_tools.tool_prompt(tools)})
        elif m["role"] == "assistant" and m.get("tool_calls"):
            calls = [{"tool": c["function"]["name"], "args": _loads(c["function"]["arguments"])}
                     for c in m["tool_calls"]]
            out.append({"role": "assistant", "content": json.dumps(calls[0] if len(calls) == 1 else calls)})
        elif m["role"] == "tool":
            out.append({"role": "user", "content": f"Tool result:\n{m['content']}"})
        else:
            out.append({"role": m["role"], "content": m.get("content") or ""})
    return out


def _loads(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


@lru_cache(maxsize=1)
def model_client() -> ModelClient:
    """One client per worker process; it holds the HTTP connection pool."""
    return ModelClient(settings())
