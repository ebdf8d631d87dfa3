"""Rewind and fork a session, workspace included, on the real stack."""

from __future__ import annotations

from tests.agent_helpers import history, send_message, wait_idle

SCRIPTS = "tests.fakes.rewind_scripts"


def checkpoints(stack, session: str) -> list[dict]:
    code, body = stack.call("Agent", session, "checkpoints")
    assert code == 200, (code, body)
    return body["checkpoints"]


def workspace(stack, session: str) -> dict[str, str]:
    """Every top-level file of the workspace with its content, and how many files each
    directory holds (the platform's saved outputs aside)."""
    code, listing = stack.call("Sandbox", session, "list_files", {"path": "."})
    assert code == 200, listing
    files: dict[str, str] = {}
    for entry in listing["entries"]:
        path = entry["path"]
        if entry["kind"] != "file" or path.startswith(".agent/"):
            continue
        if "/" in path:  # counted on disk below: a listing stops at 2,000 entries
            continue
        code, body = stack.call("Sandbox", session, "read_file", {"path": path})
        assert code == 200, body
        files[path] = body["content"]
    code, info = stack.call("Sandbox", session, "info")
    assert code == 200 and info["state"] == "running", info
    project = stack.data_dir / "sandboxes" / info["sandbox_id"].split("~")[0] / "project"
    for directory in sorted(p for p in project.iterdir() if p.is_dir() and p.name != ".agent"):
        files[directory.name + "/"] = str(sum(1 for f in directory.rglob("*") if f.is_file()))
    return files


def kill_worker_inside_a_restore(stack, session: str) -> None:
    """SIGKILL the worker while the session's Sandbox.restore runs, and start it again."""
    stack.wait_until(lambda: stack.query(
        "SELECT id FROM sys_invocation WHERE target_service_name = 'Sandbox' AND target_handler_name = 'restore' "
        f"AND target_service_key = '{session}' AND status = 'running'"), interval=0.02, timeout=30,
        message=f"Sandbox/{session}/restore to run")
    stack.kill_worker()
    stack.start_worker()


def holders(stack, snapshot_id: str) -> dict:
    code, body = stack.call("Snapshots", snapshot_id, "holders")
    assert code == 200, (code, body)
    return body


