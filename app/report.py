"""How a running task talks back to its session's `Agent`: five one-way messages.

Every report is a one-way send, journaled once by the task. A call would deadlock: the Agent
may be busy waiting for this very task to finish its cleanup (an interrupt). The Agent is
addressed by name, so the Task never imports the Agent module (the Agent starts Tasks, so
an import back would make a loop); tests/test_layers.py checks that these names are the
Agent's handlers and that their input types match.
"""

from __future__ import annotations

from pydantic import BaseModel
from restate import Context

from app.models import ApprovalDecision, ApprovalRequest, Checkpoint, ProgressReport, TaskOutcome

AGENT = "Agent"
PROGRESS = "task_progress"
FINISHED = "task_finished"
APPROVAL_REQUESTED = "approval_requested"
APPROVAL_CLOSED = "approval_closed"
CHECKPOINT = "checkpoint_recorded"


def _send(ctx: Context, session_id: str, handler: str, message: BaseModel) -> None:
    ctx.generic_send(AGENT, handler, message.model_dump_json().encode(), key=session_id)


def progress(ctx: Context, session_id: str, report: ProgressReport) -> None:
    _send(ctx, session_id, PROGRESS, report)


def finished(ctx: Context, session_id: str, outcome: TaskOutcome) -> None:
    _send(ctx, session_id, FINISHED, outcome)


def approval_requested(ctx: Context, session_id: str, request: ApprovalRequest) -> None:
    _send(ctx, session_id, APPROVAL_REQUESTED, request)


def approval_closed(ctx: Context, session_id: str, decision: ApprovalDecision) -> None:
    _send(ctx, session_id, APPROVAL_CLOSED, decision)


def checkpoint(ctx: Context, session_id: str, point: Checkpoint) -> None:
    _send(ctx, session_id, CHECKPOINT, point)
