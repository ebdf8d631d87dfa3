"""What happens in a command's process between fork and exec (the `preexec_fn`).

1. Join the command's cgroups, so that nothing it ever forks is outside them.
2. Set its rlimits, which everything below inherits.
3. Die with the worker. bwrap's --die-with-parent alone leaves a gap: bwrap arms it in the
   sandbox's init only after setting the sandbox up, so a worker SIGKILLed in those
   milliseconds left the command running (13 of 15 kills in a command's first 20 ms). So, as
   root, the child splits in two: a reaper that stays behind, and below it bwrap as PID 1
   of a new PID namespace. Each arms its death signal and then checks that its parent is
   still there, so there is no window: the worker dies -> the reaper dies -> bwrap (PID 1)
   dies -> the kernel kills everything in its namespace, sandbox included. (PID 1 cannot
   see its parent's pid, so it checks a pipe whose other end only the reaper holds.)
4. Show bwrap the directories it binds (the workspace, our /etc files) at fixed paths. bwrap
   runs as the unprivileged host uid, which may not be able to reach the sandbox root at all
   (a clone in a 0700 directory, or under /root), and bwrap 0.8 resolves even `--bind-fd`
   sources by path. So, still as root, the child takes a mount namespace of its own, opens
   the directories, and binds them under a fresh tmpfs on /tmp. None of it is visible
   outside the child, and it all goes with the command's processes; the command itself sees
   only what bwrap binds from there, as before.
5. Drop to the unprivileged host uid (after the split and the mounts: both need root).

Only system calls are made here, so it is safe in a threaded worker.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
from collections.abc import Sequence

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x2, 0x4, 0x8, 0x1000, 0x4000, 0x40000
SETUP_FAILED = 126  # exit status when the child cannot set itself up
STAGE = "/tmp"  # where step 4 shows bwrap its directories; sandbox/bwrap.py names the paths


def prepare_child(cgroup_procs: list[int], rlimits: list[tuple[int, int]], run_as: tuple[int, int] | None,
                  worker: int, stage: Sequence[tuple[str, str]] = ()) -> None:
    """`stage`: (host directory, path under STAGE) pairs for step 4; only done as root."""
    for fd in cgroup_procs:
        os.write(fd, b"0")  # "0" = the writing process
    for which, value in rlimits:
        resource.setrlimit(which, (value, value))
    _die_with(worker)
    if run_as is None:
        return
    if _libc.unshare(_CLONE_NEWPID) != 0:
        os._exit(SETUP_FAILED)
    alive_r, alive_w = os.pipe()  # EOF on alive_r = the reaper is gone
    child = _libc.fork()  # not os.fork(): its hooks take locks other threads may have held
    if child < 0:
        os._exit(SETUP_FAILED)
    if child > 0:
        _reap(child, keep=alive_w)
    os.close(alive_w)
    os.set_blocking(alive_r, False)
    _die_with(None, alive_r)
    if stage:
        _stage(stage)
    os.setgroups([])
    os.setresgid(run_as[1], run_as[1], run_as[1])
    os.setresuid(run_as[0], run_as[0], run_as[0])
    _die_with(None, alive_r)  # changing uid disarmed it
    os.close(alive_r)


def _stage(binds: Sequence[tuple[str, str]]) -> None:
    """Step 4: bind each host directory at its path under a tmpfs on STAGE, privately."""
    try:
        _check(_libc.unshare(_CLONE_NEWNS), "unshare the mount namespace")
        _check(_libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "make / private")
        # Opened in the new namespace (a bind source must be in it) and before the tmpfs hides them.
        fds = [os.open(host, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC) for host, _ in binds]
        _check(_libc.mount(b"tmpfs", STAGE.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                           b"mode=0711,size=64k"), f"mount a tmpfs on {STAGE}")
        for fd, (_, staged) in zip(fds, binds, strict=True):
            os.mkdir(staged, 0o700)  # covered by the bind: the directory's own mode applies
            _check(_libc.mount(f"/proc/self/fd/{fd}".encode(), staged.encode(), None, _MS_BIND, None),
                   f"bind {staged}")
            os.close(fd)
    except OSError as e:
        _fail(f"{e}")


def _check(result: int, what: str) -> None:
    if result != 0:
        _fail(f"{what}: {os.strerror(ctypes.get_errno())}")


def _fail(why: str) -> None:
    os.write(2, f"sandbox setup failed: {why}\n".encode())  # stderr is the command's
    os._exit(SETUP_FAILED)


def _die_with(parent: int | None, alive: int | None = None) -> None:
    """SIGKILL this process when its parent dies (the setting survives exec); then check the
    parent is still there (`parent` is its pid, or `alive` a pipe only it writes to)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is not None and os.getppid() == parent:
        return
    if alive is not None:
        try:
            os.read(alive, 1)  # b"" (EOF): every writer is gone
        except BlockingIOError:
            return
    os._exit(128 + signal.SIGKILL)  # it died before we armed: act as if the signal had come


def _reap(child: int, keep: int) -> None:
    """Wait for the PID-1 child and exit with its status. Never returns."""
    # A fork of the worker keeps its command line; a distinct name keeps `pgrep` honest.
    _libc.prctl(_PR_SET_NAME, b"sandbox-reaper", 0, 0, 0)
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())  # only SIGKILL gets through
    # Close everything else, Popen's error pipe included: the worker must see "exec done" once
    # the child has exec'd bwrap, and the output pipes must close when the sandbox ends.
    os.closerange(0, keep)
    os.closerange(keep + 1, 1 << 20)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            os._exit(SETUP_FAILED)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)
