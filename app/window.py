"""Keep every model request within the context window, durably.

A step's messages grow every round, and a model server refuses a prompt longer than its
window (llama.cpp answers 400, which would fail the task). Before each round `StepWindow.fit`
measures the prompt and, only when it is over budget, makes it smaller in three stages:

1. **Pointers.** Every tool output before the latest round is saved, whole, to
   `.agent/context/` in the workspace and replaced by a pointer (its first line, its size,
   the file): the model can `read_file` it again. Long arguments of older calls (a file it
   wrote) become a note of their size.
2. **Summary.** Still too big: the rounds before the latest are summarised by the model in a
   journaled step of their own, and the summary stands in for them from then on.
3. **Clip.** Still too big (the latest round alone is): its outputs keep head and tail.

All at once rather than one output at a time: a prompt changed at one place is re-read by
the server from there on (llama.cpp's prompt cache), so it should change rarely and by a lot.

Durability. Every input to a decision is a journaled value: the messages (rebuilt from
journaled rounds and tool calls), the token counts (a `ctx.run_typed` step asking the
server's tokenizer), the saves (durable calls to the Sandbox, exactly once per operation id)
and the summaries (a journaled model round). So a replay sends the very same prompts, and a
worker killed inside a summary re-runs that one model call only, never one that completed.
The planner's view of a long conversation is summarised the same way (`conversation_view`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from restate import TerminalError

from app import context, retry
from app import sandbox_service as sandbox
from app.errors import is_cancellation
from app.llm import model_client
from app.models import ConversationTurn, ModelTurn, WriteFileIn
from app.taskrun import TaskRun

SAVED_DIR = ".agent/context"  # where outputs moved out of the context are kept, in the workspace
MAX_SUMMARY_CHARS = 2_000
CLIP_ATTEMPTS = 3  # counted clips of the latest round before cutting by the certain bound
# Earlier rounds are summarised once they take more than 1/SUMMARY_SHARE of the budget; below
# that, a summary would save little and the latest round's outputs are clipped instead.
SUMMARY_SHARE = 4
SUMMARY_PROMPT = (
    "You compress the memory of a coding agent. Summarise {what} below for the agent that "
    "goes on with the work: what was done, which files and commands matter, results, errors "
    "and what is left. Keep file names, numbers and error messages exact. At most 200 words. "
    "Call record_summary."
)
SUMMARY_TOOL: dict[str, Any] = {"type": "function", "function": {
    "name": "record_summary", "description": "Submit the summary.",
    "parameters": {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}}}


async def count_tokens(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> int:
    """The request's tokens by the server's tokenizer, else the estimate. Run as a step."""
    counted = await model_client().count_tokens(messages, tools)
    return context.estimate(messages, tools) if counted is None else counted


async def measure(task: TaskRun, messages: list[dict[str, Any]], tools: list[dict[str, Any]], label: str,
                  limit: int) -> int:
    """Tokens of a request, exact enough to compare with `limit`: its certain bound when that is
    within the limit (no hop), else a journaled count, so a replay takes the same decision."""
    bound = context.upper_bound(messages, tools)
    if bound <= limit:
        return bound
    return await task.ctx.run_typed(f"{label}: count tokens", count_tokens, retry.model_step(int), messages, tools)


@dataclass
class StepWindow:
    """One step's context: which outputs became pointers, and the summary of early rounds."""

    task: TaskRun
    number: int
    tools: list[dict[str, Any]]
    pointers: dict[int, str] = field(default_factory=dict)  # message index → its pointer
    saved: dict[int, str | None] = field(default_factory=dict)  # message index → file, None: unsaved
    shortened: set[int] = field(default_factory=set)  # older assistant messages with short arguments
    summary: str = ""
    summarised_upto: int = 2  # messages[2:summarised_upto] are covered by `summary`

    @property
    def budget(self) -> int:
        return context.prompt_budget(self.task.config.context_tokens)

    async def fit(self, messages: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
        """The prompt for the round named `label`: `messages` as they are when they fit, else
        made smaller. `messages` itself is only ever appended to (a sandbox notice)."""
        view = self.view(messages)
        tokens = await self.count(view, self.tools, label)
        if tokens <= self.budget:
            return view
        latest = context.latest_round(messages)
        if await self._point(messages, latest):
            view = self.view(messages)
            tokens = await self.count(view, self.tools, f"{label}, with pointers")
            if tokens <= self.budget:
                return view
        earlier = [m for i, m in self._indexed_view(messages) if i is not None and self.summarised_upto <= i < latest]
        if earlier and await measure(self.task, earlier, [], f"{label}, earlier rounds",
                                     self.budget // SUMMARY_SHARE) > self.budget // SUMMARY_SHARE:
            await self._summarise(messages, latest, label)
            view = self.view(messages)
            tokens = await self.count(view, self.tools, f"{label}, with a summary")
            if tokens <= self.budget:
                return view
        return await self._clip(messages, latest, tokens, label)

    def view(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What the model is sent: the summary for early rounds, pointers for old outputs."""
        return [m for _, m in self._indexed_view(messages)]

    async def count(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], label: str) -> int:
        return await measure(self.task, messages, tools, label, self.budget)

    def _indexed_view(self, messages: list[dict[str, Any]]) -> list[tuple[int | None, dict[str, Any]]]:
        view: list[tuple[int | None, dict[str, Any]]] = list(enumerate(messages[:2]))
        if self.summary:
            rounds = sum(1 for m in messages[2:self.summarised_upto] if m.get("role") == "assistant")
            view.append((None, {"role": "user", "content": f"Summary of this step's rounds 1-{rounds}:\n{self.summary}"}))
        for i in range(self.summarised_upto, len(messages)):
            message = messages[i]
            if i in self.pointers:
                message = {**message, "content": self.pointers[i]}
            elif i in self.shortened:
                message = {**message, "tool_calls": [context.shorter_call(c) for c in message["tool_calls"]]}
            view.append((i, message))
        return view

    async def _point(self, messages: list[dict[str, Any]], latest: int) -> bool:
        """Stage 1: pointers for every tool output before the latest round. Whether any changed."""
        changed = False
        for i in range(self.summarised_upto, latest):
            message = messages[i]
            if message.get("role") == "assistant" and message.get("tool_calls") and i not in self.shortened:
                self.shortened.add(i)
                changed = True
            content = message.get("content") or ""
            if message.get("role") == "tool" and i not in self.pointers and len(content) >= context.POINTER_MIN:
                path, why = await self._save(messages, i)
                self.pointers[i] = context.pointer(content, path, why)
                changed = True
        return changed

    async def _save(self, messages: list[dict[str, Any]], index: int) -> tuple[str | None, str]:
        """Save a tool output, whole, where read_file finds it: (its path or None, why not).

        A durable call to the Sandbox with a deterministic operation id: exactly once, and a
        replay reads the result from the journal."""
        if index in self.saved:
            return self.saved[index], "it was not saved earlier"
        task = self.task
        # Named by position, not by task: a step's pointers die with the step, so the next
        # task's same step overwrites them and the directory stays bounded.
        path = f"{SAVED_DIR}/step{self.number}-message{index}.txt"
        try:
            out = await task.ctx.object_call(
                sandbox.write_file, key=task.session_id,
                arg=WriteFileIn(op_id=f"{task.task_id}/s{self.number}/m{index}/saved", path=path,
                                content=messages[index].get("content") or ""))
        except TerminalError as error:
            if is_cancellation(error):
                raise
            self.saved[index] = None
            return None, error.message
        if out.notice:
            # The sandbox was replaced under this save: the model must not go on believing
            # in files that are gone (the same notice a tool result would carry).
            messages.append({"role": "user", "content": sandbox.sandbox_says(out.notice)})
        self.saved[index] = path if out.ok else None
        return self.saved[index], out.detail

    async def _summarise(self, messages: list[dict[str, Any]], latest: int, label: str) -> None:
        """Stage 2: the rounds before the latest one become (part of) the summary."""
        earlier = [m for i, m in self._indexed_view(messages) if i is not None and 2 <= i < latest]
        text = context.transcript(earlier)
        if self.summary:
            text = f"Summary so far:\n{self.summary}\n\nThen:\n{text}"
        self.summary = await summarise(self.task, f"{label}: summarise earlier rounds",
                                       "the earlier rounds of this step", text,
                                       f"{self.task.task_id}-s{self.number}-summary{latest}")
        self.summarised_upto = latest

    async def _clip(self, messages: list[dict[str, Any]], latest: int, tokens: int,
                    label: str) -> list[dict[str, Any]]:
        """Stage 3: cut the largest contents (the latest round's outputs, saved first) to fit."""
        for i in range(latest, len(messages)):
            if messages[i].get("role") == "tool" and len(messages[i].get("content") or "") >= context.POINTER_MIN:
                await self._save(messages, i)
        indexed = self._indexed_view(messages)
        view = [m for _, m in indexed]
        # A character cut removes at most about one token (digits are a token each), so the first
        # cut is the excess itself: never more than needed. Later cuts use the rate measured.
        per_char = 1.0
        for attempt in range(1, CLIP_ATTEMPTS + 1):
            chars = _content_chars(view)
            view = self._cut(indexed, view, int((tokens - self.budget) / per_char * (1 if attempt == 1 else 1.1)) + 50)
            counted = await self.count(view, self.tools, f"{label}, clipped ({attempt})")
            if counted <= self.budget:
                return view
            per_char = max(0.05, (tokens - counted) / max(1, chars - _content_chars(view)))
            tokens = counted
        # The certain bound: one token per byte at most, so this fits whatever the tokenizer.
        return self._cut(indexed, view, context.upper_bound(view, self.tools) - self.budget)

    def _cut(self, indexed: list[tuple[int | None, dict[str, Any]]], view: list[dict[str, Any]],
             excess: int) -> list[dict[str, Any]]:
        """`view` with `excess` characters cut from its largest contents (never the system prompt)."""
        view = list(view)
        while excess > 0:
            sizes = [(len(m.get("content") or ""), k) for k, m in enumerate(view) if k > 0]
            largest, k = max(sizes, default=(0, 0))
            if largest <= context.POINTER_MIN:
                break  # nothing left worth cutting
            index = indexed[k][0]
            saved = self.saved.get(index) if index is not None else None
            where = f"the whole output is in {saved}" if saved else ""
            keep = max(context.POINTER_MIN // 2, largest - excess - 200)
            clipped = context.clip(view[k]["content"], keep, where)
            excess -= largest - len(clipped)
            view[k] = {**view[k], "content": clipped}
        return view


def _content_chars(messages: list[dict[str, Any]]) -> int:
    return sum(len(m.get("content") or "") for m in messages)


async def summarise(task: TaskRun, label: str, what: str, text: str, call_id_prefix: str) -> str:
    """A journaled model round that summarises `text` (clipped to fit the window)."""
    budget = context.prompt_budget(task.config.context_tokens)
    messages = [{"role": "system", "content": SUMMARY_PROMPT.format(what=what)}, {"role": "user", "content": text}]
    keep = len(text)
    # The certain bound, so the summariser's own request needs no count.
    while context.upper_bound(messages, [SUMMARY_TOOL]) > budget and keep > 0:
        keep = int(keep * 0.8) - 1
        messages[1] = {"role": "user", "content": context.clip(text, keep)}
    turn = await task.ctx.run_typed(label, model_client().complete, retry.model_step(ModelTurn),
                                    messages, [SUMMARY_TOOL], call_id_prefix,
                                    session_id=task.session_id, task_id=task.task_id, label=label)
    task.controls.charge(turn.usage)
    summary = _summary_of(turn) or context.clip(text, MAX_SUMMARY_CHARS)  # no usable answer: the text itself
    summary = context.clip(summary, MAX_SUMMARY_CHARS)
    task.emit("model_round", f"summarised {what}: {summary[:200]}", detail=summary, ref=label)
    return summary


def _summary_of(turn: ModelTurn) -> str:
    for call in turn.message.get("tool_calls") or []:
        try:
            arguments = json.loads(call.get("function", {}).get("arguments") or "{}")
        except ValueError:
            continue
        if isinstance(arguments, dict) and isinstance(arguments.get("summary"), str):
            return arguments["summary"].strip()
    content = (turn.message.get("content") or "").strip()
    return "" if turn.format_error or content.startswith("{") else content


async def conversation_view(task: TaskRun, turns: list[ConversationTurn]) -> str:
    """The conversation as the planner and every step see it: whole while it takes at most a
    quarter of the window; past that the newest turns are kept whole (the latest always) and
    the older ones summarised in a journaled model round."""
    lines = [f"{turn.role}: {turn.text}" for turn in turns]
    text = "\n".join(lines)
    limit = task.config.context_tokens // 4
    tokens = await measure(task, [{"role": "user", "content": text}], [], "conversation", limit)
    if tokens <= limit:
        return text
    per_char = tokens / max(1, len(text)) * 1.2  # a margin over the counted rate
    kept: list[str] = []
    used = 0.0
    for line in reversed(lines):
        if kept and used + len(line) * per_char > limit / 2:
            break
        kept.append(line)
        used += len(line) * per_char
    kept.reverse()
    if used > limit / 2:  # the latest turn alone is too long: its head and tail
        kept[-1] = context.clip(kept[-1], int(limit / 2 / per_char))
    older = lines[:len(lines) - len(kept)]
    if not older:
        return "\n".join(kept)
    summary = await summarise(task, "summarise the conversation", "the earlier conversation", "\n".join(older),
                              f"{task.task_id}-conversation-summary")
    summary = context.clip(summary, int(limit / 2 / per_char))
    return "\n".join([f"(summary of the earlier conversation) {summary}", *kept])