def test_fork_and_rewind_give_back_the_workspace_and_the_conversation_of_a_step(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:three_files")
    send_message(stack, "orig", "write three files")
    wait_idle(stack, "orig")
    points = checkpoints(stack, "orig")
    assert [(p["step"], p["title"]) for p in points] == [(1, "Write a"), (2, "Write b"), (3, "Write c")]
    assert len({p["snapshot_id"] for p in points}) == 3  # every step changed the workspace

    code, forked = stack.call("Agent", "orig", "fork", {"checkpoint": points[0]["checkpoint_id"], "session": "copy"})
    assert code == 200, forked
    assert workspace(stack, "copy") == {"a.txt": "A\n"}  # as step 1 left it
    assert workspace(stack, "orig") == {"a.txt": "A\n", "b.txt": "B\n", "c.txt": "C\n"}  # untouched
    copy_history = history(stack, "copy")
    assert [h["role"] for h in copy_history] == ["user", "event"] and "forked from session orig" in copy_history[-1]["text"]
    assert [p["step"] for p in checkpoints(stack, "copy")] == [1]

    code, body = stack.call("Agent", "orig", "rewind", {"checkpoint": points[1]["checkpoint_id"]})
    assert code == 200 and body["rewound_entries"] == 1, body  # the first task's answer
    assert workspace(stack, "orig") == {"a.txt": "A\n", "b.txt": "B\n"}
    entries = history(stack, "orig")
    assert [(h["role"], h["rewound"]) for h in entries] == [("user", False), ("agent", True), ("event", False)]
    assert [p["rewound"] for p in checkpoints(stack, "orig")] == [False, False, True]
    for operation in ("rewind", "fork"):  # a rewound checkpoint is no place to go
        code, answer = stack.call("Agent", "orig", operation, {"checkpoint": points[2]["checkpoint_id"]})
        assert code == 409, (operation, code, answer)

    before = len(stack.llm_requests())
    send_message(stack, "orig", "now something else")
    wait_idle(stack, "orig")
    planning = stack.llm_requests()[before]["request"]["messages"][-1]["content"]
    assert "write three files" in planning and "now something else" in planning
    assert "c written" not in planning  # the rewound answer is not in what the model sees


def test_forks_of_forks_and_a_snapshot_lives_as_long_as_a_checkpoint_holds_it(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:three_files")
    send_message(stack, "a", "write three files")
    wait_idle(stack, "a")
    first, second, third = checkpoints(stack, "a")
    assert stack.call("Agent", "a", "fork", {"checkpoint": first["checkpoint_id"], "session": "b"})[0] == 200
    assert stack.call("Agent", "b", "fork", {"checkpoint": first["checkpoint_id"], "session": "c"})[0] == 200
    assert workspace(stack, "c") == {"a.txt": "A\n"}

    assert stack.call("Agent", "a", "reset")[0] == 200
    for only_a in (second, third):  # only a's checkpoints and sandbox held these
        stack.wait_until(lambda: holders(stack, only_a["snapshot_id"])["deleted"], message="the delete")
    kept = holders(stack, first["snapshot_id"])
    assert not kept["deleted"] and {h for h in kept["holders"] if h.startswith("checkpoint:")} == {
        f"checkpoint:b/{first['checkpoint_id']}", f"checkpoint:c/{first['checkpoint_id']}"}

    assert stack.call("Agent", "b", "delete")[0] == 200
    assert stack.call("Agent", "b", "history")[0] == 404
    assert not holders(stack, first["snapshot_id"])["deleted"]  # c still holds it
    send_message(stack, "c", "carry on")  # c works on, from step 1's workspace
    wait_idle(stack, "c")
    assert stack.call("Agent", "c", "delete")[0] == 200
    stack.wait_until(lambda: holders(stack, first["snapshot_id"]) == {"holders": [], "deleted": True},
                     message="the last holder's release to delete it")
    archives = list((stack.data_dir / "sandboxes" / "snapshots").glob("*.tar.zst"))
    assert archives == [], archives


def test_bad_rewinds_and_forks_get_a_4xx_and_change_nothing(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:three_files")
    for session in ("mine", "other"):
        send_message(stack, session, "write three files")
        wait_idle(stack, session)
    theirs = checkpoints(stack, "other")[0]["checkpoint_id"]
    mine = checkpoints(stack, "mine")[0]["checkpoint_id"]
    before = (history(stack, "mine"), workspace(stack, "mine"), checkpoints(stack, "mine"), history(stack, "other"))

    for handler, body, status in [
        ("rewind", {"checkpoint": "no-such-checkpoint"}, 404),
        ("rewind", {"checkpoint": theirs}, 404),  # another session's checkpoint
        ("rewind", {}, 400),
        ("rewind", "not json", 400),
        ("fork", {"checkpoint": theirs, "session": "new"}, 404),
        ("fork", {"checkpoint": mine, "session": "other"}, 409),  # onto an existing session
        ("fork", {"checkpoint": mine, "session": "../escape"}, 400),
        ("fork", {"checkpoint": mine, "session": "mine"}, 400),
    ]:
        code, answer = stack.call("Agent", "mine", handler, body)
        assert code == status, (handler, body, code, answer)
    assert stack.call("Agent", "nobody", "rewind", {"checkpoint": mine})[0] == 404

    assert (history(stack, "mine"), workspace(stack, "mine"), checkpoints(stack, "mine"),
            history(stack, "other")) == before
    assert stack.call("Agent", "new", "history")[0] == 404


def test_worker_killed_inside_a_rewind_and_a_fork_leaves_the_whole_operation(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:many_files_then_one")
    send_message(stack, "big", "write files")
    wait_idle(stack, "big", timeout=120)
    first, second = checkpoints(stack, "big")
    after_first = {"a.txt": "A\n", "many/": "5000"}

    for operation, body, restoring in [("fork", {"checkpoint": first["checkpoint_id"], "session": "twin"}, "twin"),
                                       ("rewind", {"checkpoint": first["checkpoint_id"]}, "big")]:
        code, sent = stack.send("Agent", "big", operation, body)
        assert code == 202, sent
        kill_worker_inside_a_restore(stack, restoring)
        code, result = stack.attach(sent["invocationId"], timeout=120)
        assert code == 200, (operation, result)

    assert workspace(stack, "twin") == after_first
    assert [h["role"] for h in history(stack, "twin")] == ["user", "event"]
    assert workspace(stack, "big") == after_first
    entries = history(stack, "big")
    assert [(h["role"], h["rewound"]) for h in entries] == [("user", False), ("agent", True), ("event", False)]
    assert [p["rewound"] for p in checkpoints(stack, "big")] == [False, True]


def test_a_fork_leaves_the_running_task_of_its_session_alone(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:three_files_slow_end")
    send_message(stack, "busy", "write three files")
    first = stack.wait_until(lambda: checkpoints(stack, "busy")[:1], message="step 1's checkpoint")[0]
    stack.wait_until(lambda: len(checkpoints(stack, "busy")) == 2, message="step 2's checkpoint")

    code, forked = stack.call("Agent", "busy", "fork", {"checkpoint": first["checkpoint_id"]})
    assert code == 200, forked
    assert stack.call("Agent", "busy", "status")[1]["state"] == "running"  # still going

    final = wait_idle(stack, "busy")
    assert [p["status"] for p in final["plan"]] == ["done"] * 3
    assert workspace(stack, "busy") == {"a.txt": "A\n", "b.txt": "B\n", "c.txt": "C\n"}
    assert workspace(stack, forked["session"]) == {"a.txt": "A\n"}
    assert forked["session"].startswith("busy-fork-")


def test_a_rewind_to_a_snapshot_deleted_by_hand_says_so_to_the_user_and_the_model(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:three_files")
    send_message(stack, "gone", "write three files")
    wait_idle(stack, "gone")
    first = checkpoints(stack, "gone")[0]
    archives = list((stack.data_dir / "sandboxes" / "snapshots").glob(f"{first['snapshot_id']}*"))
    assert len(archives) == 1
    archives[0].unlink()  # lost outside the product's control (a disk, a hand)

    code, body = stack.call("Agent", "gone", "rewind", {"checkpoint": first["checkpoint_id"]})
    assert code == 200, body
    assert "could not be found" in history(stack, "gone")[-1]["text"]
    assert workspace(stack, "gone") == {}

    send_message(stack, "gone", "try again")
    wait_idle(stack, "gone")
    said = [m["content"] for e in stack.llm_requests() for m in e["request"]["messages"] if m.get("role") != "system"]
    told = {s for s in said if "[sandbox] The sandbox's saved workspace could not be found" in s}
    # Told once, in the next task's first step prompt, before the model acts on the workspace.
    assert len(told) == 1, said
    assert "Current step 1:" in told.pop()


def test_an_interrupt_during_a_checkpoint_leaves_no_snapshot_unheld(stack_factory):
    # The Task's call to Sandbox.checkpoint must not be cut by the Task's cancellation: cut, the
    # snapshot was written but never held by anyone (leaked), and the sandbox's state was left
    # between two transitions.
    stack = stack_factory(f"{SCRIPTS}:heavy_then_slow")
    send_message(stack, "cut", "make a big file, then wait")
    stack.wait_until(lambda: stack.query(
        "SELECT id FROM sys_invocation WHERE target_service_name = 'Sandbox' AND target_handler_name = 'checkpoint' "
        "AND target_service_key = 'cut' AND status = 'running'"), interval=0.01, timeout=60,
        message="the checkpoint after step 1 to run")
    code, body = stack.call("Agent", "cut", "interrupt")
    assert code == 200 and body["interrupted"], body
    wait_idle(stack, "cut", timeout=60)
    stack.wait_until(lambda: not stack.query(
        "SELECT id FROM sys_invocation WHERE target_service_name IN ('Sandbox', 'Snapshots') "
        "AND status NOT IN ('completed')"
        " AND target_handler_name NOT IN ('suspend_if_idle', 'restart')"), timeout=60,
        message="the sandbox's and snapshots' invocations to settle")

    snapshots = stack.data_dir / "sandboxes" / "snapshots"
    # A snapshot cut short by a cancel can still be written by its thread: wait for the disk.
    stack.wait_until(lambda: not list(snapshots.glob(".*.tmp")), timeout=60, message="snapshot writes to end")
    on_disk = sorted(p.name.removesuffix(".tar.zst") for p in snapshots.glob("*.tar.zst"))
    assert on_disk, "the checkpoint's snapshot was taken"
    for snapshot_id in on_disk:
        assert holders(stack, snapshot_id)["holders"], f"snapshot {snapshot_id} is on disk and held by nobody"
    code, info = stack.call("Sandbox", "cut", "info")
    assert code == 200 and info["state"] == "running", info


def test_a_rewind_lets_go_of_the_workspaces_it_undid(stack_factory):
    stack = stack_factory(f"{SCRIPTS}:three_files")
    send_message(stack, "undo", "write three files")
    wait_idle(stack, "undo")
    first, second, third = checkpoints(stack, "undo")
    assert stack.call("Agent", "undo", "rewind", {"checkpoint": first["checkpoint_id"]})[0] == 200
    for undone in (second, third):
        assert f"checkpoint:undo/{undone['checkpoint_id']}" not in holders(stack, undone["snapshot_id"])["holders"]
    assert f"checkpoint:undo/{first['checkpoint_id']}" in holders(stack, first["snapshot_id"])["holders"]
    assert [p["rewound"] for p in checkpoints(stack, "undo")] == [False, True, True]  # still listed
