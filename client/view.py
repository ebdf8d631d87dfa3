"""How the client shows things: one line per event, the plan as a checklist, a verdict, a diff.

Everything is built as rich `Text`, never as markup: what the model and the tools say (`[sandbox]
...`, `[1, 2]`) is shown exactly as it is.
"""

from __future__ import annotations

import re

from rich.text import Text

from client.answers import Diff, Event, PlanItem, Verdict

MARKS = {"done": ("✔", "green"), "running": ("▶", "cyan"), "failed": ("✗", "red"),
         "cancelled": ("–", "yellow"), "pending": ("·", "dim")}
VERDICT_STYLES = {"verified": "bold green", "failed": "bold red", "unverified": "bold yellow"}
DETAIL_LINES = 20  # of a tool's output, with --verbose
_ROUND = re.compile(r"round (\d+)$")
_STEP_END = re.compile(r"^step (\d+) (done|failed)")


def checklist(plan: list[PlanItem]) -> Text:
    text = Text()
    for number, item in enumerate(plan, 1):
        mark, style = MARKS.get(item.status, ("?", ""))
        text.append(f"  {mark} ", style=style)
        text.append(f"{number}. {item.title}", style="dim" if item.status == "pending" else "")
        text.append("\n")
    text.rstrip()
    return text


def plan_of(event: Event) -> list[PlanItem]:
    """The plan a `plan` event announces ("1. title" a line), every step pending."""
    return [PlanItem(title=re.sub(r"^\d+\.\s*", "", line)) for line in event.text.splitlines() if line.strip()]


def step_update(event: Event, plan: list[PlanItem]) -> None:
    """Mark the step a step_started / step_finished event names."""
    match = re.match(r"^step (\d+)", event.ref or event.text)
    if not match or not 0 < int(match.group(1)) <= len(plan):
        return
    item = plan[int(match.group(1)) - 1]
    if event.kind == "step_started":
        item.status = "running"
    elif ended := _STEP_END.match(event.text):
        item.status = ended.group(2)


def event_line(event: Event, verbose: bool = False) -> Text | None:
    """The line an event shows as while following; None for the ones shown otherwise (the
    answer, at the end) or not at all."""
    kind, text = event.kind, event.text
    if kind == "user_message":
        return Text.assemble(("you: ", "bold"), text)
    if kind == "steering":
        return Text.assemble(("you (steering): ", "bold"), text)
    if kind == "plan":
        return Text(f"plan: {len(plan_of(event))} step(s)", style="bold")
    if kind == "step_started":
        return Text(f"▶ {text}", style="bold cyan")
    if kind == "step_finished":
        failed = bool(re.match(r"^step \d+ failed", text))
        return Text(f"{'✗' if failed else '✔'} {text}", style="red" if failed else "green")
    if kind == "model_round":
        match = _ROUND.search(event.ref or "")
        label = f"  model, round {match.group(1)}: " if match else "  model: "
        return Text.assemble((label, "magenta"), _indent(text, len(label)))
    if kind == "tool_call":
        return Text.assemble(("  → ", "blue"), text)
    if kind == "tool_result":
        line = Text.assemble(("    ← ", "dim"), (text, "dim"))
        if verbose and event.detail:
            shown = event.detail.splitlines()[:DETAIL_LINES]
            line.append("\n" + "\n".join("      " + s for s in shown), style="dim")
        return line
    if kind == "check":
        return Text(f"  check {text}", style="cyan")
    if kind == "approval_requested":
        return Text(f"? {text}", style="bold yellow")
    if kind == "approval_resolved":
        return Text(f"  {text}", style="yellow")
    if kind in ("sandbox", "rewrite"):
        return Text(f"! {kind}: {text}", style="yellow")
    if kind in ("rewound", "forked"):
        return Text(f"↺ {text}", style="cyan")
    if kind == "error":
        return Text(f"✗ the task failed: {text}", style="bold red")
    if kind == "interrupted":
        return Text(f"■ interrupted: {text}", style="bold yellow")
    if kind == "final_answer":
        return None  # the ending shows it
    return Text(f"{kind}: {text}", style="cyan")  # imported, exported, and kinds newer than this client


def verdict_text(verdict: Verdict | None) -> Text:
    if verdict is None:
        return Text("verdict: none (the task did not finish)", style="yellow")
    text = Text.assemble("verdict: ", (verdict.verdict, VERDICT_STYLES[verdict.verdict]))
    for check in verdict.checks:
        mark = "✔" if check.exit_code == 0 else "✗"
        text.append(f"\n  {mark} {check.kind}: `{check.command[:120]}` → {check.summary}",
                    style="green" if check.exit_code == 0 else "red")
    if verdict.note:
        text.append(f"\n  {verdict.note}", style="yellow")
    return text


def diff_stat(diff: Diff) -> Text:
    text = Text(f"{diff.base.label or 'baseline'} → {diff.target.label or 'workspace'}: ", style="bold")
    if not diff.files:
        text.append("no changes", style="dim")
        return text
    text.append(f"{len(diff.files)} file(s), ")
    text.append(f"+{diff.added}", style="green")
    text.append(" ")
    text.append(f"-{diff.removed}", style="red")
    width = max(len(f.path) for f in diff.files)
    for f in diff.files:
        name = f"{f.old_path} → {f.path}" if f.old_path else f.path
        text.append(f"\n  {f.status[:1].upper()} {name:<{width}}  ")
        if f.binary:
            text.append("binary", style="dim")
        else:
            text.append(f"+{f.added}", style="green")
            text.append(" ")
            text.append(f"-{f.removed}", style="red")
    if diff.truncated:
        text.append("\n  (the diff was cut: too large to show whole)", style="yellow")
    return text


def patch_text(patch: str) -> Text:
    """A unified diff, coloured the way `git diff` colours it."""
    text = Text()
    for line in patch.splitlines():
        if line.startswith(("diff --git", "index ", "--- ", "+++ ", "new file", "deleted file",
                            "similarity", "rename ", "Binary files")):
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        else:
            style = ""
        text.append(line + "\n", style=style)
    return text


def _indent(text: str, width: int) -> str:
    return text.replace("\n", "\n" + " " * width)
