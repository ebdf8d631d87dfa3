"""The answers the client reads, typed: the fields it uses of the handlers' JSON (app/models.py,
app/events.py and the contract of the import, diff and export handlers). Fields the client does
not use are ignored, so a server that adds some does not break it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Event(BaseModel):
    seq: int
    kind: str
    text: str
    task_id: str | None = None
    detail: str | None = None
    ref: str | None = None
    time: float = 0.0


class EventPage(BaseModel):
    events: list[Event]
    next_seq: int


class PlanItem(BaseModel):
    title: str
    status: str = "pending"


class CheckRun(BaseModel):
    kind: str
    command: str
    exit_code: int | None = None
    summary: str = ""


class Verdict(BaseModel):
    verdict: Literal["verified", "failed", "unverified"] = "unverified"
    checks: list[CheckRun] = []
    note: str = ""


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rounds: int = 0


class Source(BaseModel):
    """What the session's workspace was imported from (the import's answer)."""

    kind: Literal["archive", "git"]
    url: str | None = None
    ref: str | None = None
    commit: str | None = None
    files: int = 0
    bytes: int = 0
    stripped: str | None = None
    checkpoint: str | None = None


class Status(BaseModel):
    state: Literal["idle", "running"]
    task_id: str | None = None
    plan: list[PlanItem] = []
    last_usage: Usage | None = None
    last_verdict: Verdict | None = None
    source: Source | None = None


class HistoryEntry(BaseModel):
    seq: int
    role: str
    text: str
    task_id: str | None = None
    verdict: Verdict | None = None
    rewound: bool = False


class Approval(BaseModel):
    approval_id: str
    task_id: str
    kind: str
    summary: str
    reason: str


class Checkpoint(BaseModel):
    checkpoint_id: str
    task_id: str
    step: int
    title: str
    time: float = 0.0
    rewound: bool = False


class DiffFile(BaseModel):
    path: str
    old_path: str | None = None
    status: str
    added: int = 0
    removed: int = 0
    binary: bool = False


class DiffSide(BaseModel):
    checkpoint: str | None = None
    label: str = ""


class Diff(BaseModel):
    base: DiffSide = DiffSide()
    target: DiffSide = DiffSide()
    files: list[DiffFile] = []
    added: int = 0
    removed: int = 0
    patch: str = ""
    truncated: bool = False


class Export(BaseModel):
    branch: str
    commit: str
    base_commit: str | None = None
    pushed: bool = False
    remote: str | None = None
    files: int = 0
    note: str = ""
