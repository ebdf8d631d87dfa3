"""Scripts for tests/test_rewind_fork.py: a task that writes one file per step."""

from __future__ import annotations

from tests.fakes.scripts import finish, run, scripted, slow, write

# Three steps, one file each: the workspace after each step is different.
three_files = scripted(
    plan=[("Write a", "Write a.txt."), ("Write b", "Write b.txt."), ("Write c", "Write c.txt.")],
    step_actions={1: [write("a.txt", "A\n"), finish("a written")],
                  2: [write("b.txt", "B\n"), finish("b written")],
                  3: [write("c.txt", "C\n"), finish("c written")]},
)

# The same, after a first step that also leaves 5,000 small files: restoring its checkpoint
# takes long enough (a second or more) for a test to kill the worker inside a rewind or a fork.
many_files_then_one = scripted(
    plan=[("Write a and many files", "Write a.txt and many/."), ("Write b", "Write b.txt.")],
    step_actions={1: [run("mkdir many && cd many && seq 1 5000 | xargs touch && echo A > ../a.txt"),
                      finish("a written")],
                  2: [write("b.txt", "B\n"), finish("b written")]},
)

# The three files, with a model that thinks for 3 s before the last one: a fork made meanwhile
# must leave the running task alone.
three_files_slow_end = scripted(
    plan=[("Write a", "Write a.txt."), ("Write b", "Write b.txt."), ("Write c", "Write c.txt.")],
    step_actions={1: [write("a.txt", "A\n"), finish("a written")],
                  2: [write("b.txt", "B\n"), finish("b written")],
                  3: [slow(write("c.txt", "C\n"), 3.0), finish("c written")]},
)

# A step whose checkpoint takes a while (60 MB of random bytes to snapshot), then a slow one.
heavy_then_slow = scripted(
    plan=[("Make a big file", "Write 60 MB."), ("Wait", "Sleep.")],
    step_actions={1: [run("head -c 60000000 /dev/urandom > big.bin"), finish("big.bin written")],
                  2: [run("sleep 5"), finish("slept")]},
)
