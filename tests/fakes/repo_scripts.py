"""Scripts for the import/diff/export tests (tests/test_import_export.py)."""

from __future__ import annotations

from tests.fakes.scripts import finish, run, scripted

# Changes two files of an imported repository with one command: a.py modified, c.py added.
two_file_change = scripted(
    plan=[("Change the code", "Make f return 2 and add c.py.")],
    step_actions={1: [run("sed -i 's/return 1/return 2/' a.py && printf 'print(\"c\")\\n' > c.py"),
                      finish("a.py returns 2 and c.py prints c")]},
)
