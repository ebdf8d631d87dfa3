"""Scripts for the request/response and scale-to-zero tests (tests/test_request_response.py)."""

from __future__ import annotations

from typing import Any

from tests.fakes.scripts import (
    current_step, finish, is_planning, make_plan, message_text, rounds_in_step, run, scripted, write,
)


def build_and_deploy(request: dict[str, Any]):
    """First message: build (a file and a command), then deploy (a push that needs approval).
    A message asking to "push again": one more push, which waits for an approval."""
    everything = "\n".join(message_text(m) for m in request.get("messages", []))
    again = "push again" in everything
    if is_planning(request):
        return make_plan([("Push again", "Push once more")] if again
                         else [("Build", "Write app.txt and build it"), ("Deploy", "Push the build")])
    if again:
        return [run("echo again >> pushes.txt"), finish("pushed again")][min(rounds_in_step(request), 1)]
    actions = {1: [write("app.txt", "v1\n"), run("cp app.txt build.txt"), finish("built")],
               2: [run("echo pushed >> pushes.txt"), finish("deployed")]}[current_step(request) or 1]
    return actions[min(rounds_in_step(request), len(actions) - 1)]


# The smallest whole task: a plan, one command, an answer. Each worker request is a cold start
# in the scale-to-zero test, so it is kept short.
one_command = scripted(
    plan=[("Count", "Append to count.txt")],
    step_actions={1: [run("echo 1 >> count.txt"), finish("counted")]},
)
