"""Workspace snapshots as tar + zstd.

Writing walks the workspace with sandbox/paths.walk (never following a symlink, every file
opened with O_NOFOLLOW), so a snapshot holds exactly what is inside the workspace. The
archive appears under its final name only when complete (temporary file, fsync, rename).
Restoring goes into a fresh directory through tarfile's "tar" filter (no absolute names,
nothing outside the destination), keeps only files, directories and symlinks (never a hard
link), and gives everything to the sandbox's host uid.

An archive also carries the sandbox's markers (sandbox/markers.py). It says so in a global
PAX header (`durable-agent.layout: 2`), and then holds the workspace under `project/` and
the markers under `markers/`; restore puts each back where it came from, so nothing in the
workspace can ever become a marker. Archives without the header (older ones) hold the
workspace alone, at the top level.
"""

from __future__ import annotations

import io
import os
import secrets
import stat
import tarfile
from pathlib import Path
from typing import Callable

import zstandard

from sandbox import markers
from sandbox.paths import Owner, closing, walk

_ZSTD_LEVEL = 3  # fast; source trees still compress several times over
# Hard links are never kept: no archive of ours makes them (a walk adds files, directories and
# symlinks; an import turns a link into a copy), and a link member's target is a path that can
# climb (`project/../markers/x`) where a prefix check would pass it.
_KEEP = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE)
_LAYOUT_KEY, _LAYOUT = "durable-agent.layout", "2"  # a global PAX header
WORKSPACE, MARKERS = "project", "markers"  # the two top-level directories of an archive


def write_snapshot(workspace: Path, markers_dir: Path, dest: Path) -> None:
    def fill(tar: tarfile.TarFile) -> None:
        _add_markers(tar, markers_dir)
        _add_tree(tar, workspace, WORKSPACE)

    _write_layered(dest, fill)


def _write_layered(dest: Path, fill: Callable[[tarfile.TarFile], None]) -> None:
    """Write an archive in the layout above (what `fill` adds comes after the workspace's top
    directory) that appears under `dest` only when complete and flushed to disk."""
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as raw:
            with zstandard.ZstdCompressor(level=_ZSTD_LEVEL).stream_writer(raw, closefd=False) as zst, \
                    tarfile.open(fileobj=zst, mode="w|", format=tarfile.PAX_FORMAT,
                                 pax_headers={_LAYOUT_KEY: _LAYOUT}) as tar:
                top = tarfile.TarInfo(WORKSPACE)  # a member even when all is empty: tarfile
                top.type, top.mode = tarfile.DIRTYPE, 0o755  # cannot read a lone global header
                tar.addfile(top)
                fill(tar)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY)
    with closing(dir_fd):
        os.fsync(dir_fd)


def _add_markers(tar: tarfile.TarFile, markers_dir: Path) -> None:
    for name in markers.names(markers_dir):
        try:
            f = open(markers_dir / name, "rb")
        except FileNotFoundError:
            continue  # deleted since it was listed
        with f:
            tar.addfile(tar.gettarinfo(arcname=f"{MARKERS}/{name}", fileobj=f), f)


def _add_tree(tar: tarfile.TarFile, workspace: Path, prefix: str | None) -> None:
    with closing(os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)) as root_fd:
        for rel, name, st, dir_fd in walk(root_fd):
            info = tarfile.TarInfo("/".join([*([prefix] if prefix else []), *rel, name]))
            info.mode, info.mtime = stat.S_IMODE(st.st_mode), int(st.st_mtime)
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd)
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
                except OSError:
                    continue  # removed or swapped since it was listed
                with os.fdopen(fd, "rb") as f:
                    current = os.fstat(fd)
                    if not stat.S_ISREG(current.st_mode):
                        continue
                    info.size = current.st_size
                    tar.addfile(info, f)
            # FIFOs and sockets are not content; they are left out.


def restore_snapshot(archive: Path, dest: Path, owner: Owner) -> None:
    """Unpack `archive` into the directory `dest`: the workspace into `dest/project` (owned by
    `owner`), the markers into `dest/markers` (owned by this process)."""
    with open(archive, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as zst, \
            tarfile.open(fileobj=zst, mode="r|") as tar:
        layered = tar.pax_headers.get(_LAYOUT_KEY) == _LAYOUT

        def sorted_out(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
            if member.type not in _KEEP:
                return None
            if not layered:  # an archive from before markers: all of it is the workspace
                member = member.replace(name=f"{WORKSPACE}/{member.name}", deep=False)
            top, _, rest = member.name.partition("/")
            if top == MARKERS and member.isfile() and markers.is_name(rest):
                uid, gid = os.geteuid(), os.getegid()
            elif top == WORKSPACE and (rest or member.isdir()):
                uid, gid = owner
            else:
                return None  # not ours to restore
            member = tarfile.tar_filter(member, path)
            return member.replace(uid=uid, gid=gid, uname="", gname="", deep=False)

        tar.extractall(dest, numeric_owner=True, filter=sorted_out)


# ---------------------------------------------------------------- trees (imports, diffs, exports)
#
# A "tree" is an uncompressed tar of a workspace alone, with relative names ("src/a.py"):
# what an import brings in (app/repo/archives.py makes it) and what a diff or an export reads.


def tree_of_workspace(workspace: Path) -> bytes:
    """The live workspace as a tree, walked like a snapshot (no symlink followed)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_tree(tar, workspace, None)
    return out.getvalue()


def tree_of_snapshot(archive: Path) -> bytes:
    """The workspace a snapshot holds, as a tree (its markers left out)."""
    out = io.BytesIO()
    with open(archive, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as zst, \
            tarfile.open(fileobj=zst, mode="r|") as src, \
            tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        layered = None
        for member in src:
            if layered is None:
                layered = src.pax_headers.get(_LAYOUT_KEY) == _LAYOUT
            if member.type not in _KEEP:
                continue
            name = member.name
            if layered:
                top, _, name = name.partition("/")
                if top != WORKSPACE or not name:
                    continue
            copy = member.replace(name=name, deep=False)
            tar.addfile(copy, src.extractfile(member) if member.isfile() else None)
    return out.getvalue()


def snapshot_of_tree(tree: bytes, dest: Path) -> None:
    """Write a snapshot archive (no markers) whose workspace is `tree`, as write_snapshot does;
    restore_snapshot filters it like any other."""

    def fill(tar: tarfile.TarFile) -> None:
        with tarfile.open(fileobj=io.BytesIO(tree), mode="r:") as src:
            for member in src:
                if member.type in _KEEP:
                    copy = member.replace(name=f"{WORKSPACE}/{member.name}", deep=False)
                    tar.addfile(copy, src.extractfile(member) if member.isfile() else None)

    _write_layered(dest, fill)
