"""Scripts for the scripted LLM in benchmarks, served as `bench.scripts:NAME`.

Like every script (tests/fakes/scripts.py) they are pure functions of the request.
"""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.scripted_llm import Reply
from tests.fakes.scripts import current_step, finish, is_planning, make_plan, message_text, rounds_in_step, run, text

_ROUNDS = re.compile(r"\brounds=(\d+)\b")


def rounds(request: dict[str, Any]) -> Reply:
    """A message `rounds=N ...` plans one step that runs `true` N times, one command per model
    round, then finishes: N + 2 model rounds in all (plan, N commands, finish).

    Each command carries its round number (`true 3`; `true` ignores it), because the loop
    refuses to repeat the previous round's call word for word.
    """
    users = "\n".join(message_text(m) for m in request.get("messages", []) if m.get("role") == "user")
    found = _ROUNDS.search(users)
    count = int(found.group(1)) if found else 0
    if is_planning(request):
        return make_plan([("Run true", f"Run `true` {count} times, one command per round.")])
    if current_step(request) is None:
        return text("Done.")
    done = rounds_in_step(request)
    return run(f"true {done + 1}") if done < count else finish(f"ran true {count} times")
