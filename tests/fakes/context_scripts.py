"""Scripts for tests/test_context_window.py: outputs and conversations larger than the window."""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.scripted_llm import Reply
from tests.fakes.scripts import (
    finish, is_planning, last_tool_result, make_plan, message_text, offered_tools, read,
    rounds_in_step, run, scripted, slow, tool,
)

SAVED = re.compile(r"\.agent/context/[\w.-]+\.txt")
COMMAND_LOG = re.compile(r"\.agent/outputs/[\w.-]+\.log")


def _summary(text: str) -> Reply:
    return tool("record_summary", summary=text)


def huge_output(request: dict[str, Any]) -> Reply:
    """One command prints 20,000 numbers (far more than a 4,096-token window, a token a digit);
    then the model reads the pointer it was given, then the command's own full log."""
    if is_planning(request):
        return make_plan([("Count", "Print the numbers up to 20000, then look at them.")])
    if "record_summary" in offered_tools(request):
        return _summary("the command printed 1 to 20000")
    done = rounds_in_step(request)
    last = last_tool_result(request) or ""
    if done == 0:
        return run("seq 1 20000")
    if done == 1:
        saved = SAVED.search(last)
        return read(saved.group(0)) if saved else finish(f"no pointer in: {last[:200]}")
    if done == 2:
        log = COMMAND_LOG.search(last)
        return read(log.group(0)) if log else finish(f"no command log in: {last[:200]}")
    return finish("read it all")


ROUNDS = 8


def many_rounds(request: dict[str, Any]) -> Reply:
    """ROUNDS commands whose outputs are each too short for a pointer (350 digits), so only a
    summary makes room: about every third round in a 4,096-token window. The first summary
    answers after 3 s: time to kill the worker."""
    if "record_summary" in offered_tools(request):
        reply = _summary("commands appended their round numbers to runs.txt")
        return reply if "Summary so far" in message_text(request["messages"][-1]) else slow(reply, 3.0)
    done = rounds_in_step(request)  # summarised rounds included
    if is_planning(request):
        return make_plan([("Append", "Append the round numbers to runs.txt.")])
    if done < ROUNDS:
        return run(f"echo {done} >> runs.txt; python3 -c \"print('7' * 350)\"")
    return finish(f"appended {done} rounds")


# Three messages in one session; the third task's planner gets a summary of the first two.
def long_conversation(request: dict[str, Any]) -> Reply:
    if "record_summary" in offered_tools(request):
        return _summary("EARLIER-CONVERSATION-SUMMARY")
    return scripted(plan=[("Answer", "Answer the request.")], step_actions={1: [finish("answered")]})(request)
