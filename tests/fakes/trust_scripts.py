"""Scripts for tests/test_trust.py: models whose word about their own work is checked.

Each writes calc.py and its unittest tests, test_calc.py, then finishes; what the harness's
own run of the tests shows is the task's verdict, whatever the model says.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.scripts import Action, edit, finish, message_text, scripted, write

PLAN = [("Write calc.py and its tests", "Create calc.py with add(a, b), and unittest tests for it in test_calc.py.")]
CALC_RIGHT = "def add(a, b):\n    return a + b\n"
CALC_WRONG = "def add(a, b):\n    return a - b\n"  # right for add(0, 0), wrong for add(2, 3)
CALC_TESTS = """import unittest

from calc import add


class Add(unittest.TestCase):
    def test_small_numbers(self):
        self.assertEqual(add(2, 3), 5)

    def test_zeros(self):
        self.assertEqual(add(0, 0), 0)
"""
# The same tests, of which one records each run in test_runs.txt and then takes 4 s: time
# enough to SIGKILL the worker while the harness's check runs them.
RUNS_FILE = "test_runs.txt"
SLOW_TESTS = CALC_TESTS.replace("    def test_zeros(self):\n", f"""    def test_zeros(self):
        with open("{RUNS_FILE}", "a") as runs:
            runs.write("ran\\n")
        import time
        time.sleep(4)
""")
CLAIM = "All tests pass."

# A wrong add and a test that shows it, and a model that says all is well, twice.
claims_green = scripted(PLAN, {1: [
    write("calc.py", CALC_WRONG), write("test_calc.py", CALC_TESTS), finish(CLAIM), finish(CLAIM),
]})

# A right add and slow tests; the model finishes, and finishes again if it is told to.
slow_tests = scripted(PLAN, {1: [
    write("calc.py", CALC_RIGHT), write("test_calc.py", SLOW_TESTS), finish(CLAIM), finish(CLAIM),
]})


# Two tasks in one session: the first writes calc.py and its tests, which pass; the second
# (asked to "make add subtract") breaks add, so the same tests fail and it says it is done.
FIRST, SECOND = "write calc.py with add(a, b) and its tests", "make add subtract instead"
_writes = scripted(PLAN, {1: [write("calc.py", CALC_RIGHT), write("test_calc.py", CALC_TESTS), finish(CLAIM)]})
_breaks = scripted([("Make add subtract", "Change add in calc.py to return a - b.")],
                   {1: [edit("calc.py", "a + b", "a - b"), finish("add subtracts now"), finish("add subtracts now")]})


def latest_request(request: dict[str, Any]) -> str:
    """The user's newest message, from the conversation the task's first prompt quotes (its
    `user: ...` lines, app/window.py: conversation_view)."""
    prompt = next((message_text(m) for m in request.get("messages", []) if m.get("role") == "user"), "")
    users = [line for line in prompt.splitlines() if line.startswith("user: ")]
    return users[-1].removeprefix("user: ") if users else ""


def two_tasks(request: dict[str, Any]) -> Action:
    """The first task's script, or the second's once the user asked to make add subtract."""
    return (_breaks if latest_request(request) == SECOND else _writes)(request)
