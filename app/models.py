"""Typed inputs, outputs and durable state for every service. No loose dicts in state."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.stored import Stored
from app.validation import workspace_relative
from sandbox.protocol import ExecResult

# A path inside the workspace; `/project/x` is accepted as `x`.
WorkspacePath = Annotated[str, AfterValidator(workspace_relative)]

# ---------------------------------------------------------------- Agent (public)


class MessageIn(BaseModel):
    text: str = Field(min_length=1)


class MessageOut(BaseModel):
    task_id: str


class CheckRun(BaseModel):
    """One check the harness ran (never the model's say-so): the exact command, how it ended,
    and the tool call in the session's event log (`ref`) that shows its whole output."""

    kind: Literal["tests", "examples", "command"]
    command: str
    exit_code: int | None  # None: no result came back (cut off, refused)
    summary: str  # e.g. "3 tests, 3 passed" or "exit code 1"
    ref: str
    step: int = 0


VerdictKind = Literal["verified", "failed", "unverified"]


class Verdict(BaseModel):
    """What the harness can vouch for about a task's result, from the checks it ran itself.

    verified: every check of the last state of the files passed, and at least one ran;
    failed: a check failed (or a step ended failed); unverified: nothing was there to run."""

    verdict: VerdictKind = "unverified"
    checks: list[CheckRun] = []
    note: str = ""  # the harness's words, e.g. a claim in the answer that nothing backs


class HistoryEntry(BaseModel):
    seq: int
    role: Literal["user", "agent", "event"]
    text: str
    task_id: str | None = None
    verdict: Verdict | None = None  # a finished task's entry
    # Undone by a rewind: kept and shown, but no longer part of what the model sees.
    rewound: bool = False


class HistoryOut(BaseModel):
    messages: list[HistoryEntry]


StepStatus = Literal["pending", "running", "done", "failed", "cancelled"]


class PlanItem(BaseModel):
    title: str
    status: StepStatus = "pending"


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    rounds: int = 0

    def plus(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            rounds=self.rounds + other.rounds,
        )


class Source(Stored):
    """Where a session's workspace came from: its last import, which is its baseline."""

    kind: Literal["archive", "git"]
    url: str | None = None
    ref: str | None = None
    commit: str | None = None
    files: int
    bytes: int
    stripped: str | None = None  # the one top-level directory an archive had, removed
    checkpoint: str  # the baseline checkpoint


class StatusOut(BaseModel):
    state: Literal["idle", "running"]
    task_id: str | None = None
    plan: list[PlanItem] = []
    last_usage: Usage | None = None
    last_verdict: Verdict | None = None
    source: Source | None = None


class GitSourceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    git: str = Field(min_length=1, max_length=2000)
    ref: str | None = Field(default=None, min_length=1, max_length=250)


class ImportOut(Source):
    session: str


class DiffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    against: str | None = Field(default=None, min_length=1)  # a checkpoint id; default: the baseline
    task: str | None = Field(default=None, min_length=1)  # what one task changed
    binary: bool = False  # binary files in git's binary patch format, so the patch applies


class DiffSide(BaseModel):
    checkpoint: str | None = None  # None: the live workspace, or nothing (an empty tree)
    label: str


class FileDiff(BaseModel):
    path: str
    old_path: str | None = None
    status: Literal["added", "modified", "deleted"]
    added: int
    removed: int
    binary: bool


class DiffOut(BaseModel):
    base: DiffSide
    target: DiffSide
    files: list[FileDiff]
    added: int
    removed: int
    patch: str
    truncated: bool  # the patch was cut at a file boundary (the file list is whole)


class Author(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[^<>\n\r\x00]+$")
    email: str = Field(min_length=3, max_length=200, pattern=r"^[^<>\s\x00]+@[^<>\s\x00]+$")


class ExportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    branch: str = Field(min_length=1, max_length=200)
    message: str | None = Field(default=None, min_length=1, max_length=20_000)
    push: bool = False
    author: Author | None = None


class ExportOut(BaseModel):
    branch: str
    commit: str
    base_commit: str
    pushed: bool
    remote: str
    files: int
    note: str


class ExportRecord(BaseModel):
    """An export as the Agent keeps it: what makes its commit again, alike, and its answer."""

    export_id: str
    snapshot_id: str
    when: int
    author: Author
    message: str
    push: bool
    in_workspace: str | None = None  # the commit the workspace's git made
    workspace_error: str | None = None
    out: ExportOut


class Exports(Stored):
    items: list[ExportRecord] = []


class InterruptOut(BaseModel):
    interrupted: bool
    task_id: str | None = None


# ---------------------------------------------------------------- Agent (state)


class History(Stored):
    entries: list[HistoryEntry] = []


class LastTask(Stored):
    """What `status` shows once the session is idle again."""

    plan: list[PlanItem] = []
    usage: Usage = Usage()
    verdict: Verdict | None = None


class RunningTask(Stored):
    """The task the session is waiting on. Reports from any other task id are stale."""

    task_id: str
    invocation_id: str
    plan: list[PlanItem] = []
    steering: list[str] = []  # sent to this task, in order


# ---------------------------------------------------------------- Task <-> Agent


class ConversationTurn(BaseModel):
    role: Literal["user", "agent", "event"]
    text: str


class TaskInput(Stored):
    session_id: str
    task_id: str
    conversation: list[ConversationTurn]


class ProgressReport(Stored):
    task_id: str
    plan: list[PlanItem]


class TaskOutcome(Stored):
    task_id: str
    status: Literal["done", "failed", "interrupted", "stopped"]
    text: str
    plan: list[PlanItem] = []
    usage: Usage = Usage()
    steering_read: int = 0  # how many steering messages the task took in
    verdict: Verdict | None = None


# ---------------------------------------------------------------- Plan and loop


class PlanStep(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    instructions: str = Field(default="", max_length=4000)


class Plan(BaseModel):
    steps: list[PlanStep] = Field(min_length=1)


class ModelTurn(BaseModel):
    """One journaled model round: the assistant message exactly as the loop appends it."""

    message: dict[str, Any]
    usage: Usage
    # Set when a structured-mode answer could not be parsed; fed back to the model.
    format_error: str | None = None


class StepResult(BaseModel):
    status: Literal["done", "failed"]
    summary: str
    usage: Usage
    checks: list[CheckRun] = []  # the harness's checks of the step's last state of the files


# ---------------------------------------------------------------- Sandbox (state)


class NoSandbox(BaseModel):
    kind: Literal["none"] = "none"
    generation: int = 0
    snapshot_id: str | None = None


class Running(BaseModel):
    kind: Literal["running"] = "running"
    sandbox_id: str
    generation: int
    expires_at: float | None = None
    snapshot_id: str | None = None
    restart_timer: str | None = None  # invocation id of the pending restart


class Suspended(BaseModel):
    kind: Literal["suspended"] = "suspended"
    generation: int
    snapshot_id: str | None = None


class Released(BaseModel):
    kind: Literal["released"] = "released"
    generation: int
    snapshot_id: None = None


Phase = Annotated[Union[NoSandbox, Running, Suspended, Released], Field(discriminator="kind")]


class SandboxState(Stored):
    current: Phase = NoSandbox()
    # Whether an operation may have changed the workspace since the last checkpoint, and that
    # checkpoint's snapshot: an unchanged workspace is not snapshotted twice.
    changed: bool = True
    checkpoint_snapshot: str | None = None
    # What the model must be told with the next operation's result: the sandbox came back
    # without its workspace (set where no result could carry it, e.g. at acquire or restore).
    pending_notice: str | None = None
    # A command left processes running in the background (or the backend could not tell):
    # suspending or restarting the sandbox stops them, and the model is told.
    background: bool = False
    lease: str | None = None  # the task that holds the sandbox
    # The armed idle timer's invocation id (any other one is stale), and when the last
    # operation ended (the worker's clock, journaled): the idle period counts from there.
    idle_timer: str | None = None
    last_active: float = 0.0
    snapshots: list[str] = []  # snapshots this sandbox holds (app/snapshots.py), oldest first
    creates: int = 0
    restores: int = 0
    restarts: int = 0
    snapshots_lost: int = 0
    rollbacks: int = 0  # times the sandbox was lost and its workspace went back to a snapshot


class TimerIn(Stored):
    generation: int = 0  # the restart timer's generation; an older one is stale


class CommandSlotsOut(BaseModel):
    """The host-wide cap on commands running at once (local backend, SANDBOX_MAX_RUNNING_COMMANDS)."""

    total: int
    in_use: int
    waiting: int  # commands in line for a slot, in every session on this host


class SandboxInfoOut(BaseModel):
    state: str
    sandbox_id: str | None
    generation: int
    expires_at: float | None
    snapshot_id: str | None
    lease: str | None
    creates: int
    restores: int
    restarts: int
    snapshots_lost: int
    rollbacks: int
    # "waiting for a sandbox slot": this session's command is in line behind the cap.
    command: Literal["waiting for a sandbox slot"] | None = None
    slots: CommandSlotsOut | None = None



# ---------------------------------------------------------------- Sandbox (handlers)


class AcquireIn(Stored):
    task_id: str


class ReleaseIn(Stored):
    task_id: str


class ExecIn(Stored):
    op_id: str
    command: str = Field(min_length=1)
    timeout_s: float = Field(default=60, gt=0)


class SandboxNotice(BaseModel):
    """What happened to the sandbox before an operation that the model must be told: the
    sandbox was lost and its workspace rolled back to the last snapshot (or to nothing)."""

    notice: str | None = None


class ExecOut(ExecResult, SandboxNotice):
    """The backend's result, plus what only the Sandbox object can know."""

    # The command may or may not have run (a crash between its start and its recorded result).
    outcome_unknown: bool = False


class WriteFileIn(Stored):
    op_id: str
    path: WorkspacePath
    content: str


class EditFileIn(Stored):
    op_id: str
    path: WorkspacePath
    old: str = Field(min_length=1)
    new: str
    replace_all: bool = False


class PathIn(Stored):
    path: WorkspacePath = "."


class FileOpOut(SandboxNotice):
    """Result of a file operation that the model sees. `ok` false means nothing changed."""

    ok: bool
    detail: str


class ReadFileOut(SandboxNotice):
    path: str
    content: str


class FileEntryOut(BaseModel):
    path: str
    kind: str
    size: int


class ListFilesOut(SandboxNotice):
    path: str
    entries: list[FileEntryOut]


# ---------------------------------------------------------------- Checkpoints, rewind, fork


class Checkpoint(Stored):
    """A point a session can go back to: the workspace as a step left it, and the
    conversation up to then."""

    checkpoint_id: str  # "<task id>-s<step>"
    session_id: str
    task_id: str
    step: int
    title: str
    history_seq: int  # the last history entry it includes (set by the Agent as it records it)
    snapshot_id: str
    time: float
    rewound: bool = False  # made after a point the session was rewound to


class Checkpoints(Stored):
    items: list[Checkpoint] = []


class CheckpointIn(Stored):
    """Task -> Sandbox: snapshot the workspace for the checkpoint at the end of a step."""

    checkpoint_id: str
    mode: Literal["every", "changed"]


class CheckpointOut(BaseModel):
    snapshot_id: str | None  # None: mode "changed" and the step changed nothing


class CheckpointsOut(BaseModel):
    checkpoints: list[Checkpoint]


class RewindIn(BaseModel):
    checkpoint: str = Field(min_length=1)


class RewindOut(BaseModel):
    checkpoint: str
    interrupted: bool  # a running task was stopped first
    rewound_entries: int  # history entries marked rewound


class ForkIn(BaseModel):
    checkpoint: str = Field(min_length=1)
    session: str | None = None  # the new session's id; default: derived from this one


class ForkOut(BaseModel):
    session: str
    checkpoint: str


class AdoptIn(Stored):
    """Agent -> Agent (the new session): become a fork."""

    parent: str
    checkpoint: Checkpoint
    history: list[HistoryEntry]
    checkpoints: list[Checkpoint]


class RestoreIn(Stored):
    snapshot_id: str


class RestoreOut(BaseModel):
    notice: str | None = None  # the snapshot could not be found: the workspace started empty


class HoldIn(Stored):
    holder: str  # "sandbox:<session>" or "checkpoint:<session>/<checkpoint id>"


class HoldersOut(BaseModel):
    holders: list[str]
    deleted: bool


# ---------------------------------------------------------------- Steering, approvals, budgets


class SteerIn(BaseModel):
    text: str = Field(min_length=1)


class SteerOut(BaseModel):
    task_id: str
    # "running_task": delivered at the task's next model boundary; "new_task": nothing was
    # running, so the guidance started a task of its own.
    delivered_to: Literal["running_task", "new_task"]


class SteerMessage(Stored):
    """Agent -> Task: steering number `index` (0, 1, 2, ...) of this task."""

    index: int
    text: str


class ApprovalRequest(Stored):
    approval_id: str
    task_id: str
    kind: Literal["tool", "budget"]
    summary: str  # the command, or what the budget extension is
    reason: str  # why approval is needed


class ApprovalsOut(BaseModel):
    approvals: list[ApprovalRequest]


class ResolveApprovalIn(BaseModel):
    approval_id: str = Field(min_length=1)
    decision: Literal["approve", "deny"]
    reason: str = ""


class ApprovalDecision(Stored):
    approval_id: str
    decision: Literal["approve", "deny", "timeout"]
    reason: str = ""


class PendingApprovals(Stored):
    items: list[ApprovalRequest] = []


# ---------------------------------------------------------------- Sandbox (trees)


class TreeDiffIn(Stored):
    """Compare two workspaces: snapshots, or the live one."""

    base: str | None = None  # a snapshot id; None: the empty tree
    target: str | None = None  # a snapshot id; None: the live workspace if `live`, else the empty tree
    live: bool = True
    binary: bool = False


class TreeDiffOut(BaseModel):
    files: list[FileDiff]
    patch: str
    truncated: bool
