"""A Restate cluster and a pool of workers on loopback: `python -m stack run --nodes 3 --workers N`.

The nodes come from the config files in cluster/ (one per node: same cluster-name, replicated
metadata, default-replication = 2, auto-provision on node-1 only). Tests and benchmarks run the
same files on free ports: `node_env` overrides only the ports and the metadata addresses, by
environment, which Restate lets win over the file.

The workers are N hypercorn processes that accept on one listening socket, which the caller
(the supervisor, the test harness) creates and keeps open. Restate knows one deployment URI; the
kernel hands each new HTTP/2 connection to whichever worker accepts it. When a worker is
SIGKILLed, its connections break and Restate retries their invocations on a new connection,
which a surviving worker accepts: the port never stops listening, so nothing is refused.
"""

from __future__ import annotations

import json
import socket
import subprocess
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from stack import processes
from stack.processes import HOST, Process, npm_binary

CLUSTER_DIR = processes.REPO_ROOT / "cluster"


@dataclass(frozen=True)
class Node:
    """One restate-server of the cluster: its config file and its three ports."""

    name: str
    config_file: Path
    ingress_port: int
    admin_port: int
    node_port: int
    auto_provision: bool = False

    @property
    def address(self) -> str:
        """How the other nodes reach it (node-to-node and metadata traffic)."""
        return f"http://{HOST}:{self.node_port}"

    @property
    def ingress_url(self) -> str:
        return f"http://{HOST}:{self.ingress_port}"

    @property
    def admin_url(self) -> str:
        return f"http://{HOST}:{self.admin_port}"


def repo_nodes(directory: Path = CLUSTER_DIR) -> list[Node]:
    """The cluster as the node-*.toml files in `directory` describe it (`make cluster`)."""
    nodes = []
    for path in sorted(directory.glob("node-*.toml")):
        config = tomllib.loads(path.read_text())
        nodes.append(Node(config["node-name"], path, _port(config["ingress"]["bind-address"]),
                          _port(config["admin"]["bind-address"]), _port(config["bind-address"]),
                          bool(config.get("auto-provision", False))))
    return nodes


def nodes_on_ports(ports: list[tuple[int, int, int]]) -> list[Node]:
    """The same nodes on other (ingress, admin, node) ports, e.g. free ones for a test."""
    nodes = repo_nodes()
    if len(ports) != len(nodes):
        raise ValueError(f"cluster/ describes {len(nodes)} nodes, not {len(ports)}")
    return [replace(node, ingress_port=i, admin_port=a, node_port=n)
            for node, (i, a, n) in zip(nodes, ports, strict=True)]


def node_env(node: Node, nodes: list[Node]) -> dict[str, str]:
    """What overrides the node's config file: its advertised address and every node's address.

    (start_restate sets the bind addresses.) The metadata client must list every metadata
    server, so a node can reach the metadata store whichever of them is down.
    """
    addresses = ", ".join(f'"{peer.address}"' for peer in nodes)
    return {"RESTATE_ADVERTISED_ADDRESS": node.address,
            "RESTATE_METADATA_CLIENT__ADDRESSES": f"[{addresses}]"}


def start_node(node: Node, nodes: list[Node], data_dir: Path, log_path: Path,
               extra_env: Mapping[str, str] | None = None) -> Process:
    """Start `node` with its data in `data_dir`/`node.name`; restarting it there rejoins the cluster."""
    return processes.start_restate(data_dir / node.name, node.ingress_port, node.admin_port,
                                   node.node_port, log_path,
                                   {**node_env(node, nodes), **(extra_env or {})},
                                   config=node.config_file)


def wait_node_healthy(node: Node, timeout: float = 60.0, proc: Process | None = None) -> None:
    """Wait until `node`'s admin API and ingress answer healthy."""
    processes.wait_restate_healthy(node.admin_port, node.ingress_port, timeout, proc)


def wait_registered(nodes: list[Node], deployment: dict[str, object], timeout: float = 30.0) -> None:
    """Wait until every node in `nodes` knows the services of `deployment` (what the admin API
    answered to its registration). A registration goes through one node and reaches the others
    through the replicated metadata a moment later: until then their ingress answers 404
    "service not found" to a session's first message."""
    names = [str(service["name"]) for service in deployment.get("services", [])]  # type: ignore[union-attr]

    def known() -> bool:
        for node in nodes:
            for name in names:
                try:
                    answer = processes.http_client().get(f"http://{HOST}:{node.admin_port}/services/{name}", timeout=2.0)
                except httpx.TransportError:
                    return False
                if answer.status_code != 200:
                    return False
        return True

    processes.wait_for(known, timeout, "every node to know the registered services", None)


def restatectl(nodes: list[Node], *args: str, timeout: float = 20.0) -> str:
    """Run restatectl (the cluster administration tool, pinned in package.json) against `nodes`.

    It talks to the nodes' node-to-node port; given every node, most subcommands answer while
    any is up (`sql` did not: see cluster_sql).
    """
    addresses = ",".join(node.address for node in nodes)
    argv = [str(npm_binary("restatectl")), "--address", addresses, *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"restatectl {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def cluster_sql(nodes: list[Node], sql: str) -> list[dict[str, object]]:
    """SQL over the cluster's own tables (nodes, partitions, partition_state, logs, ...), which
    only restatectl reaches: the admin API's /query has the invocation tables only.

    Asked of one node at a time, until one answers: given every address, `restatectl sql`
    failed with "tcp connect error" to the killed node for 30 s in a CI run."""
    error: RuntimeError | None = None
    for node in nodes:
        try:
            out = restatectl([node], "sql", "--jsonl", sql)
        except RuntimeError as failed:
            error = failed
            continue
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert error is not None, "no nodes to ask"
    raise error


# --- the worker pool -----------------------------------------------------------------------------


def listen(port: int) -> socket.socket:
    """The workers' shared listening socket on 127.0.0.1:`port`; keep it open while they run."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def _port(bind_address: str) -> int:
    return int(bind_address.rsplit(":", 1)[1])
