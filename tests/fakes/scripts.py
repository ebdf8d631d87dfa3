"""Scripts for the scripted LLM, and the helpers that make new ones a few lines long.

The helpers rely on the app's prompt convention:
- a planning call offers the tool `make_plan` (and its system prompt says PLAN);
- a step round's prompt has a line `Current step N:` and offers run_command, write_file,
  read_file, list_files, edit_file and finish.

`scripted(plan, step_actions)` builds a whole script from that: it answers the planning call with
the plan and each step round with the next action of that step. Every script here is a pure
function of the request's messages (see tests/fakes/scripted_llm.py for why).

    EXAMPLE = scripted(
        plan=[("Write hello.py", "Create hello.py that prints hello")],
        step_actions={1: [write("hello.py", "print('hello')"), run("python3 hello.py"),
                          finish("hello.py prints hello")]},
    )
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from app.brain.prompts import SYSTEM as TEXT_SYSTEM
from tests.fakes.scripted_llm import Reply, Script

# An action answers one model round. A sequence stands for successive attempts of the same
# request, e.g. `[error(429, retry_after=1), run("ls")]`: rate-limited once, then a command.
Action = Reply | Sequence[Reply]

_STEP_LINE = re.compile(r"^\s*Current step (\d+):", re.MULTILINE)
_SUMMARISED = re.compile(r"^Summary of this step's rounds 1-(\d+):")


# --- replies -------------------------------------------------------------------------------------


def text(content: str) -> Reply:
    """A plain assistant message."""
    return Reply(content=content)


def tool(name: str, arguments: Mapping[str, Any] | str | None = None, **kwargs: Any) -> Reply:
    """One tool call. `arguments` as a string is sent verbatim (malformed JSON on purpose)."""
    if isinstance(arguments, str):
        return Reply(tool_calls=((name, arguments),))
    return Reply(tool_calls=((name, {**(arguments or {}), **kwargs}),))


def run(command: str, timeout_s: int | None = None) -> Reply:
    """run_command."""
    if timeout_s is None:
        return tool("run_command", command=command)
    return tool("run_command", command=command, timeout_s=timeout_s)


def write(path: str, content: str) -> Reply:
    """write_file."""
    return tool("write_file", path=path, content=content)


def read(path: str) -> Reply:
    """read_file."""
    return tool("read_file", path=path)


def ls(path: str | None = None) -> Reply:
    """list_files."""
    return tool("list_files") if path is None else tool("list_files", path=path)


def edit(path: str, old: str, new: str) -> Reply:
    """edit_file."""
    return tool("edit_file", path=path, old=old, new=new)


def finish(result: str) -> Reply:
    """finish: the step is done, with this result."""
    return tool("finish", result=result)


def make_plan(plan: Sequence[tuple[str, str]]) -> Reply:
    """make_plan with (title, instructions) pairs."""
    return tool("make_plan", steps=[{"title": t, "instructions": i} for t, i in plan])


def error(status: int, retry_after: float | None = None, message: str = "scripted error") -> Reply:
    """An HTTP error answer, e.g. error(429, retry_after=1) or error(500)."""
    return Reply(status=status, retry_after=retry_after, error_message=message)


def slow(reply: Reply, seconds: float) -> Reply:
    """`reply`, sent only after `seconds`: time enough to kill the worker mid-call."""
    return replace(reply, delay_s=seconds)


# --- reading a request ---------------------------------------------------------------------------


def message_text(message: Mapping[str, Any]) -> str:
    """A message's text, whether its content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def offered_tools(request: Mapping[str, Any]) -> list[str]:
    """Names of the tools the request offers."""
    tools = request.get("tools") or []
    return [t["function"]["name"] for t in tools if t.get("type") == "function"]


def is_planning(request: Mapping[str, Any]) -> bool:
    """Whether this is the planning call."""
    if "make_plan" in offered_tools(request):
        return True
    systems = [message_text(m) for m in request.get("messages", []) if m.get("role") == "system"]
    return current_step(request) is None and any("PLAN" in s for s in systems)


def _step_marker(request: Mapping[str, Any]) -> tuple[int, int] | None:
    """(index of the message with the latest `Current step N:` line, N)."""
    found = None
    for index, message in enumerate(request.get("messages", [])):
        numbers = _STEP_LINE.findall(message_text(message))
        if numbers:
            found = (index, int(numbers[-1]))
    return found


def current_step(request: Mapping[str, Any]) -> int | None:
    """N from the latest `Current step N:` line, or None outside a step."""
    marker = _step_marker(request)
    return None if marker is None else marker[1]


def rewrite_number(request: Mapping[str, Any]) -> int | None:
    """Which request for code as text this is (app/brain/prompts.py: plain chat, no tools): 1
    for a first write, 2 for one with a failing check in view; None if it is no such request."""
    systems = [message_text(m) for m in request.get("messages", []) if m.get("role") == "system"]
    if offered_tools(request) or TEXT_SYSTEM not in systems:
        return None
    return 2 if "The latest check failed:" in last_user_text(request) else 1


