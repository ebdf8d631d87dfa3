"""The live environment of a local sandbox: one bubblewrap tree per running sandbox.

A running sandbox is one long-lived bubblewrap process tree (its own PID, network, mount,
user, IPC and UTS namespaces; its own cgroups; its own /tmp), with the supervisor of
sandbox/supervisor.py inside. Commands are started by the supervisor, so what one command
leaves in the background (a server on 127.0.0.1:8000) is still there for the next one, and a
command's start costs a message and a fork instead of a new bubblewrap.

It is reached through a unix socket in the sandbox's private directory, `<name>/env/sock`,
which any worker process on the machine (root) can connect to; nothing inside the sandbox
can (it is not bound in). `<name>/env/env.json` records who started it (the owner worker), its
leader process (the reaper of sandbox/spawn.py) and its cgroups, so any worker can stop it.

The environment dies with its owner, exactly as a command used to die with its worker
(sandbox/spawn.py: reaper, PID namespace, death signals): a SIGKILLed worker leaves nothing
running. The next command, from whichever worker, finds the socket dead and starts a new
environment; if the old one had processes running in the background, that command's result
says they were stopped. Stopping a sandbox (terminate, expiry) kills its leader and
everything in its cgroups, from any worker.

No wait for the supervisor is unbounded: a late answer is followed by a ping on a new
connection (`ping`), and one that answers no ping is frozen (EnvUnresponsive); the worker then
stops the environment and starts a new one (sandbox/local.py).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import socket
import struct
import subprocess
import termios
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sandbox.cgroup import CommandGroup
from sandbox.ops import Proc

_MAX_LINE = 1 << 16  # a supervisor's answer is a short JSON line
_BACKLOG = 128


class EnvRecord(BaseModel):
    """`<name>/env/env.json`."""

    sandbox_id: str
    owner: Proc  # the worker that started it: the environment dies with it
    leader: Proc | None = None  # the reaper; killing it takes the whole tree down
    groups: list[str] = []  # cgroup directories, one per controller
    background: int = 0  # processes left in the background, as of the last command's end


def record_path(env_dir: Path) -> Path:
    return env_dir / "env.json"


def read_record(env_dir: Path) -> EnvRecord | None:
    try:
        return EnvRecord.model_validate_json(record_path(env_dir).read_bytes())
    except (FileNotFoundError, ValueError):
        return None


def write_record(env_dir: Path, record: EnvRecord) -> None:
    tmp = env_dir / f".env.{os.getpid()}.tmp"
    tmp.write_text(record.model_dump_json())
    os.replace(tmp, record_path(env_dir))


@contextmanager
def _short(path: Path) -> Iterator[str]:
    """`path` as a short name (`/proc/self/fd/N/sock`): a socket path is at most 107 bytes,
    and a sandbox root may sit deep."""
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def listen(env_dir: Path) -> socket.socket:
    """A fresh listening socket at `<env_dir>/sock`, for a new supervisor to inherit. Connections
    queue in it from the start, so nobody waits for the supervisor to be up."""
    sock_path = env_dir / "sock"
    sock_path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with _short(sock_path) as short:
        listener.bind(short)
    listener.listen(_BACKLOG)
    return listener


def answers(env_dir: Path) -> bool:
    """Whether a supervisor is there to connect to (immediate). A full backlog counts as there:
    whether it still answers is for a ping to tell (ping)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as probe:
        try:
            with _short(env_dir / "sock") as short:
                probe.connect(short)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            return False
        except BlockingIOError:
            return True
    return True


def stop(env_dir: Path, popen: subprocess.Popen[bytes] | None = None, why: str | None = None) -> None:
    """Kill the environment recorded in `env_dir` (blocking) and remove its cgroups and record.
    `why`: told to the model with the next command, which starts a new one (take_stop_reason)."""
    record = read_record(env_dir)
    if why is not None:
        (env_dir / "stopped").write_text(why)
    (env_dir / "sock").unlink(missing_ok=True)  # new commands now find no environment
    if record is not None:
        if record.leader is not None:
            record.leader.kill()
        group = CommandGroup({str(i): Path(d) for i, d in enumerate(record.groups)})
        try:
            group.remove()
        except OSError:
            pass  # left for the sweep of stale groups
        record_path(env_dir).unlink(missing_ok=True)
    if popen is not None:
        try:
            popen.wait(5)
        except subprocess.TimeoutExpired:
            pass


