"""Scripts for tests/test_real_conditions.py: long waits, edits, deleted bookkeeping, context."""

from __future__ import annotations

from tests.fakes.scripts import edit, finish, read, run, scripted, slow, write

# Write a file, then think for 4 s (longer than the test's idle period, so the sandbox is
# suspended meanwhile), then read the file back.
read_after_a_long_wait = scripted(
    plan=[("Write and read back", "Write keep.txt, then read it.")],
    step_actions={1: [write("keep.txt", "kept\n"), slow(read("keep.txt"), 4.0), finish("read keep.txt")]},
)

# An edit whose replacement contains the text it replaces: applied twice, it shows.
# The edit's model answer comes 2 s late, so a test can kill the worker right after it.
edit_that_contains_its_text = scripted(
    plan=[("Edit the greeting", "Write greet.txt, then edit it.")],
    step_actions={1: [write("greet.txt", "hello\n"), slow(edit("greet.txt", "hello", "hello hello"), 2.0),
                      slow(write("after.txt", "written once\n"), 2.0), finish("edited")]},
)

# A command that first deletes every file a command can reach (what `git clean -fdx` or
# `rm -rf .agent` would do to in-workspace bookkeeping), then records that it ran, then takes
# 3 s: a test kills the worker inside it.
wipes_then_sleeps = scripted(
    plan=[("Clean and work", "Clean the workspace, then work.")],
    step_actions={1: [run("rm -rf /project/.agent /project/* /project/.[!.]* 2>/dev/null; "
                          "echo run >> runs.txt; sleep 3; echo finished"),
                      run("cat runs.txt"), finish("cleaned")]},
)

# Two steps, the first with a command that needs approval under AGENT_APPROVAL=commands.
approve_then_two_steps = scripted(
    plan=[("Run the command", "Append to ran.txt."), ("Write the note", "Write note.txt.")],
    step_actions={1: [run("echo ran >> ran.txt"), finish("ran")],
                  2: [write("note.txt", "second step\n"), finish("note written")]},
)

# Twelve rounds that each print 6,000 characters: far more than a small context holds.
chatty_outputs = scripted(
    plan=[("Print a lot", "Print long outputs, many times.")],
    step_actions={1: [run(f"python3 -c \"print('{i}' * 6000)\"") for i in range(1, 10)] + [finish("printed")]},
)
