"""`TaskRun`: everything one running task's code needs, in one object.

The planner, the step loop, the tools and the controls all take a `TaskRun` instead of the
same context, session id and task id handed along separately. Its `config` is the settings
the task journaled in its first step (app/config.py: TaskSettings), never the worker's
current environment, so a replay takes the same path as the original run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from restate import WorkflowContext

from app.config import TaskSettings
from app.controls import Controls
from app.events import EventKind, emit


@dataclass
class TaskRun:
    ctx: WorkflowContext
    session_id: str
    task_id: str
    config: TaskSettings
    controls: Controls = field(init=False)

    def __post_init__(self) -> None:
        self.controls = Controls(self.ctx, self.session_id, self.task_id, self.config)

    def emit(self, kind: EventKind, text: str, detail: str | None = None, ref: str | None = None) -> None:
        """Record an event in the session's log, tagged with this task."""
        emit(self.ctx, self.session_id, kind, text, self.task_id, detail=detail, ref=ref)
