"""The local sandbox: command start, snapshot and restore, bringing a sandbox back, checkpoints.

Micro measurements call the backend directly (no Restate). The recovery measurements go
through the real stack, because what a user waits for is the Sandbox object's whole path.

Why not "recover after TTL expiry" directly: `_schedule_restart` (app/sandbox_service.py)
arms a restart at expires_at − min(SANDBOX_RESTART_MARGIN_S, TTL / 3), so a sandbox is always
snapshotted and restarted *before* its TTL, idle or not, and no setting lets one expire on its
own (a tiny margin only races the timer against the deadline). So we measure the two ways a
stopped or dead sandbox comes back, with no TTL set (no restart timers at all):
- idle suspension (snapshot + terminate after SANDBOX_IDLE_S, set just long enough, see
  `recovery`), then a command: `create` from the idle snapshot, then the command;
- killed underneath: we terminate the live sandbox through a second LocalBackend on the same
  root (the same `_mark_gone` that TTL expiry does), then a command: its `exec` step gets
  SandboxGone (410), the object recreates from the last snapshot and retries the command.
Both are timed as one ingress call (Bench.sandbox_exec → Sandbox.exec), beside a command on a
running sandbox through the same path.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import time
import uuid
from pathlib import Path

from bench import workspace
from bench.common import Row, call_ok, log, median, temp_dir, running_stack, table
from sandbox import LocalLimits, SandboxBackend, create_backend
from sandbox.bwrap import bwrap_path, sandbox_argv
from sandbox.limits import MB
from tests.harness import Stack

COMMANDS = 50
SIZES = {"1 MB": (1 * MB, 10), "100 MB": (100 * MB, 3)}  # label: (bytes, repetitions)
# Through the stack, per size: repetitions, and commands on the running sandbox per repetition.
STACK_RUNS = {"1 MB": (5, 2), "100 MB": (3, 3)}


# --- without a stack -----------------------------------------------------------------------------


def command_start(root: Path, backend: SandboxBackend) -> dict[str, list[float]]:
    """`true` three ways, interleaved: bare subprocess, our bwrap argv alone (what every command
    cost before the live sandbox), LocalBackend.exec on a running sandbox."""
    # Layout from sandbox/local.py: <root>/<name>/project, <root>/.etc.
    argv = sandbox_argv(bwrap_path(), root / "start" / "project", root / ".etc", "true", 256 * MB)

    async def measure() -> dict[str, list[float]]:
        sid = (await backend.create("start")).sandbox_id
        samples: dict[str, list[float]] = {"bare": [], "bwrap": [], "backend": []}
        for i in range(COMMANDS + 3):  # three to warm up
            started = time.perf_counter()
            subprocess.run(["true"], check=True)
            bare = time.perf_counter()
            subprocess.run(argv, check=True)
            bwrap = time.perf_counter()
            result = await backend.exec(sid, "true", 10)
            done = time.perf_counter()
            assert result.exit_code == 0, result
            if i >= 3:
                samples["bare"].append(bare - started)
                samples["bwrap"].append(bwrap - bare)
                samples["backend"].append(done - bwrap)
        await backend.terminate(sid)
        return samples

    return asyncio.run(measure())


def snapshots(root: Path, backend: SandboxBackend, label: str, size: int,
              reps: int) -> tuple[list[float], list[float], int]:
    """(snapshot seconds, restore seconds, archive bytes) for a workspace of `size` bytes."""

    async def measure() -> tuple[list[float], list[float], int]:
        name = f"snap-{size}"
        sid = (await backend.create(name)).sandbox_id
        made = await backend.exec(sid, workspace.command(size), 120)
        assert made.exit_code == 0, made
        taken, restored, archive = [], [], 0
        for i in range(reps):
            os.sync()  # no writeback of the last step's files competing with this one
            started = time.perf_counter()
            snapshot_id = await backend.snapshot(sid, f"{name}-{i}")
            taken.append(time.perf_counter() - started)
            archive = (root / "snapshots" / f"{snapshot_id}.tar.zst").stat().st_size
            os.sync()
            started = time.perf_counter()
            copy = await backend.create(f"restore-{size}-{i}", snapshot_id)
            restored.append(time.perf_counter() - started)
            await backend.terminate(copy.sandbox_id)
            await backend.delete_snapshot(snapshot_id)
        await backend.terminate(sid)
        return taken, restored, archive

    log(f"sandbox: snapshot and restore, {label} workspace")
    return asyncio.run(measure())


# --- through the stack ---------------------------------------------------------------------------


def sandbox_exec(stack: Stack, session: str, command: str = "true", timeout: float = 60) -> float:
    """One command through Bench.sandbox_exec → Sandbox.exec; seconds for the ingress call."""
    started = time.perf_counter()
    out = call_ok(stack, "Bench", None, "sandbox_exec", {"session": session, "op_id": f"bench/{uuid.uuid4()}",
                                                         "command": command, "timeout_s": timeout},
                  timeout=timeout + 30)
    elapsed = time.perf_counter() - started
    if out["exit_code"] != 0:
        raise RuntimeError(f"{command[:40]!r} failed in the sandbox: {out}")
    return elapsed


def checkpoint_costs(stack: Stack, label: str, size: int, reps: int) -> dict[str, list[float]]:
    """A step's checkpoint (Bench.sandbox_checkpoint → Sandbox.checkpoint), after a step that
    changed the workspace (a new snapshot, held) and after one that did not (the previous
    checkpoint's snapshot is shared)."""
    session = f"cp-{size}"
    sandbox_exec(stack, session, workspace.command(size), timeout=120)
    samples: dict[str, list[float]] = {"changed": [], "unchanged": []}
    log(f"sandbox: {reps} × checkpoints, {label} workspace")
    for rep in range(reps):
        sandbox_exec(stack, session, f"echo {rep} > step.txt")  # the step changed something
        os.sync()
        for kind in ("changed", "unchanged"):
            started = time.perf_counter()
            out = call_ok(stack, "Bench", None, "sandbox_checkpoint",
                          {"session": session, "checkpoint_id": f"bench-{rep}-{kind}"}, timeout=120)
            samples[kind].append(time.perf_counter() - started)
            if out["snapshot_id"] is None:
                raise RuntimeError(f"no checkpoint was taken: {out}")
    return samples


def check_workspace(stack: Stack, session: str) -> None:
    """The restored workspace still holds what the generator wrote (a text file and a blob)."""
    sandbox_exec(stack, session, "test -s src/pkg000/mod00.py && test -s data/blob000.bin")


def recovery(stack: Stack, outsider: SandboxBackend, label: str, size: int, idle_s: float, reps: int,
             running_per_rep: int) -> tuple[dict[str, list[float]], int]:
    """Commands after an idle suspension, after the sandbox was killed underneath, and on a
    running one; also how many repetitions were discarded.

    An idle timer that fires between two of our calls would race our kill, so `idle_s` is
    chosen well above a restore, and a repetition where a command came close to it anyway, or
    where the info counters show anything but one restore and one recreate, is discarded
    rather than reported.
    """
    session = f"ws-{size}"
    sandbox_exec(stack, session, workspace.command(size), timeout=120)
    samples: dict[str, list[float]] = {"running": [], "resumed": [], "recreated": []}
    discarded = 0
    log(f"sandbox: {reps} × (idle suspension, kill, {running_per_rep} commands), {label} workspace, "
        f"SANDBOX_IDLE_S={idle_s:g}")
    for _ in range(reps):
        stack.wait_until(lambda: call_ok(stack, "Sandbox", session, "info")["state"] == "suspended",
                         timeout=60 + idle_s, interval=0.05, message="the idle suspension")
        creates = call_ok(stack, "Sandbox", session, "info")["creates"]
        os.sync()  # as after a real idle period: the snapshot and workspace are on disk
        resumed = sandbox_exec(stack, session)
        info = call_ok(stack, "Sandbox", session, "info")
        if resumed > 0.7 * idle_s or info["state"] != "running":
            discarded += 1
            continue
        asyncio.run(outsider.terminate(info["sandbox_id"]))
        recreated = sandbox_exec(stack, session)
        running = [sandbox_exec(stack, session) for _ in range(running_per_rep)]
        after = call_ok(stack, "Sandbox", session, "info")
        check_workspace(stack, session)
        if recreated > 0.7 * idle_s or after["state"] != "running" or after["creates"] != creates + 2:
            discarded += 1
            continue
        samples["resumed"].append(resumed)
        samples["recreated"].append(recreated)
        samples["running"] += running
    if not samples["resumed"]:
        raise RuntimeError(f"every repetition overlapped an idle suspension; SANDBOX_IDLE_S={idle_s:g} is too short")
    return samples, discarded


# --- the table -----------------------------------------------------------------------------------


def run() -> tuple[str, str]:
    rows: list[Row] = []
    restore_times: dict[str, float] = {}
    with temp_dir("sandbox") as root:
        backend = create_backend("local", root / "sandboxes", LocalLimits())
        try:
            log(f"sandbox: {COMMANDS} × `true` three ways")
            start = command_start(root / "sandboxes", backend)
            rows += [
                Row.of("start `true`: bare `subprocess.run([\"true\"])`", start["bare"], "no isolation"),
                Row.of("start `true`: our bwrap argv alone", start["bwrap"],
                       "`sandbox_argv(...)` via subprocess.run as root; no cgroup, uid drop or pipes"),
                Row.of("start `true`: `LocalBackend.exec`", start["backend"],
                       "sandbox running: a message to its supervisor, fork + exec inside, output pipes passed "
                       "back, quota watch, limit counters"),
            ]
            for label, (size, reps) in SIZES.items():
                taken, restored, archive = snapshots(root / "sandboxes", backend, label, size, reps)
                restore_times[label] = median(restored)
                rows += [
                    Row.of(f"snapshot, {label} workspace", taken,
                           f"`snapshot()`: tar + zstd -3 + fsync; archive {archive / MB:.1f} MB"),
                    Row.of(f"restore, {label} workspace", restored,
                           "`create(name, snapshot_id)`: unpack, chown, rename"),
                ]
        finally:
            backend.close()

        for label, (size, _) in SIZES.items():
            stack_reps, running_per_rep = STACK_RUNS[label]
            # Well above a restore of this size on this machine (see `recovery`), at least 1 s.
            idle_s = float(min(30, max(1, math.ceil(3 * restore_times[label] + 1))))
            with running_stack(root / label.replace(" ", ""), "rounds",
                               env={"SANDBOX_IDLE_S": f"{idle_s:g}"}) as stack:
                outsider = create_backend("local", stack.data_dir / "sandboxes", LocalLimits())
                try:
                    got, discarded = recovery(stack, outsider, label, size, idle_s, stack_reps, running_per_rep)
                    checkpoints = checkpoint_costs(stack, label, size, stack_reps)
                finally:
                    outsider.close()
            dropped = f"; {discarded} repetition(s) discarded (a command came near SANDBOX_IDLE_S)" if discarded else ""
            rows += [
                Row.of(f"stack: command, sandbox running ({label})", got["running"],
                       "ingress → Bench.sandbox_exec → Sandbox.exec → `true`"),
                Row.of(f"stack: first command after idle suspension ({label})", got["resumed"],
                       f"same call; Sandbox restores the idle snapshot first (SANDBOX_IDLE_S={idle_s:g}){dropped}"),
                Row.of(f"stack: first command after the sandbox died ({label})", got["recreated"],
                       "same call; exec step → 410, recreate from last snapshot, exec again"),
                Row(f"  = what the restore adds to a command ({label})",
                    median(got["resumed"]) - median(got["running"]), None, "derived",
                    "first command after suspension − command on a running sandbox (medians)"),
                Row.of(f"stack: a step's checkpoint, workspace changed ({label})", checkpoints["changed"],
                       "ingress → Bench → Sandbox.checkpoint: snapshot + hold it (Snapshots) + make it the base"),
                Row.of(f"stack: a step's checkpoint, workspace unchanged ({label})", checkpoints["unchanged"],
                       "same call; shares the previous checkpoint's snapshot (one hold)"),
            ]
    rows.append(Row("Modal sandbox boot (**published, not measured**)", 1.5, None, "–",
                    "Modal's published figure, about 1.5 s; for context only"))
    mix = (f"Workspaces: {workspace.TEXT_SHARE:.0%} of the bytes source-like text in 2–24 kB files "
           f"(≈ 3× compressible), {1 - workspace.TEXT_SHARE:.0%} random bytes in ≤ 1 MB files. Dirty "
           "pages are flushed (`sync`) before each timed snapshot or restore; the page cache is warm. "
           "No TTL is set: see bench/sandbox.py for why expiry itself is not timed.")
    return "Local sandbox", table(rows) + "\n\n" + mix
