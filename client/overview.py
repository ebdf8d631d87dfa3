"""What a session is doing and has done: status, history, and the sessions used from here."""

from __future__ import annotations

import click
from rich.text import Text

from client import view
from client.answers import Approval, HistoryEntry, Source, Status
from client.context import Client, pass_client
from client.ingress import Refused
from client.sessions import remembered, store_path

ROLES = {"user": "you", "agent": "agent", "event": "event"}


@click.command()
@click.argument("session")
@pass_client
def status(client: Client, session: str) -> None:
    """SESSION's state: its running task and plan (or the last one's), the last verdict and
    usage, where its code came from, and the approvals waiting."""
    now = Status.model_validate(client.ingress.call("Agent", session, "status"))
    client.say(f"session {session}: " + (f"running task {now.task_id}" if now.state == "running" else "idle"), "bold")
    if now.plan:
        client.say("plan:" if now.state == "running" else "last plan:")
        client.console.print(view.checklist(now.plan))
    if now.last_verdict is not None:
        client.console.print(Text("last task's ").append_text(view.verdict_text(now.last_verdict)))
    if now.last_usage is not None:
        u = now.last_usage
        client.say(f"last task's usage: {u.rounds} model rounds, {u.prompt_tokens} prompt + "
                   f"{u.completion_tokens} completion tokens", "dim")
    client.say(f"source: {_source(now.source)}")
    waiting = [Approval.model_validate(a) for a in client.ingress.call("Agent", session, "approvals")["approvals"]]
    for approval in waiting:
        client.say(f"waiting for approval {approval.approval_id}: {approval.summary} ({approval.reason}); "
                   f"`agent approve {session} {approval.approval_id}` or `agent deny ...`", "yellow")


def _source(source: Source | None) -> str:
    if source is None:
        return "none (the workspace started empty)"
    at = f" at {source.ref}" if source.ref else ""
    commit = f" (commit {source.commit[:12]})" if source.commit else ""
    origin = source.url or "an uploaded archive"
    export = "; `agent export` can commit the change" if source.kind == "git" else ""
    return f"{origin}{at}{commit}, {source.files} files{export}"


@click.command()
@click.argument("session")
@pass_client
def history(client: Client, session: str) -> None:
    """SESSION's conversation: your messages, the answers (with their verdicts) and events.
    Entries undone by a rewind are marked."""
    entries = [HistoryEntry.model_validate(e) for e in client.ingress.call("Agent", session, "history")["messages"]]
    for entry in entries:
        line = Text(f"#{entry.seq} ", style="dim")
        line.append(f"{ROLES.get(entry.role, entry.role)}: ", style="bold" if entry.role != "event" else "yellow")
        line.append(entry.text)
        if entry.verdict is not None:
            line.append(f"  [{entry.verdict.verdict}]", style=view.VERDICT_STYLES[entry.verdict.verdict])
        if entry.rewound:
            line.stylize("dim")
            line.append("  (rewound)", style="dim")
        client.console.print(line)


@click.command()
@pass_client
def sessions(client: Client) -> None:
    """The sessions used from this client, most recent first, each with its state.

    The ingress keeps no list of sessions (a session is just a key), so this client remembers
    the ids it used in $XDG_STATE_HOME/agent/sessions (default ~/.local/state/agent/sessions).
    """
    ids = remembered()
    if not ids:
        client.say(f"no sessions used from this client yet (they are remembered in {store_path()})")
    for session in ids:
        try:
            now = Status.model_validate(client.ingress.call("Agent", session, "status"))
        except Refused as error:
            if error.status != 404:
                raise
            client.console.print(Text.assemble(session, ("  unknown (deleted?)", "dim")))
            continue
        line = Text.assemble((session, "bold"), f"  {now.state}")
        if now.last_verdict is not None:
            line.append(f"  last: {now.last_verdict.verdict}", style=view.VERDICT_STYLES[now.last_verdict.verdict])
        if now.source is not None:
            line.append(f"  from {now.source.url or 'an archive'}", style="dim")
        client.console.print(line)


COMMANDS = (status, history, sessions)
