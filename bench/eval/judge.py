"""Judge a workspace with a hidden test, outside the agent's sandbox.

The files are whatever the session left, so they are untrusted code: they are copied into a
fresh directory together with the hidden test, and the test runs there as its own process
under the same bubblewrap isolation a sandboxed command gets (sandbox/bwrap.py: no network,
a read-only root, a clean environment), with a wall-clock timeout and memory/CPU limits. The
agent never sees the test, and nothing from the run flows back but the exit code and a short
output tail.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sandbox import bwrap

HIDDEN_TEST = "_eval_hidden_test.py"
TIMEOUT_S = 30.0
MEMORY_BYTES = 2 << 30
TMP_BYTES = 64 << 20


@dataclass(frozen=True)
class Verdict:
    passed: bool
    detail: str  # the last lines of the test's output, or why it did not run


def judge(files: dict[str, str], hidden_test: str, timeout_s: float = TIMEOUT_S, lines: int = 6) -> Verdict:
    """Run `hidden_test` in a directory holding `files` (relative paths); pass = exit code 0.
    A failure's detail is the last `lines` lines of its output."""
    with tempfile.TemporaryDirectory(prefix="eval-judge-") as root:
        workspace = Path(root) / "project"
        workspace.mkdir()
        for name, content in files.items():
            path = PurePosixPath(name)
            if path.is_absolute() or ".." in path.parts:
                return Verdict(False, f"refused unsafe path {name!r}")
            target = workspace / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
        (workspace / HIDDEN_TEST).write_text(hidden_test, encoding="utf-8")
        argv = _argv(Path(root), workspace, f"exec python3 {HIDDEN_TEST}")
        try:
            proc = subprocess.Popen(argv, cwd=workspace, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_limits,
                                    env=bwrap.COMMAND_ENV if argv[0] != "/bin/sh" else _plain_env(workspace))
        except OSError as error:
            return Verdict(False, f"could not start the judge: {error}")
        try:
            output, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # bwrap --die-with-parent takes its tree along
            proc.communicate()
            return Verdict(False, f"timed out after {timeout_s:.0f} s")
        tail = "\n".join(output.decode("utf-8", "replace").strip().splitlines()[-lines:])
        return Verdict(proc.returncode == 0, tail if proc.returncode else "")


def isolated() -> bool:
    """Whether judging runs under bubblewrap (else: a plain subprocess with a clean env)."""
    return bwrap.bwrap_path() is not None


def _argv(root: Path, workspace: Path, command: str) -> list[str]:
    path = bwrap.bwrap_path()
    if path is None:
        return ["/bin/sh", "-c", command]
    etc = root / "etc"
    bwrap.write_etc(etc)
    return bwrap.sandbox_argv(path, workspace, etc, command, TMP_BYTES)


def _plain_env(workspace: Path) -> dict[str, str]:
    return {**bwrap.COMMAND_ENV, "HOME": str(workspace)}


def _limits() -> None:
    """In the child, before exec: bounds a runaway solution (an endless loop, a memory bomb)."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (int(TIMEOUT_S) + 5, int(TIMEOUT_S) + 5))


def copy_tree(files: dict[str, str], target: Path) -> None:
    """Write `files` under `target` (for keeping a failed case's workspace to look at)."""
    shutil.rmtree(target, ignore_errors=True)
    for name, content in files.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
