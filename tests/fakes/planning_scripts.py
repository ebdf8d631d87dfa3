"""Scripts for tests/test_planning_and_finish_check.py: one-step requests and the finish check.

Each answers the planning call (should one come) with a plan whose title says so, and plays its
step's actions round by round (tests/fakes/scripts.py: `scripted`).
"""

from __future__ import annotations

from tests.fakes.scripts import finish, run, scripted, slow, write

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
