"""`python -m stack run`: start the product locally and keep it running until Ctrl-C.

It starts restate-server (data in $AGENT_DATA_DIR/restate), the offline model when no OpenAI
endpoint is configured, the worker and the web UI (ui/); registers the worker; prints where to go; and then
restarts whichever of them dies, SIGKILL included. Restate keeps every invocation's journal, so a
restart loses no work: the invocations resume where they stopped.

Each child's PID is recorded under $AGENT_DATA_DIR/run/, so that a run that was itself killed
leaves nothing behind that the next run cannot clean up.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from app.config import Settings, settings
from stack import processes
from stack.identity import RequestIdentity, ensure_identity
from stack.processes import Process

POLL_INTERVAL_S = 0.5
# A child that dies sooner than this after starting may be crash-looping: back off.
STABLE_AFTER_S = 10.0
MAX_BACKOFF_S = 30.0

# Printed at start; keep them in step with the README.
EXAMPLES = [
    "curl -s -X POST {ingress}/Agent/demo/message -H 'content-type: application/json' \\\n"
    "       -d '{{\"text\": \"Write hello.py that prints hello, then run it\"}}'",
    "curl -s -X POST {ingress}/Agent/demo/status",
    "curl -s -X POST {ingress}/Agent/demo/history",
    "curl -s -X POST {ingress}/Agent/demo/interrupt",
]


class StackError(Exception):
    """Something the user has to fix before the stack can run; the message says what."""


@dataclass
class Child:
    """One supervised process: how to start it, and how to tell it is ready for work."""

    name: str
    start: Callable[[], Process]
    ready: Callable[[Process], None]
    log_path: Path
    proc: Process | None = None
    started_at: float = 0.0
    quick_deaths: int = 0
    next_try: float = 0.0
    cmdline: list[str] = field(default_factory=list)


class Supervisor:
    """Owns the product's processes for one `python -m stack run`."""

    def __init__(self, config: Settings) -> None:
        self.config = config
        self.data_dir = config.data_dir.resolve()
        self.logs = self.data_dir / "logs"
        self.run_dir = self.data_dir / "run"
        self.local_model = not config.openai_api_key and not config.openai_base_url
        # Restate signs its requests with this key pair and the worker refuses unsigned ones
        # (stack/identity.py); generated in the data dir on the first start, then kept.
        self.identity: RequestIdentity | None = None
        self.children = [self._restate()]
        if self.local_model:
            self.children.append(self._model())
        self.children.append(self._worker())
        self.children.append(self._ui())
        self.services: list[dict[str, Any]] = []

    # --- the three children ------------------------------------------------------------------

    def _restate(self) -> Child:
        c = self.config

        def start() -> Process:
            return processes.start_restate(self.data_dir / "restate", c.ingress_port, c.admin_port,
                                           c.node_port, self.logs / "restate.log", self._identity().restate_env())

        def ready(proc: Process) -> None:
            processes.wait_restate_healthy(c.admin_port, c.ingress_port, 60.0, proc)
            # Deployments live in Restate's metadata and survive a restart, so registering
            # again is only a check that Restate and the running worker agree. If it fails,
            # the worker is the one in trouble, not Restate: do not restart Restate for it.
            worker = self._child("worker").proc
            if worker is not None and worker.poll() is None:
                try:
                    self._register(worker)
                except (RuntimeError, TimeoutError) as exc:
                    self._log(f"re-registering the worker failed: {exc}")

        return Child("restate", start, ready, self.logs / "restate.log")

    def _model(self) -> Child:
        from stack import model_server  # only needed, and only importable cheaply, when used

        log_path = self.logs / "model.log"

        def ready(proc: Process) -> None:
            # Loading the weights takes seconds to a minute, depending on the machine.
            port = self.config.local_model_port
            model_server.wait_ready(port, 600.0, proc=proc, log_path=log_path)

        return Child("model", lambda: model_server.start(self.config, log_path), ready, log_path)

    def _worker(self) -> Child:
        port = self.config.worker_port

        def start() -> Process:
            # The worker reads its settings from the environment, like we did. It streams live
            # model text to the web UI (best effort; AGENT_DELTA_URL, even empty, wins).
            env = {**os.environ, "AGENT_DATA_DIR": str(self.data_dir),
                   "AGENT_DELTA_URL": os.environ.get("AGENT_DELTA_URL", processes.delta_url(self.config.ui_port)),
                   **self._identity().worker_env()}
            return processes.start_worker(port, env, self.logs / "worker.log")

        def ready(proc: Process) -> None:
            processes.wait_port(port, 60.0, proc)
            self._register(proc)

        return Child("worker", start, ready, self.logs / "worker.log")

    def _ui(self) -> Child:
        """The web UI server: it only talks to Restate's ingress, so it can start in any order."""
        port = self.config.ui_port

        def start() -> Process:
            return processes.start_ui(port, os.environ, self.logs / "ui.log")

        return Child("ui", start, lambda proc: processes.wait_port(port, 30.0, proc), self.logs / "ui.log")

    def _register(self, worker: Process) -> None:
        c = self.config
        deployment = processes.register(c.admin_port, c.worker_port, 60.0, worker,
                                        use_http_11=processes.uses_http_11(c.worker_protocol))
        self.services = deployment.get("services", [])

    def _identity(self) -> RequestIdentity:
        if self.identity is None:
            self.identity = ensure_identity(self.data_dir)
        return self.identity

    def _child(self, name: str) -> Child:
        return next(child for child in self.children if child.name == name)

    # --- running -----------------------------------------------------------------------------

    def run(self) -> None:
        """Start everything, supervise until interrupted, then stop everything."""
        for directory in (self.data_dir, self.logs, self.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._claim_data_dir()
        # Explicitly, SIGINT too: a shell starts background jobs with SIGINT ignored.
        for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop_signal, _interrupt)
        try:
            self._clear_leftovers()
            self._check_ports()
            for child in self.children:
                self._log(f"starting {child.name} (log: {child.log_path})")
                self._start(child)
            self._print_banner()
            self._supervise()
        except KeyboardInterrupt:
            self._log("stopping")
        finally:
            # A second Ctrl-C must not cut the clean-up short and leave orphans behind.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self._stop_all()

    def _start(self, child: Child) -> None:
        """Start `child`, record its PID, and wait until it is ready."""
        try:
            child.proc = child.start()
            child.started_at = time.monotonic()
            # What /proc/PID/cmdline will show: the argv we gave it (no shell, no shebang).
            child.cmdline = [str(arg) for arg in child.proc.args]  # type: ignore[union-attr]
            self._write_pid_file(child)
            child.ready(child.proc)
        except Exception as exc:
            tail = "" if str(child.log_path) in str(exc) else f"\n{processes.log_tail(child.log_path, 20)}"
            raise StackError(f"{child.name} did not start: {exc}{tail}") from exc

    def _supervise(self) -> None:
        """Restart any child that exits, in start order (Restate before the worker)."""
        while True:
            time.sleep(POLL_INTERVAL_S)
            for child in self.children:
                if child.proc is not None and child.proc.poll() is None:
                    continue
                if child.proc is not None:
                    self._note_death(child)
                if time.monotonic() >= child.next_try:
                    self._restart(child)

    def _note_death(self, child: Child) -> None:
        assert child.proc is not None
        code = child.proc.returncode
        # Its helpers (hypercorn's worker processes) may still hold the port: take them down.
        processes.kill_group(child.proc)
        child.proc = None
        lived = time.monotonic() - child.started_at
        child.quick_deaths = child.quick_deaths + 1 if lived < STABLE_AFTER_S else 0
        delay = _backoff(child.quick_deaths)
        child.next_try = time.monotonic() + delay
        self._log(f"{child.name} exited with {_describe(code)} after {lived:.1f} s; "
                  f"restarting{f' in {delay:.0f} s' if delay else ''}")

    def _restart(self, child: Child) -> None:
        try:
            self._start(child)
        except StackError as exc:
            self._log(f"{exc}\n(will try again)")
            if child.proc is not None:
                processes.kill_group(child.proc)
                child.proc = None
            child.quick_deaths += 1
            child.next_try = time.monotonic() + _backoff(child.quick_deaths)
            return
        self._log(f"{child.name} is back")

    def _stop_all(self) -> None:
        """Stop every child: Restate first, so that it stops sending work, then the others."""
        running = [child for child in self.children if child.proc is not None]
        for child in running:
            assert child.proc is not None
            processes.stop(child.proc, grace=10.0)
            child.proc = None
        for child in self.children:
            (self.run_dir / f"{child.name}.pid").unlink(missing_ok=True)
        (self.run_dir / "supervisor.pid").unlink(missing_ok=True)
        if running:
            self._log("stopped")

    # --- leftovers from an earlier run -------------------------------------------------------

    def _claim_data_dir(self) -> None:
        """Refuse to share the data dir with another live supervisor; then record ourselves."""
        pid_file = self.run_dir / "supervisor.pid"
        other = _read_pid_file(pid_file)
        if other and other["pid"] != os.getpid() and _cmdline(other["pid"]) == other["cmdline"]:
            raise StackError(
                f"another `python -m stack run` (pid {other['pid']}) is already running on "
                f"{self.data_dir}. Stop it first: Ctrl-C in its terminal, or "
                f"`kill {other['pid']}`.")
        _write_json(pid_file, {"pid": os.getpid(), "cmdline": _cmdline(os.getpid())})

    def _clear_leftovers(self) -> None:
        """Stop processes an earlier run started and could not stop (it was killed itself)."""
        for pid_file in sorted(self.run_dir.glob("*.pid")):
            if pid_file.stem == "supervisor":
                continue
            record = _read_pid_file(pid_file)
            # Only a live process with the very command line we recorded is ours: the PID of a
            # long-dead child may belong to something else by now.
            if record and _cmdline(record["pid"]) == record["cmdline"]:
                self._log(f"stopping {pid_file.stem} (pid {record['pid']}), left over from an "
                          "earlier run")
                processes.stop_group(record["pid"], grace=10.0)
            pid_file.unlink(missing_ok=True)

    def _check_ports(self) -> None:
        c = self.config
        ports = [(c.ingress_port, "Restate ingress", "RESTATE_INGRESS_PORT"),
                 (c.admin_port, "Restate admin API and UI", "RESTATE_ADMIN_PORT"),
                 (c.node_port, "Restate node-to-node", "RESTATE_NODE_PORT"),
                 (c.worker_port, "worker", "WORKER_PORT"),
                 (c.ui_port, "web UI", "UI_PORT")]
        if self.local_model:
            ports.append((c.local_model_port, "offline model", "LOCAL_MODEL_PORT"))
        for port, what, variable in ports:
            if processes.port_in_use(port):
                raise StackError(
                    f"port {port} ({what}) is already in use on 127.0.0.1. Stop whatever listens "
                    f"there, or choose another port: {variable}=<port> make run")

    def _write_pid_file(self, child: Child) -> None:
        assert child.proc is not None
        _write_json(self.run_dir / f"{child.name}.pid",
                    {"pid": child.proc.pid, "cmdline": child.cmdline})

    # --- output ------------------------------------------------------------------------------

    def _print_banner(self) -> None:
        c = self.config
        base_url, _key, model, _mode = c.llm_endpoint()
        if self.local_model:
            where = f"offline {model} at {base_url}"
        else:
            where = f"{model} at {base_url or 'api.openai.com'}"
        handlers = [f"{s['name']}.{h['name']}" for s in self.services for h in s.get("handlers", [])
                    if h.get("public", True)]
        ingress = c.restate_ingress
        lines = [
            "",
            "The durable coding agent is running.",
            f"  Web UI:       {self._ui_url()}",
            f"  Ingress:      {ingress}",
            f"  Restate UI:   http://127.0.0.1:{c.admin_port}/ui/",
            f"  Model:        {where}",
            f"  Logs:         {self.logs}/",
            f"  Handlers:     {', '.join(handlers) or '(none registered)'}",
            "",
            "Try:",
            *(f"  {example.format(ingress=ingress)}" for example in EXAMPLES),
            "",
            "Ctrl-C stops everything; the next run carries on where this one stopped.",
            "",
        ]
        print("\n".join(lines), flush=True)

    def _ui_url(self) -> str:
        url = f"http://127.0.0.1:{self.config.ui_port}/"
        # With a token, opening this link once sets the UI's cookie.
        return url + ("?token=<your UI_TOKEN>" if self.config.ui_token.strip() else "")

    def _log(self, message: str) -> None:
        print(f"[stack {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- helpers -------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _cmdline(pid: int) -> list[str] | None:
    """The command line of a live process, or None if there is no such process (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")[:-1] or None


def _read_pid_file(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
        return {"pid": int(record["pid"]), "cmdline": list(record["cmdline"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_json(path: Path, value: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value))
    temporary.replace(path)


def _backoff(quick_deaths: int) -> float:
    """Seconds to wait before restarting: none after one crash, then 1, 2, 4 ... up to 30 s."""
    if quick_deaths <= 1:
        return 0.0
    return min(MAX_BACKOFF_S, 0.5 * 2 ** (quick_deaths - 1))


def _describe(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        return signal.Signals(-returncode).name
    return f"code {returncode}"


def run() -> int:
    """The `run` command: 0 after a clean stop, 1 when the stack could not start."""
    try:
        Supervisor(settings()).run()
    except StackError as exc:
        print(f"[stack] {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
