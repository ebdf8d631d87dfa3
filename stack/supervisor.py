"""`python -m stack run`: start the product locally and keep it running until Ctrl-C.

It starts restate-server (data in $AGENT_DATA_DIR/restate), the offline model when no OpenAI
endpoint is configured, the workers and the web UI (ui/); registers the workers' deployment;
prints where to go; and then restarts whichever of them dies, SIGKILL included. Restate keeps
every invocation's journal, so a restart loses no work: the invocations resume where they stopped.

With `--nodes 3` it starts the 3-node cluster of cluster/ instead (data in
$AGENT_DATA_DIR/cluster/<node>); any live node's admin API registers for the whole cluster.

Workers come in pools, one pool per code version (stack/upgrade.py), each of `--workers`
processes (1 by default). A pool of one binds its version's port itself; a pool of several
accepts on one listening socket of that port, which the supervisor holds (stack/cluster.py), so
a killed worker never makes the port refuse. Each version is registered once, at its own URL.
The newest version's workers are "worker" (or "worker-1" ... "worker-N"); each older version
still draining keeps its own, "worker-<version>" (or "worker-<version>-<i>"), until its last
invocation finishes. Each node and each worker is supervised on its own.

Each child's PID is recorded under $AGENT_DATA_DIR/run/, so that a run that was itself killed
leaves nothing behind that the next run cannot clean up.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from app.config import Settings, settings
from stack import cluster, processes, upgrade
from stack.cluster import Node
from stack.identity import RequestIdentity, ensure_identity
from stack.processes import REPO_ROOT, Process

POLL_INTERVAL_S = 0.5
# A child that dies sooner than this after starting may be crash-looping: back off.
STABLE_AFTER_S = 10.0
MAX_BACKOFF_S = 30.0
DRAIN_CHECK_S = 1.0  # how often to count the invocations left on older versions
# A version is retired only after this many checks in a row found nothing pinned to it and every
# node routing its services elsewhere, and no sooner than DRAIN_GRACE_S after it began to drain:
# an invocation being created as the new version registered (or on a node whose metadata lags)
# pins to the old one a moment later, and one zero count right after the switch would miss it.
DRAIN_QUIET_CHECKS = 3
DRAIN_GRACE_S = 5.0

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


@dataclass
class Pool:
    """The workers serving one code version, all on its port: one binds the port itself;
    several accept on `sock`, a listening socket the supervisor holds while the pool lives."""

    version: upgrade.Version
    workers: list[Child] = field(default_factory=list)
    sock: socket.socket | None = None

    def names(self, newest: bool) -> list[str]:
        """The workers' child names: the newest version's are plain, a draining one's carry it."""
        base = "worker" if newest else f"worker-{self.version.version}"
        if len(self.workers) == 1:
            return [base]
        return [f"{base}-{i}" for i in range(1, len(self.workers) + 1)]

    def live_worker(self) -> Process | None:
        return next((w.proc for w in self.workers if w.proc is not None and w.proc.poll() is None), None)


