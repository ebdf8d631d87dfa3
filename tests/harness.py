"""The test harness: a whole product per test, on free ports, that a test can crash at will.

A `Stack` owns a temporary directory, a restate-server with its own base dir, the scripted LLM
and the worker (hypercorn serving app.main:app), each a subprocess in its own process group.
Tests kill and restart any of them to prove that the work survives. Processes are started and
stopped only through stack.processes, the same code `python -m stack run` uses.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from stack import cluster, processes
from stack.identity import RequestIdentity, ensure_identity
from stack.processes import REPO_ROOT, Process
from tests.client import Ingress, free_port, free_ports
from tests.on_demand import OnDemandWorker

T = TypeVar("T")

# The settings app.config reads. The worker gets none of the developer's own values, so a
# real OPENAI_API_KEY in the shell can never reach a test.
_CONFIG_PREFIXES = ("OPENAI_", "AGENT_", "RESTATE_", "LOCAL_MODEL", "SANDBOX_", "WORKER_", "LLM_", "UI_")


class ScriptedLLM:
    """The scripted OpenAI-compatible server (tests/fakes/scripted_llm.py) as a subprocess."""

    def __init__(self, script: str, root: Path, port: int | None = None, args: list[str] | None = None) -> None:
        self.script = script if ":" in script else f"tests.fakes.scripts:{script}"
        self.args = list(args or [])  # more command-line options of tests/fakes/scripted_llm.py
        self.port = port or free_port()
        self.requests_log = root / "llm-requests.jsonl"
        self.log_path = root / "logs" / "llm.log"
        self.proc: Process | None = None

    @property
    def base_url(self) -> str:
        """What OPENAI_BASE_URL should be."""
        return f"http://{processes.HOST}:{self.port}/v1"

    def start(self, wait: bool = True) -> None:
        """Start serving the script (again); the request log keeps growing across restarts."""
        argv = [sys.executable, "-m", "tests.fakes.scripted_llm", "--port", str(self.port),
                "--script", self.script, "--log", str(self.requests_log), *self.args]
        self.proc = processes.spawn(argv, {**os.environ, "PYTHONUNBUFFERED": "1"}, self.log_path)
        if wait:
            self.wait()

    def wait(self, timeout: float = 20.0) -> None:
        """Wait until it accepts connections."""
        processes.wait_port(self.port, timeout, self.proc)

    def kill(self) -> None:
        """SIGKILL it."""
        if self.proc is not None:
            processes.kill_group(self.proc)
            self.proc = None

    def requests(self) -> list[dict[str, Any]]:
        """Every request so far, oldest first: {"time", "attempt", "request", "reply"} each."""
        if not self.requests_log.exists():
            return []
        lines = self.requests_log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


class Stack:
    """restate-server, the scripted LLM and the worker, wired together for one test."""

    def __init__(
        self,
        root: Path,
        script: str = "echo",
        env: Mapping[str, str] | None = None,
        app: str = processes.WORKER_APP,
        app_dir: Path = REPO_ROOT,
        restate_env: Mapping[str, str] | None = None,
        ui: bool = False,
        ui_env: Mapping[str, str] | None = None,
        llm_args: list[str] | None = None,
        protocol: Literal["bidi", "request-response"] = "bidi",
        signed: bool = True,
        scale_to_zero: bool = False,
    ) -> None:
        """`protocol` is the worker's WORKER_PROTOCOL (request-response is registered over
        HTTP/1.1). `signed`: Restate signs its requests and the worker refuses unsigned ones, as
        under `make run`. `scale_to_zero`: no worker runs until a request arrives, and each is
        SIGKILLed once it has answered (tests/on_demand.py); it needs request-response."""
        assert not scale_to_zero or protocol == "request-response", "scale to zero needs request-response"
        self.root = root
        self.data_dir = root / "data"
        self.logs = root / "logs"
        self.ingress_port, self.admin_port, self.node_port, self.worker_port, llm_port = (
            free_ports(5)
        )
        self.llm = ScriptedLLM(script, root, llm_port, llm_args)
        self.extra_env = dict(env or {})
        self.restate_env = dict(restate_env or {})
        self.app = app
        self.app_dir = app_dir
        self.ingress = Ingress(self.ingress_port)
        self.restate: Process | None = None
        self.worker: Process | None = None
        # The web UI (ui/), only when asked for: `ui_url` is where a browser goes.
        self.ui_port: int | None = free_port() if ui else None
        self.ui_env = dict(ui_env or {})
        self.ui: Process | None = None
        self.protocol = protocol
        self.identity: RequestIdentity | None = ensure_identity(self.data_dir) if signed else None
        if self.identity is not None:
            self.restate_env = {**self.identity.restate_env(), **self.restate_env}
        # Scale to zero: Restate is told the proxy's port, and the proxy starts workers on another.
        self.on_demand: OnDemandWorker | None = None
        if scale_to_zero:
            self.on_demand = OnDemandWorker(self.worker_port, lambda port: processes.start_worker(
                port, {**self.worker_env(), "WORKER_PORT": str(port)}, self.logs / "worker.log",
                app=self.app, cwd=self.app_dir))

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Stack:
        """Start all three processes together, then wait for them and register the worker."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.start_restate(wait=False)
            self.llm.start(wait=False)
            if self.on_demand is not None:
                self.on_demand.start()
            else:
                self.worker = self._spawn_worker()
            if self.ui_port is not None:
                self.start_ui(wait=False)
            self._wait_restate()
            self.llm.wait()
            if self.on_demand is None:
                self._wait_worker()
            else:
                self._register()
            if self.ui_port is not None:
                processes.wait_port(self.ui_port, 30.0, self.ui)
        except BaseException:
            self.close()  # `with Stack(...)` never reaches __exit__ when __enter__ fails
            raise
        return self

    def close(self) -> None:
        """Stop everything that is still running. Safe to call twice."""
        if self.on_demand is not None:
            self.on_demand.close()
        if self.worker is not None:
            processes.kill_group(self.worker)
            self.worker = None
        self.llm.kill()
        self.kill_ui()
        if self.restate is not None:
            processes.stop(self.restate, grace=3.0)
            self.restate = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- crashing and restarting -------------------------------------------------------------

    def kill_worker(self) -> None:
        """SIGKILL the worker's whole process group, as a crash would."""
        if self.worker is not None:
            processes.kill_group(self.worker)
            self.worker = None

    def start_worker(self) -> None:
        """Start the worker again and wait until Restate can reach it."""
        self.worker = self._spawn_worker()
        self._wait_worker()

    def kill_restate(self) -> None:
        """SIGKILL restate-server."""
        if self.restate is not None:
            processes.kill_group(self.restate)
            self.restate = None

    def start_restate(self, wait: bool = True) -> None:
        """Start restate-server on the same ports and data dir; it resumes where it stopped."""
        self.restate = processes.start_restate(
            self.data_dir / "restate", self.ingress_port, self.admin_port, self.node_port,
            self.logs / "restate.log", self.restate_env,
        )
        if wait:
            self._wait_restate()

    def kill_llm(self) -> None:
        """SIGKILL the scripted LLM."""
        self.llm.kill()

    def start_llm(self) -> None:
        """Start the scripted LLM again on the same port."""
        self.llm.start()

    def start_ui(self, wait: bool = True) -> None:
        """Start the web UI server on `ui_port`, talking to this stack's ingress."""
        assert self.ui_port is not None, "Stack(ui=True) starts the web UI"
        self.ui = processes.start_ui(self.ui_port, {**self.worker_env(), **self.ui_env}, self.logs / "ui.log")
        if wait:
            processes.wait_port(self.ui_port, 30.0, self.ui)

    def kill_ui(self) -> None:
        """SIGKILL the web UI server."""
        if self.ui is not None:
            processes.kill_group(self.ui)
            self.ui = None

    @property
    def ui_url(self) -> str:
        return f"http://{processes.HOST}:{self.ui_port}"

    # --- talking to it -----------------------------------------------------------------------

    def call(self, service: str, key: str | None, handler: str, body: Any = None,
             timeout: float = 60.0, headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        """Invoke a handler through the ingress and wait: (status, JSON or text)."""
        return self.ingress.call(service, key, handler, body, timeout, headers)

    def send(self, service: str, key: str | None, handler: str, body: Any = None,
             headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        """Invoke a handler one-way: (202, {"invocationId": ...})."""
        return self.ingress.send(service, key, handler, body, headers)

    def attach(self, invocation_id: str, timeout: float = 60.0) -> tuple[int, Any]:
        """Wait for an invocation's result."""
        return self.ingress.attach(invocation_id, timeout)

    def query(self, sql: str) -> list[dict[str, Any]]:
        """SQL over Restate's introspection tables; NULL columns are absent from the rows."""
        return processes.admin_query(self.admin_port, sql)

    def llm_requests(self) -> list[dict[str, Any]]:
        """Every request the scripted LLM received, oldest first."""
        return self.llm.requests()

    def wait_until(self, predicate: Callable[[], T], timeout: float = 30.0,
                   interval: float = 0.1, message: str = "") -> T:
        """Poll `predicate` until it returns something truthy, and return that.

        Exceptions count as "not yet" (Restate may be restarting), and the last one is shown
        if time runs out.
        """
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            try:
                value = predicate()
                if value:
                    return value
            except Exception as exc:  # noqa: BLE001 - reported below when time runs out
                last_error = exc
            if time.monotonic() > deadline:
                what = message or getattr(predicate, "__name__", "condition")
                raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                                     + (f"; last error: {last_error!r}" if last_error else ""))
            time.sleep(interval)

    def worker_env(self) -> dict[str, str]:
        """The worker's whole environment: ours, minus the developer's settings, plus the test's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_CONFIG_PREFIXES)}
        env.update({
            "OPENAI_BASE_URL": self.llm.base_url,
            "OPENAI_API_KEY": "test",
            "AGENT_DATA_DIR": str(self.data_dir),
            "RESTATE_INGRESS_PORT": str(self.ingress_port),
            "RESTATE_ADMIN_PORT": str(self.admin_port),
            "RESTATE_NODE_PORT": str(self.node_port),
            "WORKER_PORT": str(self.worker_port),
            "WORKER_PROTOCOL": self.protocol,
        })
        if self.identity is not None:
            env.update(self.identity.worker_env())
        if self.ui_port is not None:  # the worker streams live model text to the UI
            env["AGENT_DELTA_URL"] = processes.delta_url(self.ui_port)
        env.update(self.extra_env)
        return env

    def log_tails(self, lines: int = 40) -> str:
        """The last `lines` of every process log, for a failed test's report."""
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            parts.append(f"===== {log} (last {len(tail)} lines) =====\n" + "\n".join(tail))
        return "\n".join(parts)

    # --- helpers -----------------------------------------------------------------------------

    def _spawn_worker(self) -> Process:
        return processes.start_worker(self.worker_port, self.worker_env(), self.logs / "worker.log",
                                      app=self.app, cwd=self.app_dir)

    def _wait_restate(self) -> None:
        processes.wait_restate_healthy(self.admin_port, self.ingress_port, 30.0, self.restate)

    def _wait_worker(self) -> None:
        processes.wait_port(self.worker_port, 30.0, self.worker)
        processes.retry_now(self.admin_port)  # as the supervisor does
        self._register()

    def _register(self) -> None:
        # Registration doubles as the readiness check: Restate itself must reach the handlers.
        # Scaled to zero, Restate's discovery request meets a cold worker: give it longer.
        processes.register(self.admin_port, self.worker_port, 30.0 if self.on_demand is None else 120.0,
                           self.worker, use_http_11=processes.uses_http_11(self.protocol))


class ClusterStack(Stack):
    """The topology `python -m stack run --nodes N --workers M` runs, on free ports, for tests
    and benchmarks: N restate-server nodes (1 from restate.toml, or the cluster of cluster/),
    M workers accepting on one shared socket, and the scripted LLM.

        with ClusterStack(root, "tests.fakes.chaos_scripts:short", nodes=3, workers=2) as stack:
            stack.kill_node(1); stack.start_node(1); stack.kill_worker(0)

    `call`, `send` and `query` go to the first node that is running; `ingress_of(i)` talks to
    node i. The rest (the LLM, the worker environment, `wait_until`) is `Stack`'s.
    """

    def __init__(self, root: Path, script: str = "echo", nodes: int = 3, workers: int = 2,
                 env: Mapping[str, str] | None = None, restate_env: Mapping[str, str] | None = None,
                 llm_args: list[str] | None = None, ui: bool = False, app: str = processes.WORKER_APP) -> None:
        super().__init__(root, script, env, app=app, restate_env=restate_env, llm_args=llm_args, ui=ui)
        if nodes == 1:
            self.nodes = [cluster.Node("restate", processes.RESTATE_CONFIG, self.ingress_port,
                                       self.admin_port, self.node_port)]
        else:
            ports = free_ports(3 * nodes)
            self.nodes = cluster.nodes_on_ports([tuple(ports[i:i + 3]) for i in range(0, len(ports), 3)])
        self.node_procs: list[Process | None] = [None] * len(self.nodes)
        self.workers: list[Process | None] = [None] * workers
        self.worker_socket: socket.socket | None = None
        self._use_node(0)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ClusterStack:
        """Start every node, the LLM and every worker together; register the deployment once."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.worker_socket = cluster.listen(self.worker_port)
            for i in range(len(self.nodes)):
                self.start_node(i, wait=False)
            self.llm.start(wait=False)
            for i in range(len(self.workers)):
                self.start_worker(i, wait=False)
            for i in range(len(self.nodes)):
                self.wait_node(i)
            self.llm.wait()
            for i in range(len(self.workers)):
                self._wait_serving(i)
            deployment = processes.register(self.admin_port, self.worker_port, 30.0)
            cluster.wait_registered(self.nodes, deployment)  # any node's ingress serves from now on
            if self.ui_port is not None:
                self.start_ui()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for i in range(len(self.workers)):
            self.kill_worker(i)
        self.llm.kill()
        self.kill_ui()
        for i, proc in enumerate(self.node_procs):
            if proc is not None:
                processes.stop(proc, grace=3.0)
                self.node_procs[i] = None
        if self.worker_socket is not None:
            self.worker_socket.close()
            self.worker_socket = None

    # --- nodes -------------------------------------------------------------------------------

    def start_node(self, i: int, wait: bool = True) -> None:
        """Start node `i` on its data dir: after a crash it rejoins and catches up."""
        node = self.nodes[i]
        log_path = self.logs / f"{node.name}.log"
        if len(self.nodes) == 1:
            self.node_procs[i] = processes.start_restate(
                self.data_dir / "restate", node.ingress_port, node.admin_port, node.node_port,
                log_path, self.restate_env)
        else:
            self.node_procs[i] = cluster.start_node(node, self.nodes, self.data_dir / "cluster",
                                                    log_path, self.restate_env)
        if wait:
            self.wait_node(i)

    def wait_node(self, i: int, timeout: float = 60.0) -> None:
        cluster.wait_node_healthy(self.nodes[i], timeout, self.node_procs[i])

    def kill_node(self, i: int) -> None:
        """SIGKILL node `i`; requests then go to the first node still running."""
        proc = self.node_procs[i]
        if proc is not None:
            processes.kill_group(proc)
            self.node_procs[i] = None
        live = [j for j, p in enumerate(self.node_procs) if p is not None]
        if live:
            self._use_node(live[0])

    def kill_restate(self) -> None:
        for i in range(len(self.nodes)):
            self.kill_node(i)

    def start_restate(self, wait: bool = True) -> None:
        for i in range(len(self.nodes)):
            self.start_node(i, wait=False)
        for i in range(len(self.nodes)):
            if wait:
                self.wait_node(i)

    def partition_leader(self, service: str, key: str) -> int:
        """The index of the node that leads the partition holding `service`/`key`'s invocations:
        the admin API gives the key's partition key, restatectl the partition's leader."""
        # Polled: while a partition moves between nodes the admin API answers 500 ("partition N
        # doesn't exist on this node, this is benign if the partition is being transferred").
        rows = self.wait_until(lambda: self.query(
            f"SELECT partition_key FROM sys_invocation_status WHERE "
            f"target_service_name = '{service}' AND target_service_key = '{key}' LIMIT 1"),
            timeout=15, message=f"an invocation of {service}/{key} in the admin API")
        key_hash = int(rows[0]["partition_key"])
        leaders = cluster.cluster_sql(self.nodes, (
            "SELECT n.name FROM partitions p JOIN nodes n ON p.leader_plain_node_id = n.plain_node_id "
            f"WHERE p.start_key <= {key_hash} AND p.end_key >= {key_hash}"))
        assert len(leaders) == 1, leaders
        return [node.name for node in self.nodes].index(leaders[0]["name"])

    def node_states(self) -> dict[str, dict[str, object]]:
        """What the cluster reports of each node (restatectl's `nodes` table), by node name,
        with `partitions`: how many partition processors it runs."""
        nodes = {row["name"]: row for row in cluster.cluster_sql(self.nodes, "SELECT * FROM nodes")}
        for node in nodes.values():
            node["partitions"] = 0
        for row in cluster.cluster_sql(self.nodes, (
                "SELECT n.name, count(*) AS partitions FROM partition_state s "
                "JOIN nodes n ON s.plain_node_id = n.plain_node_id GROUP BY n.name")):
            nodes[row["name"]]["partitions"] = row["partitions"]
        return nodes

    def ingress_of(self, i: int) -> Ingress:
        return Ingress(self.nodes[i].ingress_port)

    def node_log(self, i: int) -> Path:
        return self.logs / f"{self.nodes[i].name}.log"

    # --- workers -----------------------------------------------------------------------------

    def start_worker(self, i: int = 0, wait: bool = True) -> None:  # type: ignore[override]
        """Start worker `i` on the shared socket."""
        self.workers[i] = processes.start_worker(
            self.worker_port, self.worker_env(), self.logs / f"worker-{i + 1}.log",
            app=self.app, cwd=self.app_dir, sock=self.worker_socket)
        if wait:
            self._wait_serving(i)

    def kill_worker(self, i: int = 0) -> None:  # type: ignore[override]
        """SIGKILL worker `i`'s whole process group (its running commands included)."""
        proc = self.workers[i]
        if proc is not None:
            processes.kill_group(proc)
            self.workers[i] = None

    def _wait_serving(self, i: int) -> None:
        processes.wait_worker_serving(self.logs / f"worker-{i + 1}.log", 30.0, self.workers[i])

    def _use_node(self, i: int) -> None:
        node = self.nodes[i]
        self.ingress_port, self.admin_port, self.node_port = node.ingress_port, node.admin_port, node.node_port
        self.ingress = Ingress(node.ingress_port)
