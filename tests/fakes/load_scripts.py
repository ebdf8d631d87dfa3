"""The model of the many-sessions tests and of the load benchmark (bench/load.py).

A message `rounds=N` plans one step, and each of its N rounds calls two tools at once: a file
write (`f<i>.txt`) and one `true` command that appends its round number to `runs.txt`, so a
command that ran twice (or never) shows in the workspace. Then the step finishes: N + 2 model
rounds and 2N tool calls per task. `gate=NAME` in the message makes each command wait until a
file NAME exists in the workspace before it goes on, so a test can hold commands in flight.
"""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.scripted_llm import Reply
from tests.fakes.scripts import current_step, finish, is_planning, make_plan, message_text, rounds_in_step, text

_ROUNDS = re.compile(r"\brounds=(\d+)\b")
_GATE = re.compile(r"\bgate=([A-Za-z0-9_.-]+)")


def command(i: int, gate: str | None = None) -> str:
    """Round i's command: `true` (once `gate` exists), plus the trace that makes each run countable."""
    wait = f"until [ -e {gate} ]; do sleep 0.05; done; " if gate else ""
    return f"{wait}true {i} && echo {i} >> runs.txt"


def expected_runs(rounds: int) -> str:
    """What runs.txt holds after a task whose every command ran exactly once."""
    return "".join(f"{i}\n" for i in range(1, rounds + 1))


def expected_files(rounds: int) -> dict[str, str]:
    """The files the task writes, with their content."""
    return {f"f{i}.txt": f"round {i}\n" for i in range(1, rounds + 1)}


def load(request: dict[str, Any]) -> Reply:
    users = "\n".join(message_text(m) for m in request.get("messages", []) if m.get("role") == "user")
    found = _ROUNDS.search(users)
    count = int(found.group(1)) if found else 1
    gate = found_gate.group(1) if (found_gate := _GATE.search(users)) else None
    if is_planning(request):
        return make_plan([("Write and run", f"Write a file and run `true`, {count} times.")])
    if current_step(request) is None:
        return text("Done.")
    done = rounds_in_step(request)
    if done >= count:
        return finish(f"wrote {count} files and ran {count} commands")
    i = done + 1
    return Reply(tool_calls=(("write_file", {"path": f"f{i}.txt", "content": f"round {i}\n"}),
                             ("run_command", {"command": command(i, gate)})))
