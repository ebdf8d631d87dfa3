"""The commands that move code: import (a directory, an archive or a git URL in), diff, export
(a branch, pushed if asked), archive (the whole workspace out), and the checkpoints a session can
go back to (rewind) or start a new session from (fork)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from client import view
from client.answers import Checkpoint, Diff, Export, Source
from client.context import Client, pass_client
from client.sessions import remember
from client.sources import directory_archive, is_git_url


@click.command("import")
@click.argument("session")
@click.argument("source")
@click.option("--ref", help="The branch, tag or commit of a git URL (default: the remote's default branch).")
@pass_client
def import_(client: Client, session: str, source: str, ref: str | None) -> None:
    """Bring SOURCE into SESSION's workspace, while no task runs: a directory (sent as a .tar.gz,
    `.git` included), an archive file (.tar, .tar.gz, .zip, ...) as it is, or a git URL
    (http(s)://, git://, ssh://, file://, user@host:path) that the worker clones. What comes in
    is the session's baseline: `agent diff` compares against it."""
    if is_git_url(source):
        body = {"git": source, **({"ref": ref} if ref else {})}
        answer = client.ingress.call("Agent", session, "import", body)
    else:
        path = Path(source)
        if ref:
            raise click.UsageError("--ref goes with a git URL, not with a directory or an archive")
        if not path.exists():
            raise click.BadParameter(f"{source} is neither a file, a directory nor a git URL", param_hint="SOURCE")
        if path.is_dir():
            content, entries = directory_archive(path)
            client.errors.print(f"sending {source} as a .tar.gz: {entries} entries, {len(content) / 1024:.1f} kB",
                                style="dim")
        else:
            content = path.read_bytes()
        answer = client.ingress.post("Agent", session, "import", content, "application/octet-stream").json()
    remember(session)
    imported = Source.model_validate(answer)
    where = imported.url or source
    at = f" at {imported.ref}" if imported.ref else ""
    commit = f" (commit {imported.commit[:12]})" if imported.commit else ""
    client.say(f"imported {imported.files} files ({imported.bytes / 1024:.1f} kB) from {where}{at}{commit}")
    if imported.checkpoint:
        client.say(f"baseline checkpoint: {imported.checkpoint}", "dim")


@click.command()
@click.argument("session")
@click.option("--task", help="What this one task changed.")
@click.option("--against", metavar="CHECKPOINT", help="The workspace against this checkpoint.")
@click.option("--stat", is_flag=True, help="Only the files changed and their +/- counts.")
@click.option("--patch", "patch_file", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write a patch that `git apply` takes (binary files included) to this file ('-': stdout).")
@pass_client
def diff(client: Client, session: str, task: str | None, against: str | None, stat: bool,
         patch_file: str | None) -> None:
    """What changed in SESSION's workspace: against the baseline (the import; an empty tree if
    none), against a checkpoint, or in one task. `.git/` is never part of it."""
    body: dict[str, object] = {k: v for k, v in (("task", task), ("against", against)) if v}
    if patch_file is not None:
        body["binary"] = True
    changes = Diff.model_validate(client.ingress.call("Agent", session, "diff", body))
    if patch_file is not None:
        _write(client, patch_file, changes.patch.encode(), "the patch (`git apply` it)")
        if changes.truncated:
            client.errors.print("warning: the diff was cut (too large): the patch is incomplete", style="yellow")
        return
    client.console.print(view.diff_stat(changes))
    if not stat and changes.patch:
        client.console.print()
        client.console.print(view.patch_text(changes.patch), end="")


@click.command()
@click.argument("session")
@click.option("-b", "--branch", required=True, help="The new branch to commit the change on.")
@click.option("-m", "--message", help="The commit message (default: the server's).")
@click.option("--push", is_flag=True, help="Push the branch to the repository it was imported from.")
@pass_client
def export(client: Client, session: str, branch: str, message: str | None, push: bool) -> None:
    """Commit SESSION's change (against its git import) on a new branch and, with --push, push
    it to the origin with the worker's credentials. Asking again answers the same commit."""
    body: dict[str, object] = {"branch": branch, "push": push, **({"message": message} if message else {})}
    out = Export.model_validate(client.ingress.call("Agent", session, "export", body))
    base = f" on top of {out.base_commit[:12]}" if out.base_commit else ""
    client.say(f"committed {out.commit[:12]} on branch {out.branch}{base} ({out.files} files)")
    if out.note:  # the server's words: what was pushed where, or why not
        client.say(out.note, "green" if out.pushed else "")
    elif out.pushed:
        client.say(f"pushed {out.branch} to {out.remote}", "green")


@click.command()
@click.argument("session")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="Where to write the .tar.gz ('-': stdout).")
@pass_client
def archive(client: Client, session: str, output: str) -> None:
    """Download SESSION's whole workspace as a .tar.gz (`.git` included)."""
    response = client.ingress.post("Agent", session, "archive", None)
    _write(client, output, response.content, "the workspace")


def _write(client: Client, output: str, data: bytes, what: str) -> None:
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    Path(output).write_bytes(data)
    client.errors.print(f"wrote {what} to {output} ({len(data)} bytes)")


@click.command()
@click.argument("session")
@pass_client
def checkpoints(client: Client, session: str) -> None:
    """SESSION's checkpoints, oldest first: the baseline of an import, and the end of each step."""
    points = [Checkpoint.model_validate(c) for c in client.ingress.call("Agent", session, "checkpoints")["checkpoints"]]
    if not points:
        client.say(f"session {session} has no checkpoints yet")
    for point in points:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(point.time)) if point.time else ""
        note = "  (rewound)" if point.rewound else ""
        client.say(f"{point.checkpoint_id}  step {point.step}  {point.title}  {when}{note}",
                   "dim" if point.rewound else "")


@click.command()
@click.argument("session")
@click.argument("checkpoint")
@pass_client
def rewind(client: Client, session: str, checkpoint: str) -> None:
    """Put SESSION back to CHECKPOINT: stop its running task, restore that workspace, and mark
    the later conversation rewound (kept and shown, no longer seen by the model)."""
    out = client.ingress.call("Agent", session, "rewind", {"checkpoint": checkpoint})
    stopped = "; the running task was stopped first" if out["interrupted"] else ""
    client.say(f"rewound to {out['checkpoint']}: {out['rewound_entries']} later history entries "
               f"marked rewound{stopped}")


@click.command()
@click.argument("session")
@click.argument("checkpoint")
@click.option("--into", "new", metavar="NEW", help="The new session's id (default: derived from SESSION).")
@pass_client
def fork(client: Client, session: str, checkpoint: str, new: str | None) -> None:
    """Start a new session from SESSION's CHECKPOINT: its conversation up to there and that
    workspace. SESSION is not touched."""
    out = client.ingress.call("Agent", session, "fork", {"checkpoint": checkpoint, **({"session": new} if new else {})})
    remember(out["session"])
    client.say(f"forked {session} at {out['checkpoint']} into {out['session']}; "
                f"`agent chat {out['session']} \"...\"` goes on there")


COMMANDS = (import_, diff, export, archive, checkpoints, rewind, fork)
