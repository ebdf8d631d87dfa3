"""Following one task live, from the session's durable event log (`Events/{s}/read`).

The log is the only live source the ingress has: every plan, step, model round (with the
model's text), tool call and result, approval and answer is in it, in order, exactly once. It
is polled from the last seq seen, so a worker or server restart loses nothing: the poll waits,
says so, and carries on where it was. The token-by-token model text goes to the web UI only
(AGENT_DELTA_URL); here a round's text shows when the round is done.

Ctrl-C (KeyboardInterrupt) is left to the caller: following is watching, and stopping to watch
never touches the task.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.spinner import Spinner
from rich.text import Text

from client import view
from client.answers import Approval, Diff, Event, EventPage, HistoryEntry, PlanItem, Status, Verdict
from client.ingress import Ingress, Refused, Unreachable

POLL_MIN_S = 0.3  # while events come
POLL_MAX_S = 2.0  # after a quiet while (a task waiting days for an approval costs nothing)
READ_TIMEOUT_S = 30.0  # a read that takes longer: the worker or Restate is restarting
RETRY_S = 1.0
STATUS_EVERY_S = 10.0  # how often a quiet follow asks whether the task still runs
PAGE = 200
ENDINGS = frozenset({"final_answer", "error", "interrupted"})


@dataclass
class Ending:
    kind: str  # final_answer | error | interrupted | gone
    text: str
    verdict: Verdict | None


class Board:
    """The live part at the bottom of a terminal: the plan as a checklist and what runs now."""

    def __init__(self) -> None:
        self.plan: list[PlanItem] = []
        self.activity = "waiting for the task"
        self.started = time.monotonic()
        self.spinner = Spinner("dots")

    def __rich__(self) -> Group:
        self.spinner.text = Text(f"{self.activity}  ({time.monotonic() - self.started:.0f} s)", style="dim")
        return Group(view.checklist(self.plan), self.spinner) if self.plan else Group(self.spinner)


class Follower:
    """Shows one task of a session until it ends, asking the user for its approvals inline."""

    def __init__(self, ingress: Ingress, console: Console, session: str, task_id: str,
                 after: int = 0, verbose: bool = False, ask: bool = True) -> None:
        self.ingress, self.console, self.session, self.task_id = ingress, console, session, task_id
        self.after, self.verbose, self.ask = after, verbose, ask
        self.board = Board()
        self.live: Live | None = None
        self.requested: list[str] = []  # approval ids, in the order asked for
        self.settled: set[str] = set()  # resolved (or already put to the user)
        self.cut_off = False  # the server could not be reached; said once until it answers
        self.begun = False  # an event of this task was seen: the session's own events count from then

    @property
    def plan(self) -> list[PlanItem]:
        return self.board.plan

    def run(self) -> Ending:
        with self._live():
            delay, quiet_since = POLL_MIN_S, time.monotonic()
            while True:
                page = self._read()
                if (ending := self._take(page.events)) is not None:
                    return ending
                self._ask_approvals()
                if page.events:
                    delay, quiet_since = POLL_MIN_S, time.monotonic()
                    if len(page.events) == PAGE:
                        continue  # more are waiting
                else:
                    delay = min(delay * 1.5, POLL_MAX_S)
                if time.monotonic() - quiet_since > STATUS_EVERY_S:
                    quiet_since = time.monotonic()
                    if (ending := self._ended_quietly()) is not None:
                        return ending
                time.sleep(delay)

    # ------------------------------------------------------------ reading the log

    def _read(self) -> EventPage:
        """The next page of the log, waiting out a restart of the worker or of Restate."""
        while True:
            try:
                body = self.ingress.call("Events", self.session, "read", {"after": self.after, "limit": PAGE},
                                         timeout=READ_TIMEOUT_S)
            except (Unreachable, Refused) as error:
                if isinstance(error, Refused) and error.status < 500:
                    raise
                self._say_cut_off(error)
                time.sleep(RETRY_S)
                continue
            if self.cut_off:
                self.cut_off = False
                self.console.print(Text("  (the agent answers again; following on)", style="dim"))
            return EventPage.model_validate(body)

    def _say_cut_off(self, error: Exception) -> None:
        if not self.cut_off:
            self.cut_off = True
            why = error.why if isinstance(error, Unreachable) else str(error)
            self.console.print(Text(f"  (the agent does not answer: {why}; the task is not lost, "
                                    "waiting for it to come back; Ctrl-C detaches)", style="yellow"))

    def _take(self, events: list[Event]) -> Ending | None:
        for event in events:
            self.after = max(self.after, event.seq)
            if event.task_id == self.task_id:
                self.begun = True
            elif event.task_id is not None or not self.begun:
                continue  # another task's (an earlier one, or its replacement), or from before this one
            self._track(event)
            if (line := view.event_line(event, self.verbose)) is not None:
                self.console.print(line)
            if event.kind == "plan" and self.live is None:
                self.console.print(view.checklist(self.plan))
            if event.kind in ENDINGS and event.task_id == self.task_id:
                return Ending(event.kind, event.text, self._verdict_of(event))
        return None

    def _track(self, event: Event) -> None:
        """Keep the checklist, the activity line and the approvals up to date."""
        if event.kind == "plan":
            self.board.plan = view.plan_of(event)
        elif event.kind in ("step_started", "step_finished"):
            view.step_update(event, self.plan)
        elif event.kind == "approval_requested" and event.ref:
            self.requested.append(event.ref)
        elif event.kind == "approval_resolved" and event.ref:
            self.settled.add(event.ref)
        self.board.activity = {"model_round": "model round done", "tool_call": "running a tool",
                               "approval_requested": "waiting for an approval"}.get(event.kind, "working")

    def _verdict_of(self, event: Event) -> Verdict | None:
        """The task's verdict: it travels with its final_answer event; `status` has it too."""
        if event.detail:
            try:
                return Verdict.model_validate_json(event.detail)
            except ValueError:
                pass
        body = self._try("status")
        return Status.model_validate(body).last_verdict if body is not None else None

    def _try(self, handler: str, body: object = None) -> Any:
        """A side call while following: None when the agent does not answer now (a restart)."""
        try:
            return self.ingress.call("Agent", self.session, handler, body, timeout=READ_TIMEOUT_S)
        except Unreachable:
            return None
        except Refused as error:
            if error.status >= 500:
                return None
            raise

    def _ended_quietly(self) -> Ending | None:
        """A safety net for an ending the log no longer shows: the task is not the session's
        running one any more, and its last event was not seen. The history has how it ended."""
        try:
            body = self._try("status")
        except Refused as error:
            return Ending("gone", f"the session is gone: {error.message}", None)
        if body is None:
            return None
        status = Status.model_validate(body)
        if status.state == "running" and status.task_id == self.task_id:
            return None
        if (ending := self._take(self._read().events)) is not None:
            return ending
        if (body := self._try("history")) is None:
            return None
        mine = [e for e in map(HistoryEntry.model_validate, body["messages"])
                if e.task_id == self.task_id and e.role in ("agent", "event")]
        last = mine[-1] if mine else None
        return Ending("final_answer" if last and last.role == "agent" else "gone",
                      last.text if last else "the task is no longer running", last.verdict if last else None)

    # ------------------------------------------------------------ approvals, inline

    def _ask_approvals(self) -> None:
        waiting = [a for a in self.requested if a not in self.settled]
        if not waiting:
            return
        body = self._try("approvals")
        if body is None:
            return  # asked again at the next poll
        pending = {a.approval_id: a for a in map(Approval.model_validate, body["approvals"])}
        for approval_id in waiting:
            self.settled.add(approval_id)  # put to the user once; `agent approve` for another go
            if approval_id in pending:
                self._ask(pending[approval_id])

    def _ask(self, approval: Approval) -> None:
        hint = (f"answer with `agent approve {self.session} {approval.approval_id}` "
                f"or `agent deny {self.session} {approval.approval_id}`")
        if not self.ask:
            self.console.print(Text(f"  {hint}", style="yellow"))
            return
        with self._paused():
            try:
                answer = self._input("  approve? [y/n] ").lower()
                while answer not in ("y", "yes", "n", "no"):
                    answer = self._input("  please answer y or n: ").lower()
                approve = answer.startswith("y")
                reason = "" if approve else self._input("  reason (optional): ", eof="")
            except EOFError:
                self.console.print(Text(f"  no answer from the terminal; {hint}", style="yellow"))
                return
        try:
            self.ingress.call("Agent", self.session, "resolve_approval", {
                "approval_id": approval.approval_id, "decision": "approve" if approve else "deny",
                "reason": reason or ("approved" if approve else "denied") + " from the terminal"})
        except Refused as error:
            self.console.print(Text(f"  {error.message}", style="yellow"))  # e.g. answered elsewhere first

    def _input(self, prompt: str, eof: str | None = None) -> str:
        try:
            answer = self.console.input(Text(prompt, style="bold")).strip()  # Text: `[y/n]` is no markup
        except EOFError:
            if eof is None:
                raise
            return eof
        if not self.console.is_terminal:
            self.console.print(Text(answer, style="bold"))  # a piped answer, shown where it was given
        return answer

    # ------------------------------------------------------------ the live board

    @contextmanager
    def _live(self) -> Iterator[None]:
        """A live checklist and spinner on a terminal; plain lines anywhere else (a pipe, a log)."""
        if not self.console.is_terminal:
            yield
            return
        self.live = Live(self.board, console=self.console, transient=True, refresh_per_second=4)
        with self.live:
            yield

    @contextmanager
    def _paused(self) -> Iterator[None]:
        if self.live is not None:
            self.live.stop()
        try:
            yield
        finally:
            if self.live is not None:
                self.live.start()

    # ------------------------------------------------------------ the end

    def report(self, ending: Ending) -> int:
        """Show how the task ended (the plan, the answer, its verdict, what it changed); the
        exit code: 0 the task finished and no check failed, 1 otherwise."""
        if self.plan:
            self.console.print(view.checklist(self.plan))
        if ending.kind == "final_answer":
            self.console.print(Panel(Text(ending.text), title="answer", title_align="left"))
        elif ending.kind == "gone":
            self.console.print(Text(ending.text, style="yellow"))
        self.console.print(view.verdict_text(ending.verdict))
        self._diff_stat()
        failed = ending.verdict is not None and ending.verdict.verdict == "failed"
        return 0 if ending.kind == "final_answer" and not failed else 1

    def _diff_stat(self) -> None:
        try:
            diff = Diff.model_validate(self.ingress.call("Agent", self.session, "diff", {"task": self.task_id}))
        except (Refused, Unreachable) as error:
            why = error.message if isinstance(error, Refused) else error.why
            self.console.print(Text(f"changes: not available ({why})", style="dim"))
            return
        self.console.print(view.diff_stat(diff))