def rounds_in_step(request: Mapping[str, Any]) -> int:
    """How many model rounds of the current step already came back: assistant messages since,
    and the rounds a summary stands in for (app/window.py: "Summary of this step's rounds 1-K")."""
    marker = _step_marker(request)
    if marker is None:
        return 0
    later = request["messages"][marker[0] + 1:]
    summarised = sum(int(n) for m in later for n in _SUMMARISED.findall(message_text(m)))
    return summarised + sum(1 for m in later if m.get("role") == "assistant")


def last_tool_result(request: Mapping[str, Any]) -> str | None:
    """The text of the latest tool message, if any."""
    results = [message_text(m) for m in request.get("messages", []) if m.get("role") == "tool"]
    return results[-1] if results else None


def last_user_text(request: Mapping[str, Any]) -> str:
    """The text of the latest user message."""
    users = [message_text(m) for m in request.get("messages", []) if m.get("role") == "user"]
    return users[-1] if users else ""


# --- building scripts ----------------------------------------------------------------------------


def scripted(
    plan: Sequence[tuple[str, str]],
    step_actions: Mapping[int, Sequence[Action]] | None = None,
    otherwise: Action = text("Done."),
    plan_errors: Sequence[Reply] = (),
    rewrites: Mapping[int, Sequence[Action]] | None = None,
) -> Script:
    """A script that plans `plan` and then plays `step_actions[N]` round by round in step N.

    Step numbers are the N of the prompt's `Current step N:` line. When a step's actions run
    out (or it has none), the step answers `finish("step N done")`. Any other call (neither
    planning nor a step round) gets `otherwise`. `plan_errors` answer the first attempts of the
    planning call, before the plan itself, e.g. `[error(429, retry_after=1)]`. `rewrites[N]`
    answer step N's requests for code as text (app/brain/prompts.py), by `rewrite_number`;
    without them such a request gets `otherwise`.
    """
    actions = {step: list(items) for step, items in (step_actions or {}).items()}

    def script(request: dict[str, Any]) -> Action:
        if is_planning(request):
            return [*plan_errors, make_plan(plan)]
        step = current_step(request)
        if step is None:
            return otherwise
        if (number := rewrite_number(request)) is not None:
            answers = (rewrites or {}).get(step, [])
            return answers[number - 1] if number <= len(answers) else otherwise
        round_index = rounds_in_step(request)
        step_list = actions.get(step, [])
        if round_index < len(step_list):
            return step_list[round_index]
        return finish(f"step {step} done")

    return script


# --- generic scripts -----------------------------------------------------------------------------


def echo(request: dict[str, Any]) -> Reply:
    """Answers every call with the latest user message, for chat without a plan."""
    return text(f"You said: {last_user_text(request)}")


# One step: write hello.py, run it, finish.
hello_world = scripted(
    plan=[("Write hello.py", "Create hello.py that prints 'hello, world' and run it.")],
    step_actions={1: [
        write("hello.py", "print('hello, world')\n"),
        run("python3 hello.py"),
        finish("hello.py prints 'hello, world'"),
    ]},
)

# Two steps that depend on each other through the workspace.
two_steps = scripted(
    plan=[
        ("Write the module", "Create greet.py with a function greet(name)."),
        ("Test it", "Run greet.py and check its output."),
    ],
    step_actions={
        1: [write("greet.py", "def greet(name):\n    return f'hi {name}'\n\nprint(greet('bob'))\n"),
            finish("greet.py written")],
        2: [read("greet.py"), run("python3 greet.py"), finish("greet.py prints 'hi bob'")],
    },
)

# The first step round answers only after 3 s, so a test can kill the worker during a model call.
slow_model = scripted(
    plan=[("Write a note", "Create note.txt.")],
    step_actions={1: [slow(write("note.txt", "slow\n"), 3.0), finish("note.txt written")]},
)

# A command that takes 3 s, so a test can kill the worker during a tool call. The command
# appends to runs.txt first, so the test can count how often it really ran.
slow_command = scripted(
    plan=[("Run a slow command", "Run a command that takes a while.")],
    step_actions={1: [run("echo run >> runs.txt; sleep 3; echo finished"), run("cat runs.txt"),
                      finish("the slow command finished")]},
)

# The planning call is rate-limited once (429, Retry-After: 1), then answers.
rate_limited = scripted(
    plan=[("Write a note", "Create note.txt.")],
    step_actions={1: [write("note.txt", "patience\n"), finish("note.txt written")]},
    plan_errors=[error(429, retry_after=1, message="slow down")],
)


# Every call fails with 400, which no retry can fix.
def bad_request(request: dict[str, Any]) -> Reply:
    """Answers everything with HTTP 400."""
    return error(400, message="this request is invalid")
