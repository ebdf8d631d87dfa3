"""Scripts for tests/test_planning_and_finish_check.py: one-step requests and the finish check.

Each answers the planning call (should one come) with a plan whose title says so, and plays its
step's actions round by round (tests/fakes/scripts.py: `scripted`).
"""

from __future__ import annotations

from dataclasses import replace

from tests.fakes.scripted_llm import Reply
from tests.fakes.scripts import edit, finish, run, scripted, slow, text, write

UNEXPECTED_PLAN = [("planned by the model", "")]

# "create hello.py that prints hello, then run it": the first finish comes before any command.
hello_finish_early = scripted(UNEXPECTED_PLAN, {1: [
    write("hello.py", "print('hello')"), finish("hello.py written"),
    run("python3 hello.py"), finish("hello.py prints hello"),
]})

# "write add.py ...": runs it before it exists, writes it, finishes right after writing (refused),
# then insists with the same call.
add_finish_unchecked = scripted(UNEXPECTED_PLAN, {1: [
    run("python3 add.py"), write("add.py", "def add(a, b):\n    return a + b\n"),
    finish("add.py written"), finish("add.py written"),
]})

# As above, but checks after the refusal, slowly enough to SIGKILL the worker mid-round.
add_checked_slowly = scripted(UNEXPECTED_PLAN, {1: [
    write("add.py", "def add(a, b):\n    return a + b\n"), finish("add.py written"),
    slow(run("echo checked >> checks.txt && python3 -c 'from add import add; print(add(2, 3))'"), 4.0),
    finish("add(2, 3) is 5"),
]})

# "write double.py": the first version gets its own example wrong. Its finish runs the examples,
# which fail, so the file is rewritten: the first rewrite's answer is still wrong, the second's
# is right (slowly enough to SIGKILL the worker mid-round), and the finish goes through.
DOUBLE_WRONG = 'def double(x):\n    """Twice x.\n\n    >>> double(3)\n    6\n    """\n    return x + 2\n'
DOUBLE_RIGHT = DOUBLE_WRONG.replace("x + 2", "x * 2")
DOUBLE_SQUARE = DOUBLE_WRONG.replace("x + 2", "x * x")


def answer(code: str) -> Reply:
    """A plain answer holding `code` in a python block, as a rewrite asks for."""
    return text(f"Here is the whole file:\n```python\n{code}```\n")


double_fixed_by_rewrite = scripted(UNEXPECTED_PLAN, {1: [write("double.py", DOUBLE_WRONG), finish("double.py written")]},
                                   rewrites={1: [answer(DOUBLE_SQUARE), slow(answer(DOUBLE_RIGHT), 3.0)]})

# "write double.py": the first version does not parse (a JSON-escaped line, as a small model
# writes them), so it is rewritten at once; the first rewrite does not parse either, the second
# is right (slowly enough to SIGKILL the worker mid-round); then the model finishes.
DOUBLE_BROKEN = DOUBLE_RIGHT.replace("return x * 2", "return x * 2\\n")
double_broken_then_rewritten = scripted(
    UNEXPECTED_PLAN, {1: [write("double.py", DOUBLE_BROKEN), finish("double.py written")]},
    rewrites={1: [answer(DOUBLE_RIGHT.replace("x * 2", "(x * 2")), slow(answer(DOUBLE_RIGHT), 3.0)]})

# An example that takes 4 s and records each run of it, so a test can SIGKILL the worker while
# the finish check runs it.
SLOW_EXAMPLE = ('import time\n\n\ndef mark():\n    """Record a run.\n\n    >>> mark()\n    \'marked\'\n    """\n'
                '    with open("examples.txt", "a") as f:\n        f.write("ran\\n")\n'
                '    time.sleep(4)\n    return "marked"\n')
slow_examples = scripted(UNEXPECTED_PLAN, {1: [write("mark.py", SLOW_EXAMPLE), finish("mark.py written")]})

# A program the sandbox does not have, then one it does (pytest, on a unittest file).
missing_program = scripted(UNEXPECTED_PLAN, {1: [
    run("cargo test"),
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

# A model that cannot fix its example: its rewrites are wrong too (the second has no code at
# all), it writes the same wrong file again and then only insists on finishing.
same_wrong_again = scripted(UNEXPECTED_PLAN, {1: [
    write("double.py", DOUBLE_WRONG), finish("double.py written"),
    write("double.py", DOUBLE_WRONG), finish("double.py written"), finish("step 1 done"), finish("step 1 done"),
]}, rewrites={1: [answer(DOUBLE_SQUARE), text("I cannot see what is wrong.")]})

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
