"""What `agent import` sends: a git URL as `{"git", "ref"}`, an archive file as it is, and a
directory as a .tar.gz built in memory (`.git` included, so the model can run `git log`)."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

URL_SCHEMES = ("http://", "https://", "git://", "ssh://", "file://")
SCP_LIKE = re.compile(r"^[\w.+-]+@[\w.-]+:")  # user@host:path, as git itself reads it


def is_git_url(source: str) -> bool:
    return source.startswith(URL_SCHEMES) or bool(SCP_LIKE.match(source))


def directory_archive(directory: Path) -> tuple[bytes, int]:
    """A .tar.gz of the directory's contents and how many entries it holds.

    Everything sits under one top-level directory named after this one, which the server strips
    (as it does GitHub's `repo-main/`): a directory holding only `src/` keeps its `src/`.
    Only files, directories and symbolic links go in: a socket or a FIFO is no source code.
    """
    top = directory.resolve().name or "project"
    count = 0

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        nonlocal count
        if not (info.isfile() or info.isdir() or info.issym()):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        count += 1
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(directory, arcname=top, filter=keep)
    return buffer.getvalue(), count
