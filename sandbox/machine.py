"""What this machine offers the local backend, checked once when the backend is built.

Each protection is probed for real (a sandboxed `echo`, a throw-away cgroup). Anything
missing stops the worker with SandboxUnprotected naming it, unless SANDBOX_ALLOW_UNPROTECTED=1:
then every missing item is logged loudly and the backend runs without it. Never silently.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import subprocess
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sandbox.bwrap import LAUNCHER_ENV, bwrap_path, sandboxed
from sandbox.cgroup import Cgroups
from sandbox.limits import MB, LocalLimits
from sandbox.seccomp import UnsupportedArch, deny_filter, filter_fd
from sandbox.spawn import prepare_child

logger = logging.getLogger(__name__)


class SandboxUnprotected(RuntimeError):
    """This machine lacks a protection the local sandbox relies on, and
    SANDBOX_ALLOW_UNPROTECTED=1 was not given."""


@dataclass(frozen=True)
class Machine:
    bwrap: str | None  # None: run commands without bubblewrap (allowed unprotected)
    cgroups: Cgroups | None  # None: no pids/memory cgroups (allowed unprotected)
    owner: tuple[int, int]  # host uid/gid that owns workspace files and runs commands
    drop_to: tuple[int, int] | None  # switch commands to this uid/gid (None: not root)
    rlimits: list[tuple[int, int]]
    seccomp: bool  # bwrap loads sandbox/seccomp.py's filter (False: allowed unprotected)


def check_machine(root: Path, limits: LocalLimits) -> Machine:
    missing: list[str] = []
    owner, drop_to = (os.geteuid(), os.getegid()), None
    if os.geteuid() == 0:
        owner = drop_to = (limits.host_uid, limits.host_gid)
    else:
        missing.append(f"root: the worker runs as uid {os.geteuid()}, so commands cannot be "
                       f"switched to the unprivileged uid {limits.host_uid}")

    cgroups: Cgroups | None = None
    try:
        cgroups = Cgroups()
        problem = cgroups.probe()
    except OSError as e:
        problem = f"cgroup v1 pids and memory hierarchies ({e})"
    if problem:
        cgroups = None
        missing.append(problem)

    seccomp = True
    try:
        deny_filter()
    except UnsupportedArch as e:
        seccomp = False
        missing.append(f"a seccomp filter: {e} in sandbox/seccomp.py")

    bwrap = bwrap_path()
    if bwrap is None:
        missing.append("bubblewrap: no `bwrap` on /usr/bin:/bin (apt-get install bubblewrap)")
    elif problem := _probe_bwrap(bwrap, root, limits, owner, drop_to, seccomp):
        bwrap = None
        missing.append(f"bubblewrap does not run here{' with its seccomp filter' if seccomp else ''}: {problem}")

    if missing:
        if not limits.allow_unprotected:
            raise SandboxUnprotected(
                "the local sandbox cannot protect this machine; missing: " + "; ".join(missing)
                + ". Fix that, or set SANDBOX_ALLOW_UNPROTECTED=1 to run commands without it "
                "(only for trusted code on a machine you do not care about).")
        for item in missing:
            logger.warning("!!! SANDBOX UNPROTECTED (SANDBOX_ALLOW_UNPROTECTED=1): missing %s", item)
    return Machine(bwrap, cgroups, owner, drop_to, _rlimits(limits, memory_cgroup=cgroups is not None),
                   seccomp and bwrap is not None)


def _probe_bwrap(bwrap: str, root: Path, limits: LocalLimits, owner: tuple[int, int],
                 drop_to: tuple[int, int] | None, seccomp: bool) -> str | None:
    """Run a real sandboxed `echo ok`, started exactly as commands will be."""
    probe = root / f".probe-{os.getpid()}" / "project"
    shutil.rmtree(probe.parent, ignore_errors=True)
    probe.mkdir(parents=True)
    os.chown(probe, *owner)
    filter_fds = [filter_fd()] if seccomp else []
    try:
        argv, stage = sandboxed(bwrap, probe, root / ".etc", "echo ok", limits.tmp_mb * MB,
                                staged=drop_to is not None, seccomp_fd=filter_fds[0] if filter_fds else None)
        done = subprocess.run(argv, env=LAUNCHER_ENV, capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL, pass_fds=filter_fds,
                              preexec_fn=partial(prepare_child, [], [], drop_to, os.getpid(), stage))
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    finally:
        for fd in filter_fds:
            os.close(fd)
        shutil.rmtree(probe.parent, ignore_errors=True)
    if done.returncode != 0 or done.stdout.strip() != "ok":
        return (done.stderr.strip() or f"exit status {done.returncode}")[:500]
    return None


def _rlimits(limits: LocalLimits, memory_cgroup: bool) -> list[tuple[int, int]]:
    wanted = [(resource.RLIMIT_CPU, limits.cpu_seconds),
              (resource.RLIMIT_FSIZE, limits.file_size_mb * MB),
              (resource.RLIMIT_NOFILE, limits.open_files),
              (resource.RLIMIT_CORE, 0)]
    if not memory_cgroup:  # an address-space cap is the next best thing
        wanted.append((resource.RLIMIT_AS, limits.memory_mb * MB))
    out = []
    for which, value in wanted:  # never ask for more than the hard limit we have
        hard = resource.getrlimit(which)[1]
        out.append((which, value if hard == resource.RLIM_INFINITY else min(value, hard)))
    return out
