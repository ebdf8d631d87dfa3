"""The run command (`python -m stack run`) as a user runs it: it starts everything, keeps a task
going when its worker is SIGKILLed, survives a restate-server SIGKILL, stops everything on
Ctrl-C, and starts again cleanly on the same data dir."""

from __future__ import annotations

from pathlib import Path

import httpx

from stack import cluster, processes
from tests.client import free_ports
from tests.agent_helpers import history, read_file, send_message, status, try_read_file, wait_idle
from tests.fakes.chaos_scripts import SHORT_LINES_PER_STEP, SHORT_STEPS, expected_lines
from tests.supervised import alive, task_run, v2_source


def test_run_command_restarts_a_killed_worker_and_the_task_finishes(supervised):
    sup = supervised("tests.fakes.spine_scripts:appender")
    stack = sup.stack()

    # Requests are signed: a key pair made on the first start, readable by its owner only, and a
    # worker that answers 401 to anyone but Restate.
    key_file = sup.data_dir / "request-identity.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_bytes()
    version = sup.registry()["versions"][-1]  # the worker serves its deployment's path only
    direct = httpx.post(f"http://127.0.0.1:{version['port']}/{version['version']}/invoke/Agent/status",
                        trust_env=False)
    assert direct.status_code == 401

    send_message(stack, "sup", "append four lines")
    stack.wait_until(lambda: try_read_file(stack, "sup", "log.txt") == "one\n", message="first append")
    old_worker = sup.child_pid("worker")
    processes.kill_pgid(old_worker)  # SIGKILL the worker's process group, behind the supervisor's back
    stack.wait_until(lambda: sup.child_pid("worker") != old_worker and alive(sup.child_pid("worker")),
                     timeout=30, message="worker restarted by the supervisor")

    old_restate = sup.child_pid("restate")
    stack.wait_until(lambda: status(stack, "sup")["plan"][0]["status"] == "done", timeout=60, message="step 1")
    processes.kill_pgid(old_restate)
    stack.wait_until(lambda: sup.child_pid("restate") != old_restate, timeout=30, message="restate restarted")

    final = wait_idle(stack, "sup", timeout=90)
    assert [p["status"] for p in final["plan"]] == ["done", "done"]
    assert read_file(stack, "sup", "log.txt").count("four") == 1
    assert [m["role"] for m in history(stack, "sup")] == ["user", "agent"]

    # The web UI is one of the supervised children, and shows the same session.
    ui_status = httpx.get(f"http://127.0.0.1:{sup.ui}/api/sessions/sup/status", trust_env=False)
    assert ui_status.status_code == 200 and ui_status.json()["state"] == "idle"

    children = [sup.child_pid(n) for n in ("worker", "restate", "ui")]
    assert sup.interrupt() == 0
    assert not any(alive(pid) for pid in children)
    assert not list((sup.data_dir / "run").glob("*.pid"))

    # Run it again on the same data dir: no leftovers in the way, and the history is still there.
    sup.start()
    assert [m["role"] for m in history(stack, "sup")] == ["user", "agent"]  # through the same key
    assert key_file.read_bytes() == key
    assert sup.interrupt() == 0


def test_cluster_command_serves_through_any_node_restarts_what_dies_and_upgrades(supervised, tmp_path):
    """`python -m stack run --nodes 3 --workers 2` (what `make cluster` runs), on the repo's
    cluster files moved to free ports, then `python -m stack upgrade` against it."""
    nodes = cluster.nodes_on_ports([tuple(free_ports(3)) for _ in range(3)])
    cluster_dir = _cluster_files(tmp_path / "cluster", nodes)
    sup = supervised("tests.fakes.chaos_scripts:short", env={"AGENT_CLUSTER_DIR": str(cluster_dir)},
                     args=("--nodes", "3", "--workers", "2"))
    banner = sup.log.read_text()
    assert all(f"Ingress:      {node.ingress_url}  ({node.name})" in banner for node in nodes), banner
    stack = sup.stack(ingress_port=nodes[2].ingress_port)  # node-3's ingress

    send_message(stack, "clu", "append the lines for clu")
    stack.wait_until(lambda: try_read_file(stack, "clu", "lines.txt"), timeout=60, message="a first line")
    killed = {name: sup.child_pid(name) for name in ("worker-1", "node-2")}
    for pid in killed.values():  # behind the supervisor's back
        processes.kill_pgid(pid)
    for name, old in killed.items():
        stack.wait_until(lambda: sup.child_pid(name) != old and alive(sup.child_pid(name)),
                         timeout=60, message=f"{name} restarted by the supervisor")

    wait_idle(stack, "clu", timeout=120)
    assert read_file(stack, "clu", "lines.txt").splitlines() == expected_lines(SHORT_STEPS, SHORT_LINES_PER_STEP)

    # An upgrade in cluster mode: the new version gets its own pool of two on its own port,
    # registered once for the whole cluster; the old pool drains (nothing is left on it) and stops.
    [v1] = sup.registry()["versions"]
    old_workers = [sup.child_pid(n) for n in ("worker-1", "worker-2")]
    log = tmp_path / "upgrade.log"
    assert sup.upgrade(v2_source(tmp_path), log).wait(timeout=120) == 0, log.read_text()
    assert f"version {v1['version']}: drained and stopped" in log.read_text()
    [v2] = sup.registry()["versions"]
    assert v2["port"] != v1["port"] and not any(alive(pid) for pid in old_workers)
    new_task = send_message(stack, "clu-v2", "append the lines for clu-v2")
    wait_idle(stack, "clu-v2", timeout=120)
    assert read_file(stack, "clu-v2", "lines.txt").splitlines() == expected_lines(SHORT_STEPS, SHORT_LINES_PER_STEP)
    deployment, steps = task_run(sup.stack(admin_port=nodes[1].admin_port), new_task)  # node-2's admin API
    assert deployment == v2["deployment_id"] and steps[0] == "settings (v2)"

    children = [sup.child_pid(n) for n in ("node-1", "node-2", "node-3", "worker-1", "worker-2", "ui")]
    assert sup.interrupt() == 0
    assert not any(alive(pid) for pid in children)


def _cluster_files(directory: Path, nodes: list[cluster.Node]) -> Path:
    """The repo's cluster/node-*.toml with every port replaced by the given nodes' ports."""
    ports: dict[str, str] = {}
    for repo_node, node in zip(cluster.repo_nodes(), nodes, strict=True):
        for old, new in ((repo_node.ingress_port, node.ingress_port), (repo_node.admin_port, node.admin_port),
                         (repo_node.node_port, node.node_port)):
            ports[f"127.0.0.1:{old}"] = f"127.0.0.1:{new}"
    directory.mkdir(parents=True)
    for node in cluster.repo_nodes():
        text = node.config_file.read_text()
        for old, new in ports.items():
            text = text.replace(f"{old}\"", f"{new}\"")
        (directory / node.config_file.name).write_text(text)
    return directory
