"""The host-wide cap on running commands (sandbox/slots.py): it holds across worker processes,
a SIGKILLed holder frees its slot, waiters are visible, and the local backend runs no more
commands at once than it has slots."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sandbox import LocalLimits, create_backend
from sandbox.slots import CommandSlots

from .conftest import Run

# Another worker process: takes one slot of `directory`, says so, and holds it until killed.
HOLDER = textwrap.dedent("""
    import asyncio, sys
    from sandbox.slots import CommandSlots

    async def main():
        async with CommandSlots(sys.argv[1], int(sys.argv[2])).slot(sys.argv[3]) as index:
            print(index, flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
""")


def start_holder(directory: Path, count: int, key: str) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), str(count), key],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() in ("0", "1")  # it holds a slot
    return holder


def test_slots_hold_across_processes_and_a_killed_holder_frees_its_slot(tmp_path: Path, run: Run) -> None:
    holders = [start_holder(tmp_path, 2, f"other{i}") for i in range(2)]
    slots = CommandSlots(tmp_path, 2)
    assert slots.use().in_use == 2

    async def wait_for_a_slot() -> int:
        async with slots.slot("mine") as index:
            return index

    async def scenario() -> int:
        waiter = asyncio.ensure_future(wait_for_a_slot())
        await asyncio.sleep(0.5)
        assert not waiter.done()  # both slots are another process's
        assert slots.waiting_for("mine") and slots.use().waiting == 1
        holders[0].kill()  # SIGKILL: its lock goes with it
        return await asyncio.wait_for(waiter, 10)

    try:
        assert run(scenario()) in (0, 1)
        assert not slots.waiting_for("mine")
        assert slots.use().in_use == 1 and slots.use().waiting == 0  # ours is released, one holder left
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()


def test_a_killed_waiter_is_no_longer_shown_waiting(tmp_path: Path) -> None:
    start = start_holder(tmp_path, 1, "first")
    waiter = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), "1", "second"],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    slots = CommandSlots(tmp_path, 1)
    try:
        deadline = time.monotonic() + 10
        while not slots.waiting_for("second") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slots.waiting_for("second")
        waiter.kill()
        waiter.wait()
        assert not slots.waiting_for("second") and slots.use().waiting == 0
    finally:
        for process in (start, waiter):
            process.kill()
            process.wait()


def test_the_local_backend_runs_no_more_commands_at_once_than_it_has_slots(sandbox_root: Path, run: Run) -> None:
    backend = create_backend("local", sandbox_root, LocalLimits(max_running_commands=2))
    sandboxes = [run(backend.create(f"s{i}")).sandbox_id for i in range(5)]
    # Sandboxes cannot see each other, so each command records when it ran, in its own workspace.
    stamp = "date +%s.%N > start; sleep 0.5; date +%s.%N > end"

    async def all_at_once() -> None:
        await asyncio.gather(*(backend.exec(sid, stamp, 30) for sid in sandboxes))

    run(all_at_once())
    spans = [tuple(float(run(backend.read_file(sid, name, 100))) for name in ("start", "end")) for sid in sandboxes]
    busiest = max(sum(1 for s, e in spans if s <= moment < e) for moment, _ in spans)
    assert busiest <= 2  # without the cap, all five overlap
    for sid in sandboxes:
        run(backend.terminate(sid))


@pytest.mark.parametrize("count", [0, -1])
def test_there_is_at_least_one_slot(tmp_path: Path, count: int) -> None:
    with pytest.raises(ValueError):
        CommandSlots(tmp_path, count)
