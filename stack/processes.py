"""Start, wait for and stop the processes the product is made of, and talk to Restate's HTTP APIs.

This is the one place that knows the command lines: restate-server (the pinned npm binary, never
the Node wrapper, so that its PID is really the server's) and the worker (stack/worker.py:
hypercorn serving `app.main:app` over HTTP/2 cleartext). Both the supervisor and the test
harness use it.

Every child is started in a new session, so it leads its own process group, and a crash test
SIGKILLs the whole group: killing only the PID we hold could leave its children behind.
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
RESTATE_CONFIG = REPO_ROOT / "restate.toml"
WORKER_CONFIG = REPO_ROOT / "hypercorn.toml"
HOST = "127.0.0.1"
WORKER_APP = "app.main:app"

# What `spawn` writes to a child's log before each start.
START_HEADER = "starting:"

# What every start function returns: a child that leads its own process group.
Process = subprocess.Popen[bytes]


# --- starting ------------------------------------------------------------------------------------


def spawn(
    argv: list[str], env: Mapping[str, str], log_path: Path, cwd: Path = REPO_ROOT,
    pass_fds: tuple[int, ...] = (),
) -> Process:
    """Start `argv` as the leader of a new session, appending its output to `log_path`.

    `pass_fds` are file descriptors the child inherits (a shared listening socket).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"\n--- {stamp} {START_HEADER} {' '.join(argv)}\n".encode())
        log.flush()
        return subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=pass_fds,
        )


# --- ports ---------------------------------------------------------------------------------------


