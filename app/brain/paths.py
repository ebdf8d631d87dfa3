"""One spelling per workspace path, so that what the task knows about a file is found again.

The sandbox takes `./a.py`, `a//a.py` and `/project/a.py` as `a.py`; the brain's own records
(files read, written, with examples, in the workspace) must too, or a file it has read looks
unread and a check runs twice.
"""

from __future__ import annotations

import posixpath

WORKSPACE = "/project"


def normal(path: str) -> str:
    """`path` as the workspace listing spells it (relative, no `.` or doubled `/`)."""
    path = path.strip()
    if path == WORKSPACE or path.startswith(WORKSPACE + "/"):
        path = path[len(WORKSPACE):]
    path = posixpath.normpath(path.lstrip("/")) if path.strip("/") else "."
    return path
