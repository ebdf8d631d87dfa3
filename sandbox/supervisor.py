"""The supervisor inside a live local sandbox: it starts each command and reports how it ended.

This file runs *inside* the sandbox, as `/usr/bin/python3 -I -S supervisor.py FD WORKDIR ENV`,
started once per running sandbox by sandbox/env.py. It imports nothing of this project (the
sandbox sees only its own copy of this file) and only the standard library.

FD is a listening unix socket the worker bound outside the sandbox; every worker process of
the machine can connect to it, nothing inside the sandbox can (the path is not bound in, and
this process is not dumpable, so no command can borrow the descriptor).

It runs as PID 1 of the sandbox's PID namespace (bubblewrap's `--as-pid-1`), so no command can
stop or kill it: the kernel drops every signal sent to a namespace's init from inside unless
the init handles it (SIGSTOP and SIGKILL never), and `kill -1` skips it. It runs as the same uid
as the commands, so that is what keeps them from freezing it (`kill -STOP -1` did); ptrace is
refused by the seccomp filter and by its being non-dumpable. Being the init, it also collects
every orphan that exits in the sandbox. The only signal it handles is SIGCHLD (harmless if a
command sends it).

One connection is one request, a JSON line:

- `{"run": command, "op": op_id or null}`: fork `sh -c command` in a process group of its own,
  with stdin /dev/null and fresh pipes for stdout and stderr. The answer is `{"pid": n}` with
  the pipes' read ends attached (SCM_RIGHTS), or `{"unstarted": reason, "background": n}`
  when no process could be made (the sandbox's process limit is full). When the shell exits:
  `{"exit": code, "background": n}` (code 128+N for signal N; n = processes still running in
  the sandbox outside every running command's group). A line `{"kill": true}` from the worker,
  or the worker closing the connection before the exit, kills the command's whole group.
  After the exit, `{"kill_group": true}` kills what the command left running in its group and
  answers `{"killed": k, "background": n}` once none of it is left.
- `{"stop": op_id}`: kill the group of the command running under op_id and answer
  `{"stopped": true}` once its shell is reaped (at once if none runs). That a late start never
  runs is the worker's part (sandbox/ops.py).
- `{"ping": true}`: answered `{"pong": true}` at once; the worker asks when an answer is late,
  to tell a busy supervisor from a frozen one.

What a command leaves in the background keeps running in the sandbox until it ends. After a
command's report has been read, this process keeps its own copy of the output pipes and reads
(and discards) what background processes still write there, so they never block on a full pipe
nor die of SIGPIPE.
"""

import ctypes
import json
import os
import selectors
import signal
import socket
import sys
import time

_MAX_LINE = 1 << 20


class Command:
    def __init__(self, conn, pid, op, out_r, err_r):
        self.conn, self.pid, self.op = conn, pid, op
        self.pipes = [out_r, err_r]  # our copies of the read ends, drained once the worker is done
        self.status = None  # its shell's wait status, once reaped
        self.exited = False  # reported
        self.killed = False  # the worker asked for it to be killed (a timeout, a cancelled attempt)
        self.waiters = []  # connections of `stop` requests waiting for this command to end


