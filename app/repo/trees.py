"""Workspace trees as git sees them: the diff between two trees, and a tree as a git tree object.

A tree is an uncompressed tar of a workspace with relative names (sandbox/archive.py). To
compare two, each is unpacked into a scratch directory on the worker and added to a scratch
git repository with `git add -A`, so the diff is git's own: `.gitignore` is honoured (a test
run's `.pytest_cache` is not a change), modes and symlinks are kept, and the patch
`git apply`s. `.git` directories are never part of a tree here.

git runs with no user or system configuration (`GIT_CONFIG_GLOBAL=/dev/null`), on
directories this module made: nothing from the workspace can configure it.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's id of the empty tree (sha1)
GIT_TIMEOUT_S = 300
_STATUS = {"A": "added", "D": "deleted", "M": "modified", "T": "modified"}


class TreeError(Exception):
    """A tree that cannot be read, or git failing on it."""


@dataclass
class FileChange:
    path: str
    status: str  # added | modified | deleted
    added: int
    removed: int
    binary: bool


@dataclass
class Diff:
    files: list[FileChange] = field(default_factory=list)
    patch: str = ""
    truncated: bool = False

    @property
    def added(self) -> int:
        return sum(f.added for f in self.files)

    @property
    def removed(self) -> int:
        return sum(f.removed for f in self.files)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for git that reads no configuration but what the command line gives."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": "/nonexistent",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    return {**env, **(extra or {})}


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(["git", *args], cwd=cwd, env=env if env is not None else clean_env(), input=stdin,
                          capture_output=True, timeout=GIT_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise TreeError(f"git {args[0]} failed: {done.stderr.decode(errors='replace').strip()[-800:]}")
    return done.stdout


def unpack(tree: bytes, dest: Path) -> None:
    """Unpack a tree into the empty directory `dest`, leaving out `.git` directories. Names are
    checked (relative, no `..`, never through a symlink); symlinks are made as they are, never
    followed (git stores a symlink's target as its content)."""
    links: set[str] = set()
    try:
        with tarfile.open(fileobj=io.BytesIO(tree), mode="r:") as tar:
            for member in tar:
                parts = [p for p in member.name.split("/") if p not in ("", ".")]
                if not parts or ".git" in parts:
                    continue
                if member.name.startswith("/") or ".." in parts or any(
                        "/".join(parts[:i]) in links for i in range(1, len(parts))):
                    raise TreeError(f"tree entry {member.name!r} is outside the tree")
                path = dest.joinpath(*parts)
                path.parent.mkdir(parents=True, exist_ok=True)
                if member.isdir():
                    path.mkdir(exist_ok=True)
                elif member.issym():
                    os.symlink(member.linkname, path)
                    links.add("/".join(parts))
                elif member.isfile() or member.islnk():
                    source = tar.extractfile(member)
                    if source is None:
                        continue
                    with source, open(path, "wb") as out:
                        while chunk := source.read(1 << 20):
                            out.write(chunk)
                    path.chmod(0o755 if member.mode & 0o111 else 0o644)
    except tarfile.TarError as error:
        raise TreeError(f"unreadable tree: {error}") from None


class Scratch:
    """A scratch git repository and work directories, deleted on exit."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="agent-tree-")
        self.root = Path(self._dir.name)
        self.git_dir = self.root / "git"
        git("init", "--quiet", "--bare", str(self.git_dir))

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self._dir.cleanup()

    def run(self, *args: str, work: Path | None = None, index: Path | None = None,
            extra: dict[str, str] | None = None) -> bytes:
        env = {"GIT_DIR": str(self.git_dir), **({"GIT_WORK_TREE": str(work)} if work else {}),
               **({"GIT_INDEX_FILE": str(index)} if index else {}), **(extra or {})}
        return git(*args, cwd=work or self.root, env=clean_env(env))

    def tree(self, tree: bytes | None, name: str) -> str:
        """The git tree id of `tree` (None: the empty tree)."""
        if tree is None:
            return EMPTY_TREE
        work = self.root / name
        work.mkdir()
        unpack(tree, work)
        index = self.root / f"{name}.index"
        self.run("add", "--all", ".", work=work, index=index)
        return self.run("write-tree", index=index).decode().strip()


def diff(base: bytes | None, target: bytes | None, *, binary: bool = False, max_patch_bytes: int = 2_000_000) -> Diff:
    """What changed from `base` (None: nothing) to `target`."""
    with Scratch() as scratch:
        return diff_ids(scratch, scratch.tree(base, "base"), scratch.tree(target, "target"),
                        binary=binary, max_patch_bytes=max_patch_bytes)


def diff_ids(scratch: Scratch, old: str, new: str, *, binary: bool, max_patch_bytes: int) -> Diff:
    """The diff between two tree (or commit) ids of `scratch`'s repository."""
    status = scratch.run("diff-tree", "-r", "--no-renames", "--name-status", "-z", old, new).split(b"\0")
    counts = scratch.run("diff-tree", "-r", "--no-renames", "--numstat", "-z", old, new).split(b"\0")
    kinds = {status[i + 1].decode(errors="replace"): _STATUS.get(status[i].decode()[:1], "modified")
             for i in range(0, len(status) - 1, 2)}
    files = []
    for line in counts:
        if not line:
            continue
        added, removed, path = line.decode(errors="replace").split("\t", 2)
        is_binary = added == "-"
        files.append(FileChange(path=path, status=kinds.get(path, "modified"), binary=is_binary,
                                added=0 if is_binary else int(added), removed=0 if is_binary else int(removed)))
    patch = scratch.run("diff-tree", "-r", "--no-renames", "-p", "--full-index",
                        *(["--binary"] if binary else []), old, new)
    truncated = len(patch) > max_patch_bytes
    text = patch[:max_patch_bytes].decode(errors="replace")
    if truncated:
        text = text[:text.rfind("\ndiff --git ") + 1] if "\ndiff --git " in text else ""
    return Diff(files=sorted(files, key=lambda f: f.path), patch=text, truncated=truncated)