def port_in_use(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def port_taken(port: int) -> bool:
    """Whether a listener could not bind 127.0.0.1:`port` now, with SO_REUSEADDR as ours do.

    Wider than `port_in_use`: a port nothing accepts on may still be held, e.g. as the local
    end of an outgoing connection (any port in the kernel's ephemeral range can be), and a
    server started on it fails with "Address already in use"."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return True
        return False


def wait_port(port: int, timeout: float = 30.0, proc: Process | None = None) -> None:
    """Wait until 127.0.0.1:`port` accepts connections; fail early if `proc` exits meanwhile."""
    wait_for(lambda: port_in_use(port), timeout, f"port {port} to accept connections", proc)


# --- restate-server ------------------------------------------------------------------------------


def restate_binary() -> Path:
    """The pinned restate-server binary that scripts/setup.sh installed from npm."""
    return npm_binary("restate-server")


def npm_binary(name: str) -> Path:
    """A pinned Restate binary (restate-server, restate, restatectl) from its npm package."""
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine()
    )
    binary = REPO_ROOT / f"node_modules/@restatedev/{name}-linux-{arch}/bin/{name}"
    if not binary.exists():
        raise FileNotFoundError(f"{binary} is missing; run scripts/setup.sh (or `make setup`)")
    return binary


def start_restate(
    base_dir: Path,
    ingress_port: int,
    admin_port: int,
    node_port: int,
    log_path: Path,
    extra_env: Mapping[str, str] | None = None,
    config: Path = RESTATE_CONFIG,
) -> Process:
    """Start restate-server with its data in `base_dir` and its three ports on 127.0.0.1.

    Everything else comes from `config`: restate.toml for the single node (telemetry off, small
    RocksDB budget, partitions), or a cluster node's file in cluster/ (stack/cluster.py).
    Restarting on the same `base_dir` resumes every invocation where its journal left off.
    """
    # Not inside base_dir: Restate takes every directory there for a node's data.
    tmp_dir = base_dir.with_name(base_dir.name + "-tmp")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    base_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "RESTATE_BASE_DIR": str(base_dir),
        "RESTATE_INGRESS__BIND_ADDRESS": f"{HOST}:{ingress_port}",
        "RESTATE_ADMIN__BIND_ADDRESS": f"{HOST}:{admin_port}",
        "RESTATE_BIND_ADDRESS": f"{HOST}:{node_port}",
        # TCP only: the default mode also puts unix sockets under base-dir, and their paths can
        # exceed the 108-byte limit in a deep temporary directory.
        "RESTATE_LISTEN_MODE": "tcp",
        "RESTATE_DISABLE_TELEMETRY": "true",
        "RESTATE_LOG_DISABLE_ANSI_CODES": "true",
        # Restate makes an `invoker-*` directory per partition in the temp dir at every start
        # and never removes it; keep those next to base_dir instead of littering /tmp.
        "TMPDIR": str(tmp_dir),
        **(extra_env or {}),
    }
    argv = [str(restate_binary()), "--config-file", str(config), "--no-logo"]
    return spawn(argv, env, log_path)


def wait_restate_healthy(
    admin_port: int, ingress_port: int, timeout: float = 30.0, proc: Process | None = None
) -> None:
    """Wait until both the admin API and the ingress report healthy."""

    def healthy() -> bool:
        return _get_ok(f"http://{HOST}:{admin_port}/health") and _get_ok(
            f"http://{HOST}:{ingress_port}/restate/health"
        )

    wait_for(healthy, timeout, "restate-server to become healthy", proc)


def deployment_url(worker_port: int, version: str = "") -> str:
    """Where Restate reaches a worker: a versioned one under /<version> (app/deployment.py)."""
    return f"http://{HOST}:{worker_port}" + (f"/{version}" if version else "")


def register(
    admin_port: int, worker_port: int, timeout: float = 30.0, proc: Process | None = None,
    version: str = "", use_http_11: bool = False,
) -> dict[str, Any]:
    """Register the worker with Restate and return the deployment it created.

    A versioned worker (`version`) is a deployment of its own, at its own URL, registered
    without `force`: Restate sends new invocations to it and keeps running ones on the
    deployments they started on (stack/upgrade.py). An unversioned one (the test harness) is
    registered at the root with `force`, which makes Restate take the handler definitions the
    worker serves now even when a deployment at that URI already exists (without it Restate
    answers 200 and keeps the old revision). Restate answers 5xx while it cannot reach the
    worker, so we retry until `timeout`, or until the worker process `proc` exits. `use_http_11`
    makes Restate talk HTTP/1.1 to it, which the request-response protocol needs on hosts
    without HTTP/2 (see `uses_http_11`).
    """
    url = f"http://{HOST}:{admin_port}/deployments"
    uri = deployment_url(worker_port, version)
    body = {"uri": uri, "force": not version, "use_http_11": use_http_11}
    deadline = time.monotonic() + timeout
    while True:
        try:
            # Restate answers once it has asked the worker for its services: a cold start on a
            # serverless host can take longer than our client's usual 10 s.
            response = http_client().post(url, json=body, timeout=max(10.0, timeout))
        except httpx.TransportError as exc:
            last_error = f"admin API unreachable: {exc!r}"
        else:
            if response.is_success:
                return response.json()
            last_error = f"{response.status_code}: {response.text}"
            if response.status_code < 500:  # the worker answered, and Restate refused its services
                raise RuntimeError(f"registering {uri} failed: {last_error}")
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the worker exited with {proc.returncode} before registering: "
                               f"{last_error}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"registering {uri} failed: {last_error}")
        time.sleep(0.1)


def retry_now(admin_port: int) -> int:
    """Ask Restate to retry at once every invocation waiting out a retry backoff; how many.

    Called when a (re)started worker accepts connections: the invocations its predecessor was
    running would otherwise each wait for their next scheduled attempt, up to the retry
    policy's cap (app/retry.py). Resuming a backing-off invocation triggers its retry now. One
    that moved on meanwhile answers 4xx, which is fine.
    """
    try:
        rows = admin_query(admin_port, "SELECT id FROM sys_invocation WHERE status = 'backing-off'")
    except RuntimeError:
        return 0  # Restate is still starting its partitions: its own retries (capped at 0.5 s) cover them
    for row in rows:
        try:
            http_client().patch(f"http://{HOST}:{admin_port}/invocations/{row['id']}/resume")
        except httpx.TransportError:
            pass  # Restate itself is going away; its own retries take over when it is back
    return len(rows)


def services_deployments(admin_port: int) -> dict[str, str]:
    """Which deployment each registered service's new invocations go to, as this node's admin
    API sees it (in a cluster, a node's view of the metadata can lag another's)."""
    response = http_client().get(f"http://{HOST}:{admin_port}/services", timeout=10)
    if not response.is_success:
        raise RuntimeError(f"listing services failed ({response.status_code}): {response.text}")
    return {s["name"]: s["deployment_id"] for s in response.json().get("services", [])}


def remove_deployment(admin_port: int, deployment_id: str) -> None:
    """Forget a deployment. Restate only deletes by force, so call this once it has drained."""
    response = http_client().delete(f"http://{HOST}:{admin_port}/deployments/{deployment_id}",
                                    params={"force": "true"})
    if not response.is_success and response.status_code != 404:
        raise RuntimeError(f"removing deployment {deployment_id} failed ({response.status_code}): "
                           f"{response.text}")


def admin_query(admin_port: int, sql: str) -> list[dict[str, Any]]:
    """Run SQL on Restate's introspection tables (sys_invocation, sys_journal, state, ...).

    Columns that are NULL are left out of a row, so read them with `row.get(...)`.
    """
    # Without `Accept: application/json` the admin API answers in Arrow IPC, not JSON.
    response = http_client().post(
        f"http://{HOST}:{admin_port}/query",
        json={"query": sql},
        headers={"accept": "application/json"},
    )
    if not response.is_success:
        raise RuntimeError(f"query failed ({response.status_code}): {response.text}\n{sql}")
    return response.json()["rows"]


# --- the worker ----------------------------------------------------------------------------------


def start_worker(
    port: int, env: Mapping[str, str], log_path: Path, app: str = WORKER_APP, cwd: Path = REPO_ROOT,
    sock: socket.socket | None = None,
) -> Process:
    """Serve the Restate services (`app`) with hypercorn on 127.0.0.1:`port` (stack/worker.py:
    one process, which listens once the services are imported).

    `env` is the worker's whole environment: app.config reads its settings from it, so callers
    decide exactly what the worker sees. hypercorn speaks HTTP/2 cleartext by default, which is
    what Restate uses for its bidirectional stream to the handlers; hypercorn.toml holds the
    settings that keep those streams alive under load. With `sock` (a listening
    socket on `port`, see stack/cluster.py) the worker accepts on it instead of binding its own,
    so that several workers serve one port.
    """
    bind = f"fd://{sock.fileno()}" if sock is not None else f"{HOST}:{port}"
    argv = [sys.executable, *worker_command(bind, app, str(WORKER_CONFIG))]
    fds = (sock.fileno(),) if sock is not None else ()
    return spawn(argv, {**env, "PYTHONUNBUFFERED": "1"}, log_path, cwd=cwd, pass_fds=fds)


def wait_worker_serving(log_path: Path, timeout: float = 60.0, proc: Process | None = None) -> None:
    """Wait until the worker last started with `log_path` says it is serving.

    A worker on a shared socket cannot be told apart by its port (the socket accepts before any
    worker is up), so its own "Running on" line, after its start header, is the sign.
    """

    def serving() -> bool:
        text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
        return "Running on" in text.rsplit(START_HEADER, 1)[-1]

    wait_for(serving, timeout, f"the worker logging to {log_path} to serve", proc)


def worker_command(bind: str, app: str = WORKER_APP, config: str = WORKER_CONFIG.name) -> list[str]:
    """The worker's command line after the Python interpreter (the Dockerfile runs it too, from
    the repo's root, where `config` is)."""
    return ["-m", "stack.worker", app, "--bind", bind, "--config", config]


def uses_http_11(worker_protocol: str) -> bool:
    """Whether Restate should talk HTTP/1.1 to a worker serving `worker_protocol` (WORKER_PROTOCOL).

    Request-response is the protocol of hosts that cannot keep an HTTP/2 stream open, so it is
    registered over HTTP/1.1, the way such a host is reached; bidi needs HTTP/2.
    """
    return worker_protocol == "request-response"


# --- the web UI ----------------------------------------------------------------------------------


def start_ui(port: int, env: Mapping[str, str], log_path: Path, cwd: Path = REPO_ROOT) -> Process:
    """Serve the web UI (`python -m ui`, ui/server.py) on 127.0.0.1:`port`.

    It reaches Restate only through the ingress, so `env` needs RESTATE_INGRESS_PORT (and
    RESTATE_ADMIN_PORT for its link to the Restate UI); UI_TOKEN, if set, protects it.
    """
    argv = [sys.executable, "-m", "ui"]
    return spawn(argv, {**env, "UI_PORT": str(port), "PYTHONUNBUFFERED": "1"}, log_path, cwd=cwd)


def delta_url(ui_port: int) -> str:
    """Where the worker posts live model text for the UI (AGENT_DELTA_URL)."""
    return f"http://{HOST}:{ui_port}/internal/deltas"


# --- stopping ------------------------------------------------------------------------------------


def group_alive(pgid: int) -> bool:
    """Whether any process (other than a zombie) is still in process group `pgid`."""
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_file.read_text()
        except OSError:  # the process ended while we were looking
            continue
        # The fields after the parenthesised command name start with: state, ppid, pgrp.
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


def signal_group(pgid: int, sig: int) -> None:
    """Send `sig` to process group `pgid`; a group that is already gone is fine."""
    if pgid == os.getpgrp():  # a child that did not get its own group: never signal ourselves
        raise ValueError(f"refusing to signal our own process group {pgid}")
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def stop_group(pgid: int, grace: float = 5.0) -> None:
    """SIGTERM the group, give it `grace` seconds to exit, then SIGKILL whatever is left."""
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    kill_pgid(pgid)


def kill_pgid(pgid: int, timeout: float = 5.0) -> None:
    """SIGKILL the group and wait until none of its processes is left holding a port or a lock."""
    signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)


