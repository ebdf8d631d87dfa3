"""`TaskRun`: everything one running task's code needs, in one object.

The planner, the step loop, the tools and the controls all take a `TaskRun` instead of the
same context, session id and task id handed along separately. Its `config` is the settings
the task journaled in its first step (app/config.py: TaskSettings), never the worker's
current environment, so a replay takes the same path as the original run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from restate import WorkflowContext

from app.config import TaskSettings
from app.controls import Controls
from app.events import EventIn, EventKind, emit_all, event
from app.llm import model_client


@dataclass
class TaskMemory:
    """What the task has seen, rebuilt on replay from journaled results alone.

    `known`: files it read or wrote (writing over any other existing file is refused: a blind
    overwrite); `created`: files it made that did not exist before (written afresh on a
    resample); `seen`: what it last read or wrote in each file (shown beside a file being written)."""

    known: set[str] = field(default_factory=set)
    created: set[str] = field(default_factory=set)
    seen: dict[str, str] = field(default_factory=dict)  # the content of files it read or wrote, as then
    pytest: bool | None = None  # whether the sandbox has pytest, once asked

    def saw(self, path: str, content: str | None) -> None:
        self.known.add(path)
        if content is None:
            self.seen.pop(path, None)
        else:
            self.seen[path] = content


@dataclass
class TaskRun:
    ctx: WorkflowContext
    session_id: str
    task_id: str
    config: TaskSettings
    controls: Controls = field(init=False)
    memory: TaskMemory = field(init=False, default_factory=TaskMemory)
    _held: list[EventIn] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.controls = Controls(self.ctx, self.session_id, self.task_id, self.config)

    def model(self) -> Any:
        """The model client (app/llm.py); in-process tests give a task a scripted one."""
        return model_client()

    def emit(self, kind: EventKind, text: str, detail: str | None = None, ref: str | None = None,
             hold: bool = False) -> None:
        """Record an event in the session's log, tagged with this task.

        `hold`: send it with the next event, in one append (each append is an invocation of
        the log). Only for an event that is followed by another before any await, so that
        watchers see it no later than they would have.
        """
        self._held.append(event(kind, text, self.task_id, detail, ref))
        if not hold:
            emit_all(self.ctx, self.session_id, self._held)
            self._held = []