class Supervisor:
    def __init__(self, listener, workdir, env):
        self.listener, self.workdir, self.env = listener, workdir, env
        self.sel = selectors.DefaultSelector()
        self.sel.register(listener, selectors.EVENT_READ, ("accept", None))
        self.commands = {}  # conn -> Command (conn is the run request's connection)
        self.shells = {}  # pid -> Command whose shell has not been reaped yet
        self.ended = []  # Commands reaped but not yet reported
        self.buffers = {}  # conn -> bytes received so far
        # SIGCHLD wakes the loop through this pipe; the handler itself does nothing.
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.sel.register(wake_r, selectors.EVENT_READ, ("reap", None))

    def serve(self):
        while True:
            for key, _ in self.sel.select():
                kind, data = key.data
                try:
                    getattr(self, "on_" + kind)(key.fileobj, data)
                except (OSError, ValueError, TypeError, KeyError):
                    # A worker that went away mid-answer, or a request that is not one: only
                    # workers can connect, so this is a bug on their side; drop the connection.
                    if kind == "request":
                        self.hang_up(key.fileobj)
                self.report_ended()

    def on_accept(self, listener, _):
        conn, _ = listener.accept()
        conn.setblocking(False)
        self.buffers[conn] = b""
        self.sel.register(conn, selectors.EVENT_READ, ("request", None))

    def on_request(self, conn, _):
        try:
            chunk = conn.recv(65536)
        except BlockingIOError:
            return
        if not chunk:
            self.hang_up(conn)
            return
        buf = self.buffers.get(conn, b"") + chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            self.buffers[conn] = buf
            self.handle(conn, json.loads(line))
            if conn not in self.buffers:
                return
        if len(buf) > _MAX_LINE:
            self.hang_up(conn)
            return
        self.buffers[conn] = buf

    def handle(self, conn, req):
        if "run" in req:
            self.run(conn, req["run"], req.get("op"))
        elif "kill" in req:
            command = self.commands.get(conn)
            if command is not None and not command.exited:
                command.killed = True
                kill_group(command.pid)
        elif "kill_group" in req:
            self.kill_leftovers(conn)
        elif "stop" in req:
            self.stop(conn, req["stop"])
        elif "ping" in req:
            self.answer_and_close(conn, {"pong": True})

    def run(self, conn, command, op):
        fds = []
        try:
            fds += os.pipe()
            fds += os.pipe()
            pid = os.fork()
        except OSError as e:  # EAGAIN from fork: the sandbox's process limit is full
            for fd in fds:
                os.close(fd)
            self.answer_and_close(conn, {"unstarted": e.strerror or str(e), "background": self.background()})
            return
        out_r, out_w, err_r, err_w = fds
        if pid == 0:
            self.child(command, out_w, err_w)
        os.close(out_w)
        os.close(err_w)
        cmd = Command(conn, pid, op, out_r, err_r)
        self.commands[conn] = cmd
        self.shells[pid] = cmd
        socket.send_fds(conn, [json.dumps({"pid": pid}).encode() + b"\n"], [out_r, err_r])

    def child(self, command, out_w, err_w):
        try:
            os.setpgid(0, 0)
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            signal.set_wakeup_fd(-1)
            os.closerange(3, 1 << 16)
            for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD, signal.SIGINT):  # as a shell would have them
                signal.signal(sig, signal.SIG_DFL)
            if self.workdir != ".":  # "." (unprotected, no bubblewrap): the directory it was started in
                os.chdir(self.workdir)
            os.execve("/bin/sh", ["/bin/sh", "-c", command], self.env)
        except BaseException as e:  # noqa: BLE001 - the child must never return into the loop
            try:
                os.write(2, f"sandbox: could not start the command: {e}\n".encode())
            finally:
                os._exit(126)

    def on_reap(self, wake_r, _):
        try:
            while os.read(wake_r, 4096):  # the wakeup bytes: empty it (it ends in BlockingIOError)
                pass
        except BlockingIOError:
            pass
        self.reap()

    def reap(self):
        """Collect every child that has ended: commands' shells (reported by report_ended) and,
        as the sandbox's init, every orphan, whose pid would otherwise stay taken."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            cmd = self.shells.pop(pid, None)
            if cmd is not None:
                cmd.status = status
                self.ended.append(cmd)

    def report_ended(self):
        while self.ended:
            self.on_exit(self.ended.pop(0))

    def until_gone(self, pgid, timeout=2.0):
        """Wait (briefly) until no process of group `pgid` is left, collecting them as they go."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.reap()
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.005)

    def on_exit(self, cmd):
        cmd.exited = True
        code = os.waitstatus_to_exitcode(cmd.status)
        if cmd.waiters or cmd.killed:
            kill_group(cmd.pid)  # stopped: what it left in the background goes too
            # Reported once the whole group is gone, not only its leader: whoever is told
            # "stopped" (stop_op, a cancelled attempt) may go on to run the next attempt.
            self.until_gone(cmd.pid)
        for waiter in cmd.waiters:
            self.answer_and_close(waiter, {"stopped": True})
        cmd.waiters = []
        if cmd.conn in self.commands:
            try:
                send(cmd.conn, {"exit": code if code >= 0 else 128 - code, "background": self.background()})
            except OSError:
                pass  # the worker went away; its hang-up is read next

    def kill_leftovers(self, conn):
        """After its exit: kill what the command left running in its group (it hit the process
        limit, so that is what holds it), and say how many once none of it is left."""
        cmd = self.commands.get(conn)
        if cmd is None or not cmd.exited:
            raise ValueError("kill_group before the command's exit")
        left = sum(1 for _, pgid in processes() if pgid == cmd.pid)
        kill_group(cmd.pid)
        self.until_gone(cmd.pid)
        send(conn, {"killed": left, "background": self.background()})

    def stop(self, conn, op):
        running = [c for c in self.commands.values() if c.op == op and not c.exited]
        if not running:
            self.answer_and_close(conn, {"stopped": True})
            return
        for cmd in running:
            cmd.waiters.append(conn)
            kill_group(cmd.pid)

    def answer_and_close(self, conn, message):
        try:
            send(conn, message)
        except OSError:
            pass
        self.hang_up(conn)

    def hang_up(self, conn):
        """The worker is done with this connection (or gone): a command still running is killed,
        and from now on its output pipes are drained here."""
        self.buffers.pop(conn, None)
        try:
            self.sel.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()
        cmd = self.commands.pop(conn, None)
        if cmd is None:
            return
        if not cmd.exited:
            kill_group(cmd.pid)
            # Reaped as any child, then on_exit no longer reports (the connection is gone).
        for fd in cmd.pipes:
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, ("drain", None))

    def on_drain(self, fd, _):
        try:
            if os.read(fd, 65536):
                return
        except BlockingIOError:
            return
        self.sel.unregister(fd)
        os.close(fd)

    def background(self):
        """Processes in the sandbox besides this supervisor (its init) and running commands' groups."""
        busy = {c.pid for c in self.commands.values() if not c.exited}
        ours = {1, os.getpid()}
        return sum(1 for pid, pgid in processes() if pid not in ours and pgid not in busy)


def processes():
    """(pid, process group) of every live process in the sandbox (zombies left out)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        if fields[0] not in (b"Z", b"X"):
            yield int(entry), int(fields[2])


def send(conn, message):
    conn.setblocking(True)
    try:
        conn.sendall(json.dumps(message).encode() + b"\n")
    finally:
        conn.setblocking(False)


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main():
    fd, workdir, env = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    # Not dumpable: no command (same uid) can ptrace this process or open its descriptors.
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Python's own handler would let a command's SIGINT in
    listener = socket.socket(fileno=fd)
    listener.setblocking(False)
    os.set_inheritable(fd, False)
    Supervisor(listener, workdir, env).serve()


if __name__ == "__main__":
    main()
