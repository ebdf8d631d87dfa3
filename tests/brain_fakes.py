"""A task's world in-process, for the brain's tests: a fake Restate context, a workspace in a
temp directory, and a scripted model that answers from a list.

The step loop (app/loop.py) and the pipeline (app/pipeline.py) run against these in
milliseconds, without restate-server: what they decide is tested here; that it is durable
(journaled, exactly once under a SIGKILL) is tested end to end with the real stack.
The workspace runs commands with `sh -c` in the directory, not in bubblewrap: isolation is
the sandbox suite's subject, not the brain's.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restate import TerminalError

from app.config import TaskSettings
from app.models import ExecOut, FileEntryOut, FileOpOut, ListFilesOut, ModelTurn, ReadFileOut, Usage
from app.taskrun import TaskRun


class FakePromise:
    async def peek(self) -> None:
        return None


@dataclass
class FakeContext:
    """What a TaskRun's code asks of its WorkflowContext: steps run at once, calls to the
    Sandbox go to `workspace`, sends are recorded."""

    workspace: Workspace
    steps: list[str] = field(default_factory=list)
    sent: list[tuple[str, Any]] = field(default_factory=list)

    async def run_typed(self, name: str, fn: Callable[..., Any], options: Any = None, *args: Any, **kwargs: Any) -> Any:
        self.steps.append(name)
        result = fn(*args, **kwargs)
        return await result if hasattr(result, "__await__") else result

    async def object_call(self, handler: Any, key: str, arg: Any) -> Any:
        return getattr(self.workspace, handler.__name__)(arg)

    def object_send(self, handler: Any, key: str, arg: Any, **_: Any) -> None:
        self.sent.append((handler.__name__, arg))

    def generic_send(self, service: str, handler: str, arg: bytes, key: str | None = None, **_: Any) -> None:
        self.sent.append((handler, json.loads(arg)))

    async def time(self) -> float:
        return 0.0

    def promise(self, name: str, type_hint: Any = None) -> FakePromise:
        return FakePromise()

    def events(self, kind: str | None = None) -> list[Any]:
        found = []
        for handler, arg in self.sent:
            items = arg.events if handler == "append_all" else [arg] if handler == "append" else []
            found.extend(e for e in items if kind is None or e.kind == kind)
        return found


@dataclass
class Workspace:
    """The Sandbox object's task-facing handlers over a directory; `commands` is every command
    that ran, in order."""

    root: Path
    commands: list[str] = field(default_factory=list)

    def list_for_task(self, req: Any) -> ListFilesOut:
        entries = [FileEntryOut(path=str(p.relative_to(self.root)), kind="file" if p.is_file() else "dir",
                                size=p.stat().st_size if p.is_file() else 0)
                   for p in sorted(self.root.rglob("*")) if "__pycache__" not in p.parts]
        return ListFilesOut(path=req.path, entries=entries)

    def read_for_task(self, req: Any) -> ReadFileOut:
        path = self.root / req.path
        if not path.is_file():
            raise TerminalError(f"no such file: {req.path}", status_code=404)
        return ReadFileOut(path=req.path, content=path.read_text())

    def write_file(self, req: Any) -> FileOpOut:
        path = self.root / req.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(req.content)
        return FileOpOut(ok=True, detail=f"wrote {len(req.content.encode())} bytes to {req.path}")

    def edit_file(self, req: Any) -> FileOpOut:
        path = self.root / req.path
        text = path.read_text()
        if req.old not in text:
            return FileOpOut(ok=False, detail="old text not found")
        path.write_text(text.replace(req.old, req.new, 1))
        return FileOpOut(ok=True, detail=f"edited {req.path}")

    def exec(self, req: Any) -> ExecOut:
        self.commands.append(req.command)
        done = subprocess.run(["sh", "-c", req.command], cwd=self.root, capture_output=True, text=True,
                              timeout=req.timeout_s)
        return ExecOut(exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr)


def call(name: str, **args: Any) -> dict[str, Any]:
    """A model turn making one tool call."""
    return {"role": "assistant", "content": "",
            "tool_calls": [{"id": f"c-{name}", "type": "function",
                            "function": {"name": name, "arguments": json.dumps(args)}}]}


def text(content: str) -> dict[str, Any]:
    """A model turn that is plain text (an answer, or code asked for as text)."""
    return {"role": "assistant", "content": content}


@dataclass
class ScriptedModel:
    """Answers each model round with the next turn of `turns`; records every request."""

    turns: list[dict[str, Any] | ModelTurn]
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], call_id_prefix: str,
                       **kwargs: Any) -> ModelTurn:
        self.requests.append({"messages": messages, "tools": tools, **kwargs})
        if not self.turns:
            raise AssertionError(f"the model was asked more than the script says: {messages[-1]['content'][:300]}")
        turn = self.turns.pop(0)
        return turn if isinstance(turn, ModelTurn) else ModelTurn(message=turn, usage=Usage(rounds=1))

    def text_requests(self) -> list[str]:
        """The user message of every plain-chat request (code asked for as text)."""
        return [r["messages"][-1]["content"] for r in self.requests if not r["tools"]]


class ScriptedTask(TaskRun):
    """A TaskRun whose model is scripted."""

    scripted: ScriptedModel

    def model(self) -> Any:
        return self.scripted


def task_in(root: Path, turns: list[Any], **settings: Any) -> tuple[ScriptedTask, FakeContext, ScriptedModel]:
    config = TaskSettings(**{
        "max_steps": 6, "max_rounds_per_step": 12, "command_timeout_s": 60, "approval_mode": "none",
        "approval_patterns": [], "approval_timeout_s": 60.0, "budget_rounds": 1000, "budget_tokens": 10**9,
        "budget_seconds": 10**6, "context_tokens": 128_000, "checkpoints": "off", "planning": "auto",
        "finish_check": "on", "tool_mode": "structured", **settings})
    ctx = FakeContext(Workspace(root))
    model = ScriptedModel(list(turns))
    task = ScriptedTask(ctx, "s1", "t1", config)  # type: ignore[arg-type]
    task.scripted = model
    return task, ctx, model
