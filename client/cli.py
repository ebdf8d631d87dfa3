"""`agent`: the terminal client. This module holds the command group, the exit codes and the
conversation (chat, follow, steer, interrupt, approvals); client/workspace.py the code in and
out (import, diff, export, archive, checkpoints, rewind, fork); client/overview.py what a
session is doing (status, history, sessions)."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console

from client import overview, workspace
from client.answers import Approval, Status
from client.context import Client, pass_client
from client.follow import Follower
from client.ingress import DEFAULT_URL, Ingress, Refused, Unreachable, parse_urls
from client.sessions import remember

EXIT_FAILED = 1  # the task failed or was interrupted, or the server refused the request
EXIT_UNREACHABLE = 2  # nothing answers at the ingress URL(s) (click's usage errors use 2 too)
EXIT_DETACHED = 130  # Ctrl-C while following: the task goes on


class AgentGroup(click.Group):
    """Turns the server's refusals and an unreachable ingress into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Unreachable as error:
            click.echo(str(error), err=True)
            ctx.exit(EXIT_UNREACHABLE)
        except Refused as error:
            click.echo(str(error), err=True)
            ctx.exit(EXIT_FAILED)


@click.group(cls=AgentGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--ingress", envvar="AGENT_INGRESS", default=DEFAULT_URL, show_default=True,
              help="Restate's ingress; several URLs, comma-separated, for a cluster (the next is "
                   "tried when one cannot be reached). Env: AGENT_INGRESS.")
@click.option("--token", envvar="AGENT_TOKEN", default=None,
              help="Sent as `Authorization: Bearer TOKEN`, for an ingress behind a proxy that "
                   "asks for one. Env: AGENT_TOKEN.")
@click.pass_context
def cli(ctx: click.Context, ingress: str, token: str | None) -> None:
    """Chat with a durable coding agent, follow its tasks live, bring code in and take the
    change out. Talks only to Restate's ingress (docs/client.md)."""
    ctx.obj = Client(Ingress(parse_urls(ingress), token),
                     Console(highlight=False, soft_wrap=True),
                     Console(highlight=False, soft_wrap=True, stderr=True))


def main() -> None:
    cli(prog_name="agent")


def _follow(client: Client, session: str, task_id: str, after: int, verbose: bool, ask: bool) -> None:
    """Follow the task to its end and exit with its code; Ctrl-C detaches and never cancels."""
    follower = Follower(client.ingress, client.console, session, task_id, after, verbose, ask)
    try:
        ending = follower.run()
    except KeyboardInterrupt:
        client.say(f"\ndetached; the task keeps running. `agent interrupt {session}` stops it, "
                   f"`agent follow {session}` watches it again.", "bold")
        sys.exit(EXIT_DETACHED)
    try:
        code = follower.report(ending)
    except KeyboardInterrupt:
        code = EXIT_DETACHED  # the task has ended: there is nothing left to detach from
    sys.exit(code)


VERBOSE = click.option("-v", "--verbose", is_flag=True, help="Show each tool's output (its first lines).")
NO_PROMPT = click.option("--no-prompt", is_flag=True,
                         help="Do not ask approvals inline; say how to answer them instead.")


@cli.command()
@click.argument("session")
@click.argument("text")
@click.option("--no-follow", is_flag=True, help="Send the message and return at once.")
@VERBOSE
@NO_PROMPT
@pass_client
def chat(client: Client, session: str, text: str, no_follow: bool, verbose: bool, no_prompt: bool) -> None:
    """Send TEXT to SESSION and follow the task it starts until it ends: the plan, each model
    round and tool call, approvals (asked inline), then the answer, its verdict and what it
    changed. A message while a task runs interrupts that task.

    Exit code: 0 the task finished (verified or unverified), 1 it failed or was interrupted, 2 the
    agent cannot be reached, 130 detached with Ctrl-C (the task keeps running)."""
    after = client.next_seq(session) - 1
    task_id = client.ingress.call("Agent", session, "message", {"text": text})["task_id"]
    remember(session)
    if no_follow:
        client.say(f"task {task_id} started; `agent follow {session}` watches it")
        return
    _follow(client, session, task_id, after, verbose, not no_prompt)


@cli.command()
@click.argument("session")
@VERBOSE
@NO_PROMPT
@pass_client
def follow(client: Client, session: str, verbose: bool, no_prompt: bool) -> None:
    """Attach to SESSION's running task: what it did so far, then live until it ends. Exit codes
    as for `chat`."""
    status = Status.model_validate(client.ingress.call("Agent", session, "status"))
    remember(session)
    if status.state != "running" or status.task_id is None:
        client.say(f"session {session} is idle: no task to follow (`agent status {session}` "
                   "shows how the last one ended)")
        return
    _follow(client, session, status.task_id, 0, verbose, not no_prompt)


@cli.command()
@click.argument("session")
@click.argument("text")
@pass_client
def steer(client: Client, session: str, text: str) -> None:
    """Guide SESSION's running task without interrupting it (read at its next model round).
    With nothing running, the guidance starts a task of its own."""
    answer = client.ingress.call("Agent", session, "steer", {"text": text})
    remember(session)
    if answer["delivered_to"] == "running_task":
        client.say(f"delivered to the running task {answer['task_id']} (read at its next model round)")
    else:
        client.say(f"nothing was running: started task {answer['task_id']}; `agent follow {session}` watches it")


@cli.command()
@click.argument("session")
@pass_client
def interrupt(client: Client, session: str) -> None:
    """Stop SESSION's running task (its cleanup runs); the conversation stays."""
    answer = client.ingress.call("Agent", session, "interrupt")
    if answer["interrupted"]:
        client.say(f"interrupted task {answer['task_id']}")
    else:
        client.say(f"nothing was running in session {session}")


def _resolve(client: Client, session: str, approval_id: str | None, decision: str, reason: str) -> None:
    pending = [Approval.model_validate(a) for a in client.ingress.call("Agent", session, "approvals")["approvals"]]
    if approval_id is None:
        if not pending:
            raise click.ClickException(f"no approval is waiting in session {session}")
        if len(pending) > 1:
            listed = "\n".join(f"  {a.approval_id}  {a.summary}" for a in pending)
            raise click.ClickException(f"{len(pending)} approvals are waiting; name one:\n{listed}")
        approval_id = pending[0].approval_id
    summary = next((a.summary for a in pending if a.approval_id == approval_id), approval_id)
    client.ingress.call("Agent", session, "resolve_approval",
                        {"approval_id": approval_id, "decision": decision, "reason": reason})
    client.say(f"{'approved' if decision == 'approve' else 'denied'}: {summary}")


APPROVAL_ID = click.argument("approval_id", required=False)
REASON = click.option("--reason", default="", help="Told to the model with the decision.")


@cli.command()
@click.argument("session")
@APPROVAL_ID
@REASON
@pass_client
def approve(client: Client, session: str, approval_id: str | None, reason: str) -> None:
    """Approve a tool call or budget extension SESSION waits for (the only one, if no
    APPROVAL_ID is given)."""
    _resolve(client, session, approval_id, "approve", reason)


@cli.command()
@click.argument("session")
@APPROVAL_ID
@REASON
@pass_client
def deny(client: Client, session: str, approval_id: str | None, reason: str) -> None:
    """Deny a tool call or budget extension SESSION waits for (the only one, if no APPROVAL_ID
    is given)."""
    _resolve(client, session, approval_id, "deny", reason)


for command in (*workspace.COMMANDS, *overview.COMMANDS):
    cli.add_command(command)
