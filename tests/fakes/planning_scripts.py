"""Scripts for tests/test_planning_and_finish_check.py: plans split by rule, and what a step
may and may not do before it finishes.

Each answers the planning call (should one come) with a plan whose title says so, and plays its
step's actions round by round (tests/fakes/scripts.py: `scripted`).
"""

from __future__ import annotations

from dataclasses import replace

from tests.fakes.scripted_llm import Reply
from tests.fakes.scripts import edit, finish, run, scripted, slow, text, write

UNEXPECTED_PLAN = [("planned by the model", "")]

# Every step finishes at once.
finishes_at_once = scripted(UNEXPECTED_PLAN)

# "create hello.py that prints hello, then run it": the first finish comes before any command.
hello_finish_early = scripted(UNEXPECTED_PLAN, {1: [
    write("hello.py", "print('hello')"), finish("hello.py written"),
    run("python3 hello.py"), finish("hello.py prints hello"),
]})

# "write double.py": the first version gets its own example wrong, and the model finishes at
# once; told what the examples showed, it writes the right one.
DOUBLE_WRONG = 'def double(x):\n    """Twice x.\n\n    >>> double(3)\n    6\n    """\n    return x + 2\n'
DOUBLE_RIGHT = DOUBLE_WRONG.replace("x + 2", "x * 2")
double_fixed_after_refusal = scripted(UNEXPECTED_PLAN, {1: [
    write("double.py", DOUBLE_WRONG), finish("double.py written"),
    write("double.py", DOUBLE_RIGHT), finish("double(3) is 6"),
]})


def answer(code: str) -> Reply:
    """A plain answer holding `code` in a python block, as a request for a file as text asks for."""
    return text(f"Here is the whole file:\n```python\n{code}```\n")


# The same wrong double.py, recording each run of its examples (doctest imports the file) in
# checks.txt, and a model that only insists on finishing. After two failed finishes the harness
# asks for the file afresh, in plain chat: the answer is right, and slow enough to SIGKILL the
# worker mid-round.
COUNTED = 'with open("checks.txt", "a") as runs:  # once per run of the examples\n    runs.write("ran\\n")\n\n\n'
COUNTED_WRONG, COUNTED_RIGHT = COUNTED + DOUBLE_WRONG, COUNTED + DOUBLE_RIGHT
double_resampled_slowly = scripted(
    UNEXPECTED_PLAN, {1: [write("double.py", COUNTED_WRONG), finish("double.py written"), finish("double.py written")]},
    # The first answer is for a write without content (none here); the second, for a write with a failing check in view.
    rewrites={1: [answer(COUNTED_WRONG), slow(answer(COUNTED_RIGHT), 3.0)]})

# A program the sandbox does not have, a file that does not exist, then a program it does
# have (pytest, on a unittest file).
missing_program = scripted(UNEXPECTED_PLAN, {1: [
    run("cargo test"),
    run("python3 add.py"),
    write("test_one.py", "import unittest\n\n\nclass One(unittest.TestCase):\n"
                         "    def test_one(self):\n        self.assertEqual(1, 1)\n"),
    run("pytest -q test_one.py"),
]})

# The loop a small model fell into: the same failing command and the same file, in turn.
write_run_cycle = scripted(UNEXPECTED_PLAN, {1: [
    run("python3 check.py"), write("check.py", "import sys\nsys.exit(1)\n"),
    run("python3 check.py"), write("check.py", "import sys\nsys.exit(1)\n"),
    run("python3 check.py"), write("check.py", "import sys\nsys.exit(1)\n"),
    run("python3 check.py"), write("check.py", "import sys\nsys.exit(1)\n"),
]})

# An answer cut off at max_tokens (a write_file of a long file), then a short one.
cut_then_short = scripted(UNEXPECTED_PLAN, {1: [
    replace(write("long.py", "x = 1\n" * 50), cut_off=True), write("long.py", "x = 1\n"), run("python3 long.py"),
]})


# A small model's two plain mistakes in a Python file: the request's signature and docstring
# written back with no code, then a line cut short. Each write's result says so at once.
stub_then_broken = scripted(UNEXPECTED_PLAN, {1: [
    write("half.py", 'def half(x):\n    """Half of x.\n\n    >>> half(4)\n    2.0\n    """\n'),
    write("half.py", "def half(x):\n    return (x / 2\n"),
    write("half.py", "def half(x):\n    return x / 2\n"),
    finish("half.py written"),
]})

# A small model's dead ends: an edit that changes nothing, then an edit of a file that does not
# exist, made again and again (the 0.5B's HumanEval answer). One retry of a failed call passes.
dead_ends = scripted(UNEXPECTED_PLAN, {1: [
    write("notes.txt", "n\n"),
    edit("solution.py", "x", "x"),
    *[edit("solution.py", "def f", "def g")] * 4,
]})