def kill_group(proc: Process, sig: int = signal.SIGKILL) -> None:
    """Send `sig` to `proc`'s whole process group. For SIGKILL, also wait until it is all gone."""
    if sig == signal.SIGKILL:
        kill_pgid(proc.pid)
        proc.wait()
    else:
        signal_group(proc.pid, sig)


def stop(proc: Process, grace: float = 5.0) -> None:
    """Stop `proc` and everything it started: SIGTERM, up to `grace` seconds, then SIGKILL."""
    stop_together([proc], grace)


def stop_together(procs: list[Process], grace: float = 5.0) -> list[Process]:
    """Stop several processes and everything they started at once: SIGTERM every group, one
    shared `grace` for all of them, then SIGKILL what is left. One after the other, the grace
    would add up, and a process whose peers are already gone (a Restate node that lost its
    quorum) can spend all of its grace waiting for them. Returns those the grace ran out on."""
    for proc in procs:
        signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(group_alive(proc.pid) for proc in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = [proc for proc in procs if group_alive(proc.pid)]
    for proc in procs:
        kill_pgid(proc.pid)
        proc.wait()
    return killed


# --- logs --------------------------------------------------------------------------------------


def log_tail(log_path: Path | None, lines: int = 30) -> str:
    """The last `lines` of a child's log, headed by its path, for an error message ("" if none)."""
    if log_path is None or not log_path.exists():
        return ""
    text = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    return f"--- last lines of {log_path} ---\n" + "\n".join(text)


# --- helpers -------------------------------------------------------------------------------------


@cache
def http_client() -> httpx.Client:
    # trust_env=False: a proxy configured in the environment must never see loopback traffic.
    return httpx.Client(timeout=10.0, trust_env=False)


def response_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _get_ok(url: str) -> bool:
    try:
        return http_client().get(url, timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(check: Callable[[], bool], timeout: float, what: str, proc: Process | None) -> None:
    """Poll `check` until it holds; raise if `proc` exits first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"gave up waiting for {what}: it exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(0.05)
