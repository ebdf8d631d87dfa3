"""Per-sandbox cgroups (v1): the process and memory limits bubblewrap cannot give.

Each live sandbox (sandbox/env.py) gets its own group in the `pids` and `memory` hierarchies,
named `durable-agent/env-<worker pid>-<n>` below the worker's own cgroup (so a limit set on the
worker, by systemd or a container runtime, still covers its sandboxes). The sandbox's first
process joins the groups in its pre-exec hook, before bubblewrap starts, so nothing it or any
of its commands forks can be outside them. A group is removed when its sandbox stops; groups
left by a SIGKILLed worker are swept by the next backend that starts on the machine (their
owner pid is dead). (`worker-<pid>-<n>` groups, one per command, are what older versions made;
the sweep still removes them.)
"""

from __future__ import annotations

import errno
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("pids", "memory")
GROUP_DIR = "durable-agent"
_OURS = re.compile(r"(?:(?:worker|env)-(\d+)-\d+|probe-(\d+))")  # groups this module makes, by owner pid


def _own_path(controller: str) -> str:
    """This process's cgroup path in a v1 hierarchy, from /proc/self/cgroup."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return path
    raise FileNotFoundError(f"no cgroup v1 '{controller}' hierarchy in /proc/self/cgroup")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rmdir(path: Path, wait_s: float = 2.0) -> None:
    """rmdir a group; EBUSY lasts while its killed tasks finish exiting."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@dataclass
class CommandGroup:
    """One command's groups, one directory per controller."""

    dirs: dict[str, Path]

    def open_procs(self) -> list[int]:
        """Write-only descriptors of each cgroup.procs; the child writes "0" to join."""
        return [os.open(d / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC) for d in self.dirs.values()]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs.values():
            try:
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            except FileNotFoundError:
                pass
        return found

    def kill_all(self, wait_s: float = 2.0) -> bool:
        """SIGKILL every process in the group until it is empty. Blocking; True when empty."""
        deadline = time.monotonic() + wait_s
        while pids := self.pids():
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def processes(self) -> int:
        """Processes and threads in the group now (what pids.max limits)."""
        return int((self.dirs["pids"] / "pids.current").read_text())

    def limit_hits(self) -> tuple[int, int]:
        """(processes the OOM killer took, forks refused at pids.max)."""
        oom = forks = 0
        try:
            for line in (self.dirs["memory"] / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill "):
                    oom = int(line.split()[1])
            for line in (self.dirs["pids"] / "pids.events").read_text().splitlines():
                if line.startswith("max "):
                    forks = int(line.split()[1])
        except (KeyError, OSError, ValueError):
            pass
        return oom, forks

    def remove(self) -> None:
        """Kill what is left and delete the groups. Blocking."""
        self.kill_all()
        for d in self.dirs.values():
            _rmdir(d)


class Cgroups:
    """Creates per-command groups below `<hierarchy>/<own cgroup>/durable-agent`."""

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.parents = {c: root / c / _own_path(c).lstrip("/") / GROUP_DIR for c in CONTROLLERS}
        self._count = 0

    def create(self, pids_max: int, memory_bytes: int) -> CommandGroup:
        """The groups of one live sandbox (sandbox/env.py), named after the worker that starts it."""
        self._count += 1
        return self._make(f"env-{os.getpid()}-{self._count}", pids_max, memory_bytes)

    def _make(self, name: str, pids_max: int, memory_bytes: int) -> CommandGroup:
        group = CommandGroup({c: parent / name for c, parent in self.parents.items()})
        try:
            for d in group.dirs.values():
                for attempt in range(3):  # another worker's close() may remove the parent in between
                    try:
                        d.mkdir(parents=True, exist_ok=True)
                        break
                    except FileNotFoundError:
                        if attempt == 2:
                            raise
            (group.dirs["pids"] / "pids.max").write_text(str(pids_max))
            mem = group.dirs["memory"]
            (mem / "memory.limit_in_bytes").write_text(str(memory_bytes))
            if (mem / "memory.memsw.limit_in_bytes").exists():  # swap too, when it is accounted
                (mem / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
        except BaseException:
            group.remove()
            raise
        return group

    def probe(self) -> str | None:
        """None when per-command groups can be made here, else what is missing."""
        try:
            self._make(f"probe-{os.getpid()}", 64, 64 << 20).remove()
        except (OSError, ValueError) as e:
            return f"cgroup v1 pids+memory groups under {', '.join(map(str, self.parents.values()))} ({e})"
        return None

    def sweep_stale(self) -> int:
        """Remove groups whose worker is dead (it was SIGKILLed mid-command). Returns how many."""
        removed = 0
        for controller, parent in self.parents.items():
            if not parent.is_dir():
                continue
            for d in parent.iterdir():
                ours = _OURS.fullmatch(d.name)
                if not ours or not d.is_dir() or _pid_alive(int(ours.group(1) or ours.group(2))):
                    continue
                try:
                    CommandGroup({controller: d}).remove()
                    removed += 1
                except OSError:
                    pass
        return removed

    def close(self) -> None:
        """Remove the parent groups if no worker uses them any more (creating a group
        recreates its parent, so a concurrent worker is not hurt)."""
        for parent in self.parents.values():
            try:
                parent.rmdir()
            except OSError:
                pass  # another worker's groups are still in it
