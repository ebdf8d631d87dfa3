"""A git source, on the worker: clone it for an import, commit a workspace onto it and push.

Everything here runs outside the sandbox, which has no network. Credentials are the worker's:
git's own credential helpers and environment (GIT_ASKPASS, SSH agent, ...) as the worker's
user has them configured. A URL that carries a password is refused, since the URL is part of
the request and so of the journal. Only the transports in ALLOWED_PROTOCOLS are used
(`ext::` would run a command on the worker).

The workspace's own `.git` is never given to git on the worker: it is the model's to change,
and a repository's configuration can run programs (hooks, filters, fsmonitor). Exports
rebuild the commit from the workspace's files in a fresh clone instead.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from app.repo import trees

ALLOWED_PROTOCOLS = "https:http:ssh:git:file"
CLONE_TIMEOUT_S = 600
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/].*$|^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:/.*$")
_SHA = re.compile(r"^[0-9a-f]{40}$")


class GitRefused(Exception):
    """A request git cannot or must not carry out: `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def check_url(url: str) -> str:
    """The URL as given, if it is one we clone from; GitRefused(400) otherwise."""
    if not url or url.startswith("-") or any(c in url for c in "\0\n\r "):
        raise GitRefused(400, f"{url!r} is not a git URL")
    if _SCP_LIKE.fullmatch(url):
        return url  # user@host:path, ssh
    parts = urlsplit(url)
    if parts.scheme not in ALLOWED_PROTOCOLS.split(":"):
        raise GitRefused(400, f"git URL {url!r}: only {', '.join(ALLOWED_PROTOCOLS.split(':'))} URLs are "
                              "cloned (a local repository: file:///path/to/repo)")
    if parts.password:
        raise GitRefused(400, "the git URL carries a password: requests are journaled, so credentials belong "
                              "in the worker's git credential helper or environment, never in the URL")
    return url


def check_ref(ref: str) -> str:
    if not ref or ref.startswith("-") or any(c in ref for c in "\0\n\r ~^:?*[\\") or ".." in ref:
        raise GitRefused(400, f"{ref!r} is not a branch, tag or commit name")
    return ref


def check_branch(branch: str) -> str:
    check_ref(branch)
    done = subprocess.run(["git", "check-ref-format", "--branch", branch], capture_output=True,
                          env=trees.clean_env(), check=False, timeout=30)
    if done.returncode != 0 or _SHA.fullmatch(branch):
        raise GitRefused(400, f"{branch!r} is not a valid branch name")
    return branch


def _remote_env() -> dict[str, str]:
    """The worker's own environment (its credential helpers and agents), no prompt, and only
    the allowed transports."""
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS, "LC_ALL": "C"}


def _remote(*args: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, env=_remote_env(), capture_output=True,
                              timeout=CLONE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise GitRefused(504, f"git {args[0]} took longer than {CLONE_TIMEOUT_S} s") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()[-800:]
        raise GitRefused(_status_of(message), f"git {args[0]} failed: {message}")
    return done.stdout.decode(errors="replace")


def _status_of(message: str) -> int:
    lowered = message.lower()
    if any(s in lowered for s in ("not found", "does not appear to be a git repository", "could not read from remote",
                                  "authentication failed", "repository not found", "unable to access")):
        return 424  # the source, not the request, failed: the worker could not reach or read it
    return 400


@dataclass
class Clone:
    tree: bytes  # the checked-out tree, `.git` included, as a tar
    commit: str
    ref: str | None  # the branch checked out, if the ref named one


def clone(url: str, ref: str | None) -> Clone:
    """Clone `url` and check out `ref` (a branch, tag or commit; None: the remote's default
    branch). A branch is checked out as a local branch of that name, anything else detached."""
    check_url(url)
    if ref is not None:
        check_ref(ref)
    with tempfile.TemporaryDirectory(prefix="agent-clone-") as tmp:
        work = Path(tmp) / "repo"
        _remote("clone", "--quiet", "--no-checkout", "--", url, str(work))
        branch = None
        if ref is None:
            commit = _local(work, "rev-parse", "--verify", "HEAD^{commit}")
            head = subprocess.run(["git", "symbolic-ref", "--short", "-q", "HEAD"], cwd=work, env=trees.clean_env(),
                                  capture_output=True, check=False).stdout.decode().strip()
            branch = head or None
        elif _exists(work, f"refs/remotes/origin/{ref}"):
            commit, branch = _local(work, "rev-parse", "--verify", f"refs/remotes/origin/{ref}^{{commit}}"), ref
        elif _exists(work, f"{ref}^{{commit}}"):
            commit = _local(work, "rev-parse", "--verify", f"{ref}^{{commit}}")
        else:
            raise GitRefused(404, f"{url} has no branch, tag or commit {ref!r}")
        if branch:
            _local(work, "checkout", "--quiet", "-B", branch, commit)
            _local(work, "branch", "--quiet", f"--set-upstream-to=origin/{branch}", branch)
        else:
            _local(work, "checkout", "--quiet", "--detach", commit)
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for entry in sorted(os.listdir(work)):
                tar.add(work / entry, arcname=entry)
        return Clone(tree=out.getvalue(), commit=commit, ref=branch or ref)


def _local(work: Path, *args: str) -> str:
    """git on a repository this module cloned, with no configuration but its own."""
    return trees.git(*args, cwd=work).decode().strip()


def _exists(work: Path, rev: str) -> bool:
    done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", rev], cwd=work, env=trees.clean_env(),
                          capture_output=True, check=False)
    return done.returncode == 0


@dataclass
class Export:
    commit: str
    files: int
    pushed: bool
    already: bool  # the remote branch was at this commit already (a repeated export)


def export(url: str, base_commit: str, workspace: bytes, branch: str, message: str, author: tuple[str, str],
           when: int, push: bool) -> Export:
    """Commit the workspace's files (not its `.git`) onto `base_commit` as `branch`, and push it
    to `url` if asked. Deterministic: the same inputs make the same commit id, so a repeated
    export finds its own commit on the remote and pushes nothing again. GitRefused(409) if the
    workspace has no change, or the remote's branch is at another commit."""
    check_url(url)
    check_branch(branch)
    with tempfile.TemporaryDirectory(prefix="agent-export-") as tmp:
        bare = Path(tmp) / "repo.git"
        _remote("clone", "--quiet", "--bare", "--", url, str(bare))
        if not _exists(bare, f"{base_commit}^{{commit}}"):
            raise GitRefused(409, f"{url} no longer has the imported commit {base_commit}")
        scratch_env = {"GIT_DIR": str(bare)}
        work, index = Path(tmp) / "work", Path(tmp) / "index"
        work.mkdir()
        trees.unpack(workspace, work)
        env = trees.clean_env({**scratch_env, "GIT_WORK_TREE": str(work), "GIT_INDEX_FILE": str(index)})
        trees.git("read-tree", base_commit, cwd=work, env=env)
        trees.git("add", "--all", ".", cwd=work, env=env)
        tree = trees.git("write-tree", cwd=work, env=env).decode().strip()
        base_tree = trees.git("rev-parse", f"{base_commit}^{{tree}}", cwd=work, env=env).decode().strip()
        if tree == base_tree:
            raise GitRefused(409, "nothing to export: the workspace's files are those of the imported commit")
        files = len([p for p in trees.git("diff-tree", "-r", "--name-only", "-z", base_tree, tree, cwd=work, env=env)
                     .split(b"\0") if p])
        name, email = author
        stamp = f"{when} +0000"
        who = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": stamp,
               "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email, "GIT_COMMITTER_DATE": stamp}
        commit = trees.git("commit-tree", tree, "-p", base_commit, cwd=work, env={**env, **who},
                           stdin=message.encode()).decode().strip()
        if not push:
            return Export(commit=commit, files=files, pushed=False, already=False)
        remote_at = _remote("ls-remote", "--", url, f"refs/heads/{branch}").split()
        if remote_at and remote_at[0] == commit:
            return Export(commit=commit, files=files, pushed=True, already=True)
        if remote_at:
            raise GitRefused(409, f"branch {branch!r} already exists on {url} at {remote_at[0][:12]}; "
                                  "export to a new branch")
        _remote("push", "--quiet", "--", url, f"{commit}:refs/heads/{branch}", cwd=bare)
        return Export(commit=commit, files=files, pushed=True, already=False)
