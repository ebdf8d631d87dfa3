"""Scripts for the web UI's import tests (tests/test_ui_import_browser.py): the small project a
test uploads, and a task that edits two of its files."""

from __future__ import annotations

import io
import tarfile

from tests.fakes.scripts import edit, finish, scripted

# The project as its archive holds it, under one top-level folder (as GitHub's downloads do),
# which the import strips. A binary file and an untouched file stay out of the diff.
TOP = "calc-main"
TREE = {
    "README.md": "# Calc\n\nAdds numbers.\n",
    "src/calc.py": "def add(a, b):\n    return a + b\n",
    "src/util.py": "DEBUG = False\n",
    "data/logo.bin": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe",
}

SUB = "\n\ndef sub(a, b):\n    return a - b\n"

# One step, two edits: README.md one line replaced (+1 -1), src/calc.py a function added (+4 -0).
edits_two_files = scripted(
    plan=[("Add sub", "Add sub(a, b) to src/calc.py and say so in README.md.")],
    step_actions={1: [edit("src/calc.py", "    return a + b\n", "    return a + b\n" + SUB),
                      edit("README.md", "Adds numbers.", "Adds and subtracts numbers."),
                      finish("sub(a, b) added; README.md says so")]},
)


def project_archive() -> bytes:
    """TREE as a .tar.gz, every entry under TOP/."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, content in TREE.items():
            data = content.encode() if isinstance(content, str) else content
            entry = tarfile.TarInfo(f"{TOP}/{path}")
            entry.size = len(data)
            entry.mode = 0o644
            archive.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()
