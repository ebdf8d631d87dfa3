"""Scripts for tests/test_client.py: the terminal client following tasks, and changing code it
imported."""

from __future__ import annotations

from tests.fakes.scripts import edit, finish, scripted, slow, write

# The step's first model round answers only after 5 s: time to kill the worker while the
# client follows.
slow_note = scripted(
    plan=[("Write a note", "Create note.txt.")],
    step_actions={1: [slow(write("note.txt", "slow\n"), 5.0), finish("note.txt written")]},
)

# The finishing round takes 8 s: once the write has shown, there is time to press Ctrl-C while
# the task still runs.
slow_finish = scripted(
    plan=[("Write a note", "Create note.txt.")],
    step_actions={1: [write("note.txt", "slow\n"), slow(finish("note.txt written"), 8.0)]},
)

# The project a test imports (a git repository), and a task that changes two of its files:
# greet.py one line replaced (+1 -1), NOTES.md added (+1).
PROJECT = {
    "greet.py": "def greet(name):\n    return f'hi {name}'\n",
    "README.md": "# Greet\n",
}
greets_better = scripted(
    plan=[("Greet better", "Say hello instead of hi, and note it.")],
    step_actions={1: [edit("greet.py", "f'hi {name}'", "f'hello {name}'"),
                      write("NOTES.md", "greet says hello now\n"),
                      finish("greet says hello")]},
)