def take_stop_reason(env_dir: Path) -> str | None:
    """Why the environment was stopped on purpose while its sandbox lives on, once."""
    try:
        why = (env_dir / "stopped").read_text()
    except FileNotFoundError:
        return None
    (env_dir / "stopped").unlink(missing_ok=True)
    return why


class EnvLost(Exception):
    """The environment is not there (never started, stopped, or died with its owner)."""


class EnvUnresponsive(Exception):
    """The environment's supervisor is there but answers nothing, not even a ping (frozen)."""


class Channel:
    """One connection to a supervisor: JSON lines both ways, descriptors with the first answer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = b""
        self._fds: list[int] = []

    @classmethod
    async def open(cls, env_dir: Path) -> Channel:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            with _short(env_dir / "sock") as short:
                sock.connect(short)  # a unix socket connects at once, or not at all
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as e:
            sock.close()
            raise EnvLost(str(e)) from None
        except BlockingIOError:  # its backlog is full: it has not accepted a connection for long
            sock.close()
            raise EnvUnresponsive("the sandbox's supervisor accepts no more connections") from None
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def send(self, message: dict[str, Any]) -> None:
        """Send a short line. Best effort when the supervisor is gone (the answer tells)."""
        try:
            self.sock.send(json.dumps(message).encode() + b"\n")
        except OSError:
            pass

    async def line(self) -> dict[str, Any]:
        """The next answer; EnvLost if the supervisor hung up first."""
        loop = asyncio.get_running_loop()
        while b"\n" not in self._buf:
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, 65536, 4)
            except BlockingIOError:
                ready = loop.create_future()
                fd = self.sock.fileno()  # not the socket: asyncio would format its repr on every lookup
                loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
                try:
                    await ready
                finally:
                    loop.remove_reader(fd)
                continue
            except ConnectionResetError:
                data, fds = b"", []
            self._fds += fds
            if not data:
                raise EnvLost("the sandbox's supervisor hung up")
            self._buf += data
            if len(self._buf) > _MAX_LINE:
                raise EnvLost("the sandbox's supervisor sent an oversized answer")
        raw, self._buf = self._buf.split(b"\n", 1)
        try:
            answer = json.loads(raw)
        except ValueError:
            raise EnvLost("the sandbox's supervisor sent garbage") from None
        if not isinstance(answer, dict):
            raise EnvLost("the sandbox's supervisor sent garbage")
        return answer

    def unread(self) -> int:
        """Bytes sent on this connection that the supervisor has not read yet (SIOCOUTQ): while
        any are left it has not seen the whole request, so it has not acted on it."""
        return int(struct.unpack("i", fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0])

    def take_fds(self) -> list[int]:
        fds, self._fds = self._fds, []
        return fds

    def close(self) -> None:
        for fd in self.take_fds():
            os.close(fd)
        self.sock.close()


async def ping(env_dir: Path, timeout_s: float) -> bool:
    """Whether the supervisor answers a ping within `timeout_s` (an environment that is gone
    does not). Asked when an answer is late: a busy supervisor answers, a frozen one does not."""
    try:
        channel = await Channel.open(env_dir)
    except (EnvLost, EnvUnresponsive):
        return False
    try:
        channel.send({"ping": True})
        async with asyncio.timeout(timeout_s):
            return (await channel.line()).get("pong") is True
    except (EnvLost, TimeoutError):
        return False
    finally:
        channel.close()


async def stop_op(env_dir: Path, op_id: str, wait_s: float) -> None:
    """Ask the supervisor to stop the command running under `op_id` (and never start it later);
    return once it has. No environment: nothing runs there."""
    try:
        channel = await Channel.open(env_dir)
    except EnvLost:
        return
    try:
        channel.send({"stop": op_id})
        async with asyncio.timeout(wait_s):
            await channel.line()
    except EnvLost:
        return  # it went away, and what ran in it with it
    finally:
        channel.close()
