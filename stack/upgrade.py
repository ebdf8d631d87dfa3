"""Immutable, versioned deployments, and `python -m stack upgrade`.

A code version is the app's source (app/ and sandbox/), named by a hash of it, copied once into
$AGENT_DATA_DIR/versions/<version>/ and served from there by its own worker, at its own
deployment URL `http://127.0.0.1:<port>/<version>` (app/deployment.py answers nothing else).
Each version is registered as a new deployment, without `force`: Restate sends new invocations
to the newest one and keeps every invocation on the deployment it started on, so a journal is
only ever replayed by the code that wrote it, even when that worker is SIGKILLed and restarted
mid-drain (it restarts from the same copy). Editing the checkout changes no running version.

The supervisor (stack/supervisor.py) owns the workers and the registry of versions it serves
($AGENT_DATA_DIR/deployments.json): the newest, and older ones still draining. The upgrade
command only snapshots the code and asks: it writes run/upgrade-request.json, the supervisor
starts the new version beside the old, registers it, answers in run/upgrade-status.json, and
from then on counts the invocations still pinned to each older deployment (admin SQL on
sys_invocation). When one has none left, its deployment is removed and its worker stopped. A
restart of the supervisor serves every version in the registry, so nothing pinned is stranded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stack import processes

SOURCE_DIRS = ("app", "sandbox")  # everything the worker imports from the repo
REGISTRY = "deployments.json"
REQUEST = "upgrade-request.json"
STATUS = "upgrade-status.json"


# --- versions of the code ------------------------------------------------------------------------


def _source_files(source: Path) -> list[Path]:
    files = []
    for directory in SOURCE_DIRS:
        for path in sorted((source / directory).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.append(path)
    if not files:
        raise FileNotFoundError(f"{source} has no {' or '.join(SOURCE_DIRS)}/ to deploy")
    return files


def code_version(source: Path) -> str:
    """The version id of the code in `source`: a hash of its files' paths and contents."""
    digest = hashlib.sha256()
    for path in _source_files(source):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    return "v" + digest.hexdigest()[:12]


def snapshot(source: Path, versions_dir: Path) -> str:
    """Copy the code in `source` to versions_dir/<version> (once; a version never changes)."""
    version = code_version(source)
    target = versions_dir / version
    if not target.is_dir():
        staging = versions_dir / f".{version}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        for path in _source_files(source):
            destination = staging / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
        staging.replace(target)  # atomic: a version dir is complete or absent
    return version


# --- the registry of versions being served -------------------------------------------------------


@dataclass
class Version:
    version: str
    port: int
    deployment_id: str | None = None
    draining: bool = False
    left: int | None = None  # invocations still pinned to it, last time we looked
    draining_since: float | None = None  # wall-clock time the newer version took over
    quiet_checks: int = 0  # drain checks in a row that found nothing pinned and no node routing to it


@dataclass
class Registry:
    """The versions the supervisor serves, oldest first; the last one is the newest."""

    path: Path
    versions: list[Version] = field(default_factory=list)
    checkout: str | None = None  # the checkout's version when the supervisor last started

    @classmethod
    def load(cls, data_dir: Path) -> Registry:
        path = data_dir / REGISTRY
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path)
        return cls(path, [Version(**v) for v in raw["versions"]], raw.get("checkout"))

    def save(self) -> None:
        _write_json(self.path, {"versions": [asdict(v) for v in self.versions], "checkout": self.checkout})

    @property
    def newest(self) -> Version | None:
        return self.versions[-1] if self.versions else None

    @property
    def draining(self) -> list[Version]:
        return [v for v in self.versions if v.draining]

    def find(self, version: str) -> Version | None:
        return next((v for v in self.versions if v.version == version), None)


def pinned_invocations(admin_port: int, deployment_id: str) -> int:
    """How many unfinished invocations are pinned to `deployment_id` (and would break without it)."""
    rows = processes.admin_query(
        admin_port,
        "SELECT count(*) AS pinned FROM sys_invocation "
        f"WHERE pinned_deployment_id = '{deployment_id}' AND status != 'completed'")
    return int(rows[0]["pinned"]) if rows else 0


def take_request(run_dir: Path) -> str | None:
    """The version an upgrade command asked for, if any (the request is consumed)."""
    path = run_dir / REQUEST
    try:
        version = str(json.loads(path.read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    path.unlink(missing_ok=True)
    return version


def answer(run_dir: Path, version: str, ok: bool, message: str) -> None:
    _write_json(run_dir / STATUS, {"version": version, "ok": ok, "message": message})


def _write_json(path: Path, value: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=1))
    temporary.replace(path)


# --- the command ---------------------------------------------------------------------------------


def upgrade(source: Path, wait: bool = True) -> int:
    """`python -m stack upgrade`: deploy the code in `source` to the running stack.

    0 once the new version serves and (with `wait`) every older one has drained; 1 when there
    is no running stack or the new version did not start.
    """
    from app.config import settings
    from stack.supervisor import running_supervisor

    data_dir = settings().data_dir.resolve()
    run_dir = data_dir / "run"
    pid = running_supervisor(run_dir)
    if pid is None:
        return _fail(f"no `python -m stack run` is running on {data_dir}; start it first "
                     "(it serves the checkout's code)")
    try:
        version = snapshot(source.resolve(), data_dir / "versions")
    except FileNotFoundError as exc:
        return _fail(str(exc))
    _say(f"version {version} (from {source}): asking the supervisor (pid {pid}) to serve it")
    (run_dir / STATUS).unlink(missing_ok=True)
    _write_json(run_dir / REQUEST, {"version": version})
    while (status := _read(run_dir / STATUS)) is None or status.get("version") != version:
        if running_supervisor(run_dir) != pid:
            return _fail("the supervisor stopped before it answered")
        time.sleep(0.2)
    _say(status["message"])
    if not status["ok"]:
        return 1
    if not wait:
        return 0
    _say("older versions keep running until their invocations finish (Ctrl-C stops watching, "
         "not the drain)")
    shown: dict[str, int | None] = {}
    while True:
        registry = Registry.load(data_dir)
        draining = {v.version: v.left for v in registry.draining}
        for old, left in draining.items():
            if shown.get(old, -1) != left and left is not None:
                _say(f"version {old}: {left} invocation(s) left")
        for old in set(shown) - set(draining):
            _say(f"version {old}: drained and stopped")
        shown = draining
        if not draining:
            _say(f"done: only version {version} is running")
            return 0
        if running_supervisor(run_dir) != pid:
            return _fail("the supervisor stopped; its next start carries on draining")
        time.sleep(0.5)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _say(message: str) -> None:
    print(f"[upgrade {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _fail(message: str) -> int:
    print(f"[upgrade] {message}", file=sys.stderr, flush=True)
    return 1
