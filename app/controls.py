"""The user's levers on a running task: steering, approvals and budgets.

All three are durable, so they survive worker and server restarts:

- Steering message number N is the workflow promise `steer:N`. The Agent resolves it through
  `Task.steer`; the loop peeks for the next unread number at every model boundary (together
  with the clock reading for the time budget), so guidance arrives in order without
  cancelling anything.
- An approval is the promise `approval:<id>` raced against a durable sleep. While it waits
  the invocation is suspended: it can wait for days and holds no compute. No answer in time
  counts as a denial.
- A budget (model rounds, tokens, wall time) that runs out asks the user through the same
  approval mechanism whether to go on; "deny" stops the task cleanly (SAGA cleanup runs).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Awaitable

import restate
from restate import TerminalError, WorkflowContext

from app import report
from app.config import TaskSettings
from app.models import ApprovalDecision, ApprovalRequest, Usage

# Tools that only look: they never need approval under the "all" policy.
READ_ONLY_TOOLS = frozenset({"read_file", "list_files", "finish"})


class BudgetStopped(TerminalError):
    """The user declined to extend an exhausted budget: the task ends, cleanly."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status_code=402)  # the budget ran out, and was not renewed


class Controls:
    def __init__(self, ctx: WorkflowContext, session_id: str, task_id: str, config: TaskSettings) -> None:
        self.ctx = ctx
        self.session_id = session_id
        self.task_id = task_id
        self.config = config
        self.steering_read = 0
        self.used = Usage()
        self.limit_rounds = config.budget_rounds
        self.limit_tokens = config.budget_tokens
        self.limit_seconds = config.budget_seconds
        self.extensions = 0
        self.started_at = 0.0
        self.waited_s = 0.0  # time spent waiting for humans does not count against the budget

    async def start(self) -> None:
        self.started_at = await self.ctx.time()

    # ------------------------------------------------------------ the model boundary

    async def at_model_boundary(self) -> list[str]:
        """Before a model round: pause for the user if a budget is spent, then return the
        steering that arrived since the last boundary, oldest first.

        The first steering peek and the clock reading for the time budget go to Restate
        together, so the boundary costs one round trip, not two.
        """
        clock = self.ctx.time()
        peek = self._peek_steering()
        if await self._check_budget(await clock):
            peek = self._peek_steering()  # we waited for a human: look again
        texts: list[str] = []
        while (text := await peek) is not None:
            texts.append(text)
            self.steering_read += 1
            peek = self._peek_steering()
        return texts

    def _peek_steering(self) -> Awaitable[str | None]:
        return self.ctx.promise(f"steer:{self.steering_read}", type_hint=str).peek()

    # ------------------------------------------------------------ budgets

    def charge(self, usage: Usage) -> None:
        self.used = self.used.plus(usage)

    async def _check_budget(self, now: float) -> bool:
        """If a budget is spent, pause and ask the user to extend it. Whether we asked."""
        asked = False
        while (exhausted := self._exhausted(now)) is not None:
            asked = True
            self.extensions += 1
            c = self.config
            decision = await self.ask(ApprovalRequest(
                approval_id=f"{self.task_id}/budget/{self.extensions}", task_id=self.task_id, kind="budget",
                summary=(f"continue with {c.budget_rounds} more rounds, {c.budget_tokens} more tokens "
                         f"and {c.budget_seconds:.0f} more seconds?"),
                reason=exhausted))
            if decision.decision != "approve":
                why = "nobody answered" if decision.decision == "timeout" else "the user chose to stop"
                raise BudgetStopped(f"task stopped: {exhausted}, and {why}")
            now = await self.ctx.time()
            self.limit_rounds = self.used.rounds + c.budget_rounds
            self.limit_tokens = self.used.prompt_tokens + self.used.completion_tokens + c.budget_tokens
            self.limit_seconds = self._elapsed(now) + c.budget_seconds
        return asked

    def _exhausted(self, now: float) -> str | None:
        if self.used.rounds >= self.limit_rounds:
            return f"the budget of {self.limit_rounds} model rounds is spent"
        tokens = self.used.prompt_tokens + self.used.completion_tokens
        if tokens >= self.limit_tokens:
            return f"the budget of {self.limit_tokens} tokens is spent ({tokens} used)"
        if self._elapsed(now) >= self.limit_seconds:
            return f"the time budget of {self.limit_seconds:.0f} s is spent"
        return None

    def _elapsed(self, now: float) -> float:
        return now - self.started_at - self.waited_s

    # ------------------------------------------------------------ approvals

    def approval_reason(self, tool: str, args: Any) -> str | None:
        """Why this call needs a human, by the configured policy; None if it doesn't."""
        mode = self.config.approval_mode
        if mode == "all" and tool not in READ_ONLY_TOOLS:
            return "every change needs approval"
        if mode == "commands" and tool == "run_command":
            return "every command needs approval"
        if mode == "patterns" and tool == "run_command":
            for pattern in self.config.approval_patterns:
                if re.search(pattern, args.command):
                    return f"the command matches the approval pattern {pattern!r}"
        return None

    async def approve_tool(self, approval_id: str, tool: str, args: Any, summary: str) -> str | None:
        """None if the call may go ahead; otherwise the denial, phrased for the model."""
        reason = self.approval_reason(tool, args)
        if reason is None:
            return None
        decision = await self.ask(ApprovalRequest(approval_id=approval_id, task_id=self.task_id, kind="tool",
                                                  summary=summary, reason=reason))
        if decision.decision == "approve":
            return None
        if decision.decision == "timeout":
            return f"error: nobody approved this call in time ({decision.reason}); it was not run"
        return "error: the user denied this call" + (f": {decision.reason}" if decision.reason else "") + "; it was not run"

    async def ask(self, request: ApprovalRequest) -> ApprovalDecision:
        """Ask the user and wait durably (suspended, no compute held) for the answer."""
        # One-way: the Agent lists it for the user; the answer comes back through Task.decide.
        report.approval_requested(self.ctx, self.session_id, request)
        asked_at = await self.ctx.time()
        timeout = timedelta(seconds=self.config.approval_timeout_s)
        which, value = await restate.select(
            decision=self.ctx.promise(f"approval:{request.approval_id}", type_hint=ApprovalDecision).value(),
            timeout=self.ctx.sleep(timeout, name=f"approval {request.approval_id} timeout"),
        )
        self.waited_s += await self.ctx.time() - asked_at
        if which == "decision":
            return value
        decision = ApprovalDecision(approval_id=request.approval_id, decision="timeout",
                                    reason=f"no answer within {timeout.total_seconds():.0f} s")
        report.approval_closed(self.ctx, self.session_id, decision)
        return decision
