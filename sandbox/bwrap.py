"""The one place that builds a sandboxed command line.

A command runs as `/bin/sh -c <command>` inside bubblewrap: every namespace unshared (so
no network but its own loopback, its own PIDs, hostname and IPC), a read-only root with
/usr and a few /etc files, a fresh size-limited tmpfs at /tmp, the workspace read-write at
/project, an environment built from nothing (so the service's own variables, API keys and
tokens, never reach a command), and the seccomp filter of sandbox/seccomp.py. Resource
limits are not bubblewrap's job: sandbox/spawn.py and sandbox/cgroup.py apply them around
this argv.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from sandbox.paths import MOUNT_POINT
from sandbox.protocol import COMMAND_DEFAULTS
from sandbox.spawn import STAGE

SANDBOX_UID = 1000  # the uid and gid a command sees; mapped to the unprivileged host uid
SANDBOX_GID = 1000

# The whole environment of a command. Nothing is inherited from the service.
COMMAND_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin:/opt/sandbox/bin",
    "HOME": "/tmp",  # fresh each command; persistent state belongs in /project
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "USER": "sandbox",
    "LOGNAME": "sandbox",
    "SHELL": "/bin/sh",
    "TMPDIR": "/tmp",
    # So `git commit` works without a global config (HOME is fresh every command).
    "GIT_AUTHOR_NAME": "sandbox",
    "GIT_AUTHOR_EMAIL": "sandbox@localhost",
    "GIT_COMMITTER_NAME": "sandbox",
    "GIT_COMMITTER_EMAIL": "sandbox@localhost",
    **COMMAND_DEFAULTS,
}

# The environment of the bwrap process itself: it only needs to exec.
LAUNCHER_ENV = {"PATH": "/usr/bin:/bin"}

# Host files shown read-only inside, when the host has them.
_HOST_ETC = ("/etc/alternatives", "/etc/ssl", "/etc/ca-certificates", "/etc/ld.so.cache", "/etc/localtime")
# Commands that models (and people) expect but Debian names differently: `python` is
# `python3` there. Provided in /opt/sandbox/bin, last on PATH, only when the host lacks them.
_COMPAT_COMMANDS = {"python": "/usr/bin/python3", "pip": "/usr/bin/pip3"}
# Top-level directories that merged-/usr systems make symlinks into /usr.
_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

# A minimal /etc of our own: enough for tools that look up the current user or localhost.
ETC_FILES = {
    "passwd": (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
               f"sandbox:x:{SANDBOX_UID}:{SANDBOX_GID}:sandbox:/tmp:/bin/sh\n"
               "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
    "group": f"root:x:0:\nsandbox:x:{SANDBOX_GID}:\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1 localhost sandbox\n::1 localhost\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
}


def bwrap_path() -> str | None:
    return shutil.which("bwrap", path=LAUNCHER_ENV["PATH"])


# The supervisor of a live sandbox (sandbox/supervisor.py), shown read-only inside at this path.
SUPERVISOR = "/opt/sandbox/supervisor.py"
_SUPERVISOR_SOURCE = Path(__file__).with_name("supervisor.py")


def write_etc(etc_dir: Path) -> None:
    """Write the sandbox's own /etc files and the supervisor (world-readable, owned by the service)."""
    etc_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    files = {**ETC_FILES, "supervisor.py": _SUPERVISOR_SOURCE.read_text()}
    for name, text in files.items():
        path = etc_dir / name
        if not path.exists() or path.read_text() != text:
            # A name of its own: workers sharing a data dir (a cluster's) write these at once.
            tmp = etc_dir / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
            tmp.write_text(text)
            tmp.chmod(0o644)
            tmp.replace(path)


def sandboxed(bwrap: str, workspace: Path, etc_dir: Path, command: str, tmp_bytes: int,
              *, staged: bool, seccomp_fd: int | None, program: list[str] | None = None,
              ) -> tuple[list[str], list[tuple[str, str]]]:
    """The argv of a sandboxed command, and what spawn.prepare_child must stage for it.
    `program` runs instead of `sh -c command` (the supervisor of a live sandbox).
    `seccomp_fd`: the filter of sandbox/seccomp.py, for bwrap to read (None: no filter).

    `staged` (the worker is root and drops commands to the host uid): bwrap finds the
    workspace and our /etc files where the child stages them, so the host uid needs no way
    to the sandbox root (spawn.py, step 4). Otherwise bwrap runs as the worker's own uid and
    reads them where they are.
    """
    if not staged:
        return sandbox_argv(bwrap, workspace, etc_dir, command, tmp_bytes, seccomp_fd, program), []
    project, etc = f"{STAGE}/project", f"{STAGE}/etc"
    return (sandbox_argv(bwrap, Path(project), Path(etc), command, tmp_bytes, seccomp_fd, program),
            [(str(workspace), project), (str(etc_dir), etc)])


def sandbox_argv(bwrap: str, workspace: Path, etc_dir: Path, command: str, tmp_bytes: int,
                 seccomp_fd: int | None = None, program: list[str] | None = None) -> list[str]:
    """`bwrap ... -- /bin/sh -c command` (or `-- *program`), with `workspace` bound read-write
    at /project."""
    argv = [
        bwrap,
        "--unshare-all",  # user, ipc, pid, net (only a private lo), uts, cgroup
        "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID),
        "--disable-userns",  # no nested user namespaces: less kernel surface to attack
        "--die-with-parent",  # the worker dies -> the whole sandboxed tree dies
        # The supervisor (sandbox/supervisor.py) is the PID namespace's init, out of its commands'
        # reach: nothing inside can stop or kill it. It collects the sandbox's orphans itself.
        *(["--as-pid-1"] if program else []),
        "--new-session",  # no TIOCSTI into a terminal outside
        "--hostname", "sandbox",
        "--ro-bind", "/usr", "/usr",
    ]
    for top in _USR_LINKS:
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    for path in _HOST_ETC:
        argv += ["--ro-bind-try", path, path]
    for name in ETC_FILES:
        argv += ["--ro-bind", str(etc_dir / name), f"/etc/{name}"]
    argv += ["--ro-bind", str(etc_dir / "supervisor.py"), SUPERVISOR]
    argv += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(tmp_bytes), "--tmpfs", "/tmp",
        "--dir", "/var", "--symlink", "../tmp", "/var/tmp",
        "--dir", "/opt/sandbox/bin",
        *compat_links(),
        "--bind", str(workspace), MOUNT_POINT,
        "--remount-ro", "/",  # the sandbox's own root: only /project and /tmp are writable
        "--chdir", MOUNT_POINT,
        "--clearenv",
    ]
    for key, value in COMMAND_ENV.items():
        argv += ["--setenv", key, value]
    if seccomp_fd is not None:  # loaded last, just before the exec: everything in the sandbox runs under it
        argv += ["--seccomp", str(seccomp_fd)]
    return [*argv, "--", *(program or ["/bin/sh", "-c", command])]


def compat_links() -> list[str]:
    argv: list[str] = []
    for name, target in _COMPAT_COMMANDS.items():
        if os.path.exists(target) and not os.path.exists(f"/usr/bin/{name}"):
            argv += ["--symlink", target, f"/opt/sandbox/bin/{name}"]
    return argv
