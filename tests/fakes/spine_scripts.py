"""Scripts for the spine's end-to-end tests (tests/test_spine.py)."""

from __future__ import annotations

from typing import Any

from tests.fakes.scripts import (
    current_step, finish, is_planning, make_plan, message_text, rounds_in_step, run, scripted,
    slow, tool, write,
)

# Four appends across two steps, with a slow command in step 1 and a slow model round in
# step 2: the crash tests kill the worker inside each and between the steps.
appender = scripted(
    plan=[("Append one and two", "Append lines to log.txt."), ("Append three and four", "Append more lines.")],
    step_actions={
        1: [run("echo one >> log.txt"), run("sleep 3; echo two >> log.txt"), finish("appended one, two")],
        2: [slow(run("echo three >> log.txt"), 3.0), run("echo four >> log.txt"), finish("appended three, four")],
    },
)

# The model gets things wrong three ways before it gets them right.
clumsy = scripted(
    plan=[("Write a file", "Create ok.txt.")],
    step_actions={1: [
        tool("launch_rockets", count=3),                      # unknown tool
        tool("write_file", '{"path": "ok.txt", "content": '),  # malformed JSON arguments
        tool("run_command", timeout_s=5),                      # missing required argument
        write("../escape.txt", "out"),                         # path traversal
        write("ok.txt", "fine\n"),
        finish("ok.txt written"),
    ]},
)


def interruptible(request: dict[str, Any]):
    """First message: a task stuck in a slow command. A later message: a quick task.

    The second task's planning call must see both messages, so it answers with a plan whose
    title proves it (and the test checks the request itself).
    """
    everything = "\n".join(message_text(m) for m in request.get("messages", []))
    second = "second request" in everything
    if is_planning(request):
        return make_plan([("Quick note", "Write note.txt")] if second else [("Slow work", "Sleep a while")])
    step_round = rounds_in_step(request)
    if second:
        return [write("note.txt", "second\n"), finish("note written")][min(step_round, 1)]
    return [run("echo started >> first.txt; sleep 30"), finish("slept")][min(step_round, 1)]


def answer_without_tools(request: dict[str, Any]):
    """Plans one step, then answers in plain text: the loop takes that as the step's result."""
    if is_planning(request):
        return make_plan([("Answer", "Say hi")])
    if current_step(request) is not None:
        from tests.fakes.scripts import text
        return text("hi there")
    return finish("unexpected")


# Thirty half-second commands in three steps, each appending a tick: a task that outlives
# several short TTLs.
ticker = scripted(
    plan=[(f"Tick {s}", "Append ten ticks, two a second.") for s in range(1, 4)],
    step_actions={s: [run(f"echo tick {n} >> ticks.txt; sleep 0.5") for n in range(10 * s - 9, 10 * s + 1)]
                  + [finish("ten ticks")] for s in range(1, 4)},
)

# Ticks after writing 40 MB of random data, so each restart's snapshot takes a while.
heavy_ticker = scripted(
    plan=[("Tick", "Make a big file, then append ticks.")],
    step_actions={1: [run("head -c 40000000 /dev/urandom > big.bin")]
                  + [run(f"echo tick {n} >> ticks.txt; sleep 1") for n in range(1, 9)]
                  + [finish("eight ticks")]},
)


def write_then_read(request: dict[str, Any]):
    """First message writes keep.txt; a message containing 'read' cats it."""
    everything = "\n".join(message_text(m) for m in request.get("messages", []))
    reading = "read it back" in everything
    if is_planning(request):
        return make_plan([("Read", "cat keep.txt")] if reading else [("Write", "write keep.txt")])
    actions = [run("cat keep.txt"), finish("read")] if reading else [write("keep.txt", "kept\n"), finish("written")]
    return actions[min(rounds_in_step(request), 1)]


def steerable(request: dict[str, Any]):
    """Step 1 makes two slow rounds; every round reports the guidance it has seen so far.

    The final answer lists the guidance the model saw, so a test can check that steering
    reached the very next model round of the same task.
    """
    if is_planning(request):
        return make_plan([("Work", "Do slow work")])
    guidance = [message_text(m) for m in request.get("messages", [])
                if m.get("role") == "user" and message_text(m).startswith("Guidance from the user:")]
    round_no = rounds_in_step(request)
    if round_no < 3:
        return slow(run(f"echo round {round_no} saw {len(guidance)} >> rounds.txt"), 1.0)
    return finish("guidance seen: " + " | ".join(guidance))


def risky(request: dict[str, Any]):
    """Asks to run a command that needs approval, then finishes with what the tool said."""
    if is_planning(request):
        return make_plan([("Deploy", "Push the change")])
    if rounds_in_step(request) == 0:
        return run("echo pushed >> pushes.txt")
    results = [message_text(m) for m in request.get("messages", []) if m.get("role") == "tool"]
    return finish("tool said: " + (results[-1] if results else "nothing"))


# Many cheap rounds, to run into the round budget.
chatty = scripted(
    plan=[("Count", "Append numbers")],
    step_actions={1: [run(f"echo {n} >> count.txt") for n in range(1, 7)] + [finish("counted to 6")]},
)


def late_steer(request: dict[str, Any]):
    """One step whose last round (finish) is slow, so steering can arrive after the task's
    last model boundary. A task that sees the guidance in its conversation writes it down."""
    everything = "\n".join(message_text(m) for m in request.get("messages", []))
    if is_planning(request):
        return make_plan([("Follow up", "Note the guidance")] if "also add a README" in everything
                         else [("Work", "Write work.txt")])
    if "also add a README" in everything:
        return [write("README.md", "guided\n"), finish("README written")][min(rounds_in_step(request), 1)]
    return [write("work.txt", "done\n"), slow(finish("work written"), 2.0)][min(rounds_in_step(request), 1)]


# Two commands back to back, the first longer than the idle period in the idle test.
long_then_short = scripted(
    plan=[("Work", "A long command, then a short one")],
    step_actions={1: [run("sleep 6; echo long > long.txt"), run("echo short > short.txt"), finish("both ran")]},
)


# A small model's loop: it writes the file, then makes the very same call forever.
repeater = scripted(
    plan=[("Write a file", "Create same.txt")],
    step_actions={1: [write("same.txt", "once\n")] * 10},
)