class Supervisor:
    """Owns the product's processes for one `python -m stack run`."""

    def __init__(self, config: Settings, nodes: int = 1, workers: int = 1) -> None:
        self.config = config
        self.data_dir = config.data_dir.resolve()
        self.logs = self.data_dir / "logs"
        self.run_dir = self.data_dir / "run"
        self.local_model = not config.openai_api_key and not config.openai_base_url
        self.versions_dir = self.data_dir / "versions"
        self.registry = upgrade.Registry(self.data_dir / upgrade.REGISTRY)
        # One node runs from restate.toml on the configured ports; a cluster from cluster/.
        self.nodes = ([Node("restate", processes.RESTATE_CONFIG, config.ingress_port,
                            config.admin_port, config.node_port)]
                      if nodes == 1 else cluster.repo_nodes(config.cluster_dir))
        if len(self.nodes) != nodes:
            raise StackError(f"{config.cluster_dir} describes {len(self.nodes)} nodes, not {nodes}")
        self.pool_size = workers
        self.pools: list[Pool] = []  # oldest first; the last one serves the newest version
        # Restate signs its requests with this key pair and the workers refuse unsigned ones
        # (stack/identity.py); generated in the data dir on the first start, then kept. Every
        # node of a cluster signs with the same key.
        self.identity: RequestIdentity | None = None
        # The workers show the web UI this with their live text, and the UI takes it from no one
        # else (loopback callers included): a new one each run, unless the environment sets one.
        self.delta_secret = os.environ.get("AGENT_DELTA_SECRET") or secrets.token_urlsafe(32)
        self.children = [self._node(node) for node in self.nodes]
        if self.local_model:
            self.children.append(self._model())
        self.children.append(self._ui())  # the workers go before it, once we know the versions
        self.services: list[dict[str, Any]] = []
        self.next_drain_check = 0.0

    # --- the children ------------------------------------------------------------------------

    def _node(self, node: Node) -> Child:
        log_path = self.logs / f"{node.name}.log"
        if len(self.nodes) > 1:
            # A cluster node restarted on its data dir rejoins; the deployments are in the
            # replicated metadata, so there is nothing to register again.
            return Child(node.name, lambda: cluster.start_node(node, self.nodes, self.data_dir / "cluster", log_path,
                                                               self._identity().restate_env()),
                         lambda proc: cluster.wait_node_healthy(node, 60.0, proc), log_path)

        def start() -> Process:
            return processes.start_restate(self.data_dir / "restate", node.ingress_port, node.admin_port,
                                           node.node_port, log_path, self._identity().restate_env())

        def ready(proc: Process) -> None:
            cluster.wait_node_healthy(node, 60.0, proc)
            # Deployments live in Restate's metadata and survive a restart, so registering
            # again is only a check that Restate and the running workers agree. If it fails,
            # the workers are the ones in trouble, not Restate: do not restart Restate for it.
            newest = self.pools[-1] if self.pools else None
            if self.services and newest is not None and newest.live_worker() is not None:
                try:
                    self._register(newest)
                except (RuntimeError, TimeoutError) as exc:
                    self._log(f"re-registering the worker failed: {exc}")

        return Child(node.name, start, ready, log_path)

    def _model(self) -> Child:
        from stack import model_server  # only needed, and only importable cheaply, when used

        log_path = self.logs / "model.log"

        def ready(proc: Process) -> None:
            # Loading the weights takes seconds to a minute, depending on the machine.
            port = self.config.local_model_port
            model_server.wait_ready(port, 600.0, proc=proc, log_path=log_path)

        return Child("model", lambda: model_server.start(self.config, log_path), ready, log_path)

    def _pool(self, version: upgrade.Version, newest: bool) -> Pool:
        """The workers of one code version, each run from the version's own copy of the code.
        They are not started here; the caller opens the pool's socket and starts them."""
        pool = Pool(version)
        suffix = [""] if self.pool_size == 1 else [f"-{i}" for i in range(1, self.pool_size + 1)]
        pool.workers = [self._worker(pool, self.logs / f"worker-{version.version}{s}.log") for s in suffix]
        for child, name in zip(pool.workers, pool.names(newest), strict=True):
            child.name = name
        return pool

    def _worker(self, pool: Pool, log_path: Path) -> Child:
        version = pool.version

        def start() -> Process:
            # The worker reads its settings from the environment, like we did. It streams live
            # model text to the web UI (best effort; AGENT_DELTA_URL, even empty, wins).
            env = {**os.environ, "AGENT_DATA_DIR": str(self.data_dir), "WORKER_VERSION": version.version,
                   "AGENT_DELTA_URL": os.environ.get("AGENT_DELTA_URL", processes.delta_url(self.config.ui_port)),
                   "AGENT_DELTA_SECRET": self.delta_secret, **self._identity().worker_env()}
            return processes.start_worker(version.port, env, log_path, cwd=self.versions_dir / version.version,
                                          sock=pool.sock)

        def ready(proc: Process) -> None:
            # On a shared socket the port accepts before any worker is up: the worker's log tells.
            if pool.sock is not None:
                processes.wait_worker_serving(log_path, 60.0, proc)
            else:
                processes.wait_port(version.port, 60.0, proc)
            try:  # what the last worker left, at once rather than at its next scheduled retry
                processes.retry_now(self._admin_port())
            except (RuntimeError, httpx.HTTPError):
                pass  # Restate is not up yet (a first start): nothing is waiting for a retry

        return Child("worker", start, ready, log_path)

    def _ui(self) -> Child:
        """The web UI server: it only talks to Restate's ingress, so it can start in any order."""
        port = self.config.ui_port
        # The UI talks to the first node's ingress, and to the next one when it cannot reach it
        # (in a cluster any node's serves any session).
        first = self.nodes[0]
        env = {**os.environ, "RESTATE_INGRESS_PORT": str(first.ingress_port),
               "RESTATE_ADMIN_PORT": str(first.admin_port), "AGENT_DELTA_SECRET": self.delta_secret}
        if len(self.nodes) > 1 and not os.environ.get("RESTATE_INGRESS_URL"):
            env["RESTATE_INGRESS_URL"] = ",".join(node.ingress_url for node in self.nodes)

        def start() -> Process:
            return processes.start_ui(port, env, self.logs / "ui.log")

        return Child("ui", start, lambda proc: processes.wait_port(port, 30.0, proc), self.logs / "ui.log")

    def _register(self, pool: Pool) -> None:
        """Register the pool's version, once for all its workers (they serve one URL), through
        any live node's admin API: in a cluster it registers for every node."""
        version = pool.version
        deployment = processes.register(self._admin_port(), version.port, 60.0, pool.live_worker(),
                                        version.version,
                                        use_http_11=processes.uses_http_11(self.config.worker_protocol))
        self.services = deployment.get("services", [])
        if len(self.nodes) > 1:  # any node's ingress serves it once every live node knows it
            cluster.wait_registered(self._live_nodes(), deployment)
        if version.deployment_id != deployment["id"]:
            version.deployment_id = deployment["id"]
            self.registry.save()

    def _admin_port(self) -> int:
        """The admin API of a live node (the first one when none is: the call then fails, and says so)."""
        return (self._live_nodes() or self.nodes)[0].admin_port

    def _live_nodes(self) -> list[Node]:
        return [node for node in self.nodes
                if (proc := self._child(node.name).proc) is not None and proc.poll() is None]

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
            self._load_versions()
            self._check_ports()
            for pool in self.pools:
                self._open(pool)
            # All at once: cluster nodes wait for each other before they report healthy.
            for child in self.children:
                self._log(f"starting {child.name} (log: {child.log_path})")
                self._launch(child)
            for child in self.children:
                self._await_ready(child)
            # Draining versions are registered already; the newest may be new (the checkout changed).
            self._register(self.pools[-1])
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
        self._launch(child)
        self._await_ready(child)

    def _launch(self, child: Child) -> None:
        """Start `child` and record its PID."""
        try:
            child.proc = child.start()
            child.started_at = time.monotonic()
            # What /proc/PID/cmdline will show: the argv we gave it (no shell, no shebang).
            child.cmdline = [str(arg) for arg in child.proc.args]  # type: ignore[union-attr]
            self._write_pid_file(child)
        except Exception as exc:
            raise StackError(f"{child.name} did not start: {exc}") from exc

    def _await_ready(self, child: Child) -> None:
        assert child.proc is not None
        try:
            child.ready(child.proc)
        except Exception as exc:
            tail = "" if str(child.log_path) in str(exc) else f"\n{processes.log_tail(child.log_path, 20)}"
            raise StackError(f"{child.name} did not start: {exc}{tail}") from exc

    def _supervise(self) -> None:
        """Restart any child that exits, in start order (Restate before the workers)."""
        while True:
            time.sleep(POLL_INTERVAL_S)
            self._upgrades()
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
        # Its helpers (child processes in its group) may still hold the port: take them down.
        processes.kill_group(child.proc)
        child.proc = None
        lived = time.monotonic() - child.started_at
        child.quick_deaths = child.quick_deaths + 1 if lived < STABLE_AFTER_S else 0
        delay = _backoff(child.quick_deaths)
        child.next_try = time.monotonic() + delay
        self._log(f"{child.name} exited with {_describe(code)} after {lived:.1f} s; "
                  f"restarting{f' in {delay:.0f} s' if delay else ''}")
        down = [n.name for n in self.nodes if self._child(n.name).proc is None]
        if len(self.nodes) > 1 and 2 * len(down) >= len(self.nodes):
            # Without a majority the cluster cannot elect leaders or replicate: the ingress holds
            # every request until enough nodes are back. Say so, rather than leave users guessing.
            self._log(f"{len(down)} of {len(self.nodes)} Restate nodes are down ({', '.join(down)}): "
                      "the cluster has no majority and holds every request until they are back")

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

    # --- versions (stack/upgrade.py) ------------------------------------------------------------

    def _load_versions(self) -> None:
        """Serve every version the registry lists (older ones may still have invocations); the
        checkout's code becomes the newest when it changed since the last run."""
        self.registry = upgrade.Registry.load(self.data_dir)
        checkout = upgrade.snapshot(REPO_ROOT, self.versions_dir)
        if self.registry.checkout != checkout:
            self.registry.checkout = checkout
            known = self.registry.find(checkout)
            if known is None:
                if self.registry.newest is not None:
                    self._log(f"the checkout changed: serving version {checkout}; version "
                              f"{self.registry.newest.version} drains")
                    self.registry.newest.draining = True
                self.registry.versions.append(upgrade.Version(checkout, self._free_worker_port()))
            elif known.draining:
                self._log(f"the checkout's code is version {checkout}, which is still draining: "
                          f"serving {self.registry.newest.version} (the newest) for new work")  # type: ignore[union-attr]
            self.registry.save()
        for version in self.registry.versions:
            self._add_pool(self._pool(version, newest=version is self.registry.newest))

    def _add_pool(self, pool: Pool) -> None:
        """Supervise the pool's workers from now on (before the UI, after the others)."""
        self.pools.append(pool)
        at = self.children.index(self._child("ui"))
        self.children[at:at] = pool.workers

    def _open(self, pool: Pool) -> None:
        """Hold the listening socket a pool of several workers shares (a pool of one binds its own)."""
        if len(pool.workers) > 1 and pool.sock is None:
            pool.sock = cluster.listen(pool.version.port)

    def _close(self, pool: Pool) -> None:
        if pool.sock is not None:
            pool.sock.close()
            pool.sock = None

    def _free_worker_port(self) -> int:
        """WORKER_PORT, or the next port up that no version of ours and nothing else uses."""
        taken = {v.port for v in self.registry.versions}
        port = self.config.worker_port
        while port in taken or (self.registry.versions and processes.port_taken(port)):
            port += 1
        return port

    def _upgrades(self) -> None:
        """Serve a version an upgrade command asked for; retire older ones that have drained."""
        request = upgrade.take_request(self.run_dir)
        if request is not None:
            ok, message = self._upgrade_to(request)
            self._log(message)
            upgrade.answer(self.run_dir, request, ok, message)
        if time.monotonic() >= self.next_drain_check:
            self.next_drain_check = time.monotonic() + DRAIN_CHECK_S
            for version in self.registry.draining:
                self._check_drained(version)

    def _upgrade_to(self, name: str) -> tuple[bool, str]:
        old = self.pools[-1] if self.pools else None
        if old is not None and old.version.version == name:
            return True, f"version {name} is already the newest"
        if self.registry.find(name) is not None:
            return False, f"version {name} is still draining; wait until it has drained, then upgrade to it"
        if not (self.versions_dir / name).is_dir():
            return False, f"unknown version {name}: no {self.versions_dir / name}"
        new = self._pool(upgrade.Version(name, self._free_worker_port()), newest=False)
        try:
            self._open(new)
            for child in new.workers:
                self._launch(child)
            for child in new.workers:
                self._await_ready(child)
            self._register(new)  # from now on new invocations go to it
        except (StackError, RuntimeError, TimeoutError, OSError) as exc:
            for child in new.workers:
                if child.proc is not None:
                    processes.kill_group(child.proc)
                (self.run_dir / f"{child.name}.pid").unlink(missing_ok=True)
            self._close(new)
            still = old.version.version if old else "nothing"
            return False, f"version {name} did not start; still serving {still}: {exc}"
        if old is not None:
            old.version.draining, old.version.draining_since = True, time.time()
            old.version.quiet_checks = 0
            self._rename(old, newest=False)
        self._rename(new, newest=True)
        self._add_pool(new)
        self.registry.versions.append(new.version)
        self.registry.save()
        return True, (f"version {name} serves new invocations at "
                      f"{processes.deployment_url(new.version.port, name)} (deployment {new.version.deployment_id})")

    def _check_drained(self, version: upgrade.Version) -> None:
        """Count what is still pinned to an older version, through any live node; with nothing
        left, retire it."""
        try:
            admin_port = self._admin_port()
            left = upgrade.pinned_invocations(admin_port, version.deployment_id) if version.deployment_id else 0
            if left != version.left:
                version.left = left
                self.registry.save()
                self._log(f"version {version.version} is draining: {left} invocation(s) left")
            routed = self._nodes_routing_to(version)
            version.quiet_checks = 0 if left or routed else version.quiet_checks + 1
            self.registry.save()
            since = version.draining_since if version.draining_since is not None else 0.0
            if version.quiet_checks < DRAIN_QUIET_CHECKS or time.time() - since < DRAIN_GRACE_S:
                return
            if version.deployment_id:
                processes.remove_deployment(admin_port, version.deployment_id)
        except (RuntimeError, httpx.HTTPError) as exc:  # Restate restarting: next time
            self._log(f"checking version {version.version}'s drain failed: {exc}")
            return
        pool = next(p for p in self.pools if p.version is version)
        for child in pool.workers:
            if child.proc is not None:
                processes.stop(child.proc, grace=10.0)
            self.children.remove(child)
            (self.run_dir / f"{child.name}.pid").unlink(missing_ok=True)
        self._close(pool)
        self.pools.remove(pool)
        self.registry.versions.remove(version)
        self.registry.save()
        self._log(f"version {version.version} has drained: its deployment is removed and its workers stopped")

    def _nodes_routing_to(self, version: upgrade.Version) -> list[str]:
        """Nodes whose admin API still sends some service's new invocations to `version`, or
        that cannot be asked (a node that is down may come back with an old view)."""
        if not version.deployment_id:
            return []
        routing = []
        for node in self.nodes:
            try:
                if version.deployment_id in processes.services_deployments(node.admin_port).values():
                    routing.append(node.name)
            except (RuntimeError, httpx.HTTPError):
                routing.append(node.name)
        return routing

    def _rename(self, pool: Pool, newest: bool) -> None:
        for child, name in zip(pool.workers, pool.names(newest), strict=True):
            (self.run_dir / f"{child.name}.pid").unlink(missing_ok=True)
            child.name = name
            if child.proc is not None:
                self._write_pid_file(child)

    def _stop_all(self) -> None:
        """Stop every child: Restate's nodes first, all at once, so that no more work is sent and
        none of them waits for peers already gone; then the others, all at once."""
        running = [child for child in self.children if child.proc is not None]
        nodes = {node.name for node in self.nodes}
        for phase in ([c for c in running if c.name in nodes], [c for c in running if c.name not in nodes]):
            killed = processes.stop_together([c.proc for c in phase if c.proc is not None], grace=10.0)
            for child in phase:
                if child.proc in killed:
                    self._log(f"{child.name} did not stop within 10 s of SIGTERM: killed")
                child.proc = None
        for pool in self.pools:
            self._close(pool)
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
        if len(self.nodes) == 1:
            ports = [(c.ingress_port, "Restate ingress", "RESTATE_INGRESS_PORT"),
                     (c.admin_port, "Restate admin API and UI", "RESTATE_ADMIN_PORT"),
                     (c.node_port, "Restate node-to-node", "RESTATE_NODE_PORT")]
        else:
            ports = [(port, f"{node.name}'s {what}", f"(edit {node.config_file})")
                     for node in self.nodes
                     for port, what in ((node.ingress_port, "ingress"), (node.admin_port, "admin API"),
                                        (node.node_port, "node-to-node port"))]
        ports += [(v.port, f"worker of version {v.version}", "WORKER_PORT") for v in self.registry.versions]
        ports.append((c.ui_port, "web UI", "UI_PORT"))
        if self.local_model:
            ports.append((c.local_model_port, "offline model", "LOCAL_MODEL_PORT"))
        for port, what, variable in ports:
            if processes.port_taken(port):
                choose = variable if variable.startswith("(") else f"{variable}=<port> make run"
                raise StackError(
                    f"port {port} ({what}) is already in use on 127.0.0.1. Stop whatever listens "
                    f"there, or choose another port: {choose}")

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
        ingress = self.nodes[0].ingress_url
        newest = self.pools[-1].version
        draining = "".join(f", version {v.version} draining" for v in self.registry.draining)
        lines = [
            "",
            "The durable coding agent is running.",
            f"  Web UI:       {self._ui_url()}",
            *(f"  Ingress:      {node.ingress_url}" + (f"  ({node.name})" if len(self.nodes) > 1 else "")
              for node in self.nodes),
            f"  Restate UI:   {self.nodes[0].admin_url}/ui/",
            f"  Workers:      {self.pool_size} of version {newest.version} at "
            f"{processes.deployment_url(newest.port, newest.version)}{draining}",
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
        return url + ("?token=<your UI token>" if self.config.ui_token_list else "")

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


def running_supervisor(run_dir: Path) -> int | None:
    """The PID of the live `python -m stack run` that owns `run_dir`, if there is one."""
    record = _read_pid_file(run_dir / "supervisor.pid")
    if record and _cmdline(record["pid"]) == record["cmdline"]:
        return int(record["pid"])
    return None


def run(nodes: int = 1, workers: int = 1) -> int:
    """The `run` command: 0 after a clean stop, 1 when the stack could not start."""
    try:
        Supervisor(settings(), nodes, workers).run()
    except StackError as exc:
        print(f"[stack] {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
