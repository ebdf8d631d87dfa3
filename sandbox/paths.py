"""Path safety for the host-side file APIs.

The file tools run on the host, as root, on a directory that sandboxed commands can change
at will. So a path is never handed to the kernel whole: it is walked one component at a time
from an open descriptor of the workspace, with O_NOFOLLOW at every step. Symlinks are read
and followed by hand, only while they stay inside the workspace (a target under /project is
taken as the workspace, as the sandbox sees it). A racing command can make an operation fail,
but it cannot make one land outside the workspace.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox.pathwalk import MOUNT_POINT, Kind, Move, PathWalk, split_path  # noqa: F401 - re-exported
from sandbox.protocol import FileEntry, FileMissing, PathRejected, WorkspaceFull

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
Owner = tuple[int, int]


@contextmanager
def closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _resolve(root_fd: int, path: str, *, follow_final: bool, create_dirs: Owner | None) -> tuple[int, str]:
    """Walk `path` below `root_fd` by the rules of sandbox/pathwalk.py; return (fd of the parent
    directory, final name).

    The final name is "." when the path denotes a directory reached through its parent
    (the workspace root, or a symlink to `..`). Intermediate directories are created, owned
    by `create_dirs`, when it is given. The caller closes the returned descriptor.
    """
    walk = PathWalk(path, follow_final=follow_final)
    stack = [os.dup(root_fd)]  # descriptors of the directories walked so far, root first
    try:
        while (name := walk.next()) is not None:
            if name == "..":  # only symlink targets produce these
                walk.up()
                os.close(stack.pop())
                continue
            try:
                st: os.stat_result | None = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
            except FileNotFoundError:
                st = None
            move = walk.see(_kind(st))
            if move is Move.MISSING:
                if create_dirs is None:
                    raise walk.missing()
                _make_dir(stack[-1], name, create_dirs)
            elif move is Move.FOLLOW:
                if walk.follow(os.readlink(name, dir_fd=stack[-1])):
                    while len(stack) > 1:
                        os.close(stack.pop())
            elif move is Move.INTO:
                stack.append(_open_dir(stack[-1], name, path))
            else:
                return stack.pop(), name
        return stack.pop(), "."
    finally:
        for fd in stack:
            os.close(fd)


def _kind(st: os.stat_result | None) -> Kind:
    if st is None:
        return Kind.MISSING
    if stat.S_ISLNK(st.st_mode):
        return Kind.LINK
    return Kind.DIR if stat.S_ISDIR(st.st_mode) else Kind.OTHER


def _open_dir(dir_fd: int, name: str, shown: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise FileMissing(f"{shown!r} does not exist") from None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # swapped for a symlink or file under our feet
            raise PathRejected(f"{shown!r} changed while it was being opened") from None
        raise


def _make_dir(dir_fd: int, name: str, owner: Owner) -> None:
    try:
        os.mkdir(name, 0o755, dir_fd=dir_fd)
    except FileExistsError:
        return
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise WorkspaceFull("the disk is full") from None
        raise
    os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)


def _root(workspace: Path) -> int:
    return os.open(workspace, _DIR_FLAGS)


def read_bytes(workspace: Path, path: str, max_bytes: int) -> tuple[bytes, int]:
    """The first `max_bytes` of a regular file, and its full size."""
    with closing(_root(workspace)) as root_fd:
        parent, name = _resolve(root_fd, path, follow_final=True, create_dirs=None)
        with closing(parent):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
            except FileNotFoundError:
                raise FileMissing(f"{path!r} does not exist") from None
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise PathRejected(f"{path!r} changed while it was being opened") from None
                raise
    with closing(fd):
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise PathRejected(f"{path!r} is a directory; list it instead")
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the worker forever
            raise PathRejected(f"{path!r} is not a regular file")
        chunks, left = [], max(0, max_bytes)
        while left:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), st.st_size


def existing_size(workspace: Path, path: str) -> int:
    """Size of the regular file a write to `path` would replace (0 if there is none)."""
    try:
        with closing(_root(workspace)) as root_fd:
            parent, name = _resolve(root_fd, path, follow_final=False, create_dirs=None)
            with closing(parent):
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except (FileMissing, FileNotFoundError):
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def write_atomic(workspace: Path, path: str, chunks: Iterable[bytes], owner: Owner) -> None:
    """Replace `path` with `chunks` via a temporary file and a rename, creating parent directories.

    The final component is never followed: writing to a symlink is refused.
    """
    with closing(_root(workspace)) as root_fd:
        parent, name = _resolve(root_fd, path, follow_final=False, create_dirs=owner)
        with closing(parent):
            mode = 0o644
            try:
                st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                if stat.S_ISLNK(st.st_mode):
                    raise PathRejected(f"{path!r} is a symlink; write to the path it points to instead")
                if stat.S_ISDIR(st.st_mode):
                    raise PathRejected(f"{path!r} is a directory")
                if not stat.S_ISREG(st.st_mode):
                    raise PathRejected(f"{path!r} is not a regular file")
                mode = stat.S_IMODE(st.st_mode)  # keep an executable script executable
            tmp = f".agent-tmp-{secrets.token_hex(6)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=parent)
            try:
                with closing(fd):
                    for chunk in chunks:
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view):]
                    os.fchmod(fd, mode)
                    os.fchown(fd, *owner)
                os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException as e:
                try:
                    os.unlink(tmp, dir_fd=parent)
                except FileNotFoundError:
                    pass
                if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise WorkspaceFull("the disk is full") from None
                raise


def keep_newest(workspace: Path, path: str, keep: int, names: re.Pattern[str], just_written: str) -> int:
    """Delete all but the `keep` newest regular files in the directory `path` whose names
    match `names`; return how many went. Other entries are left alone. Newest is by mtime
    (a coarse clock: ties go by name), except that `just_written` always counts as newest."""
    with closing(_root(workspace)) as root_fd:
        parent, name = _resolve(root_fd, path, follow_final=True, create_dirs=None)
        with closing(parent):
            dir_fd = _open_dir(parent, name, path)
    with closing(dir_fd):
        found = []
        with os.scandir(dir_fd) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if names.fullmatch(entry.name) and stat.S_ISREG(st.st_mode):
                    found.append((entry.name == just_written, st.st_mtime_ns, entry.name))
        old = sorted(found)[:max(0, len(found) - keep)]
        for *_, name in old:
            try:
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
    return len(old)


def walk(top: int) -> Iterator[tuple[list[str], str, os.stat_result, int]]:
    """Every entry below the open directory `top`, breadth first, each directory's entries
    sorted: (parent components, name, lstat result, parent descriptor, valid while handled).

    Symlinks are never followed. Each directory is reopened from `top` one component at a
    time with O_NOFOLLOW, so a command swapping a directory for a symlink mid-walk gets that
    directory skipped, not followed; and no more than a couple of descriptors are ever open.
    """
    queue: deque[list[str]] = deque([[]])
    while queue:
        rel = queue.popleft()
        try:
            dir_fd = _open_relative(top, rel)
        except (PathRejected, FileMissing):
            continue  # removed or swapped while we walked
        with closing(dir_fd), os.scandir(dir_fd) as it:
            for entry in sorted(it, key=lambda entry: entry.name):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    queue.append([*rel, entry.name])
                yield rel, entry.name, st, dir_fd


def _open_relative(top: int, parts: list[str]) -> int:
    fd = os.dup(top)
    for name in parts:
        with closing(fd):
            fd = _open_dir(fd, name, "/".join(parts))
    return fd


def disk_usage(workspace: Path) -> int:
    """Bytes the workspace takes, as its cap counts them: each entry at least 512 bytes (so
    a flood of empty files counts too), hard-linked files once."""
    total, seen = 0, set()
    with closing(_root(workspace)) as root_fd:
        for _, _, st, _ in walk(root_fd):
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += max(st.st_size, st.st_blocks * 512, 512)
    return total


def list_tree(workspace: Path, path: str, max_entries: int) -> list[FileEntry]:
    """Up to `max_entries` entries below `path`, sorted by path. The walk is breadth first,
    so a cap keeps the top levels. Symlinks are kind "symlink" and not descended into;
    FIFOs, sockets and the like are kind "other".
    """
    prefix = split_path(path)
    entries: list[FileEntry] = []
    with closing(_root(workspace)) as root_fd:
        parent, name = _resolve(root_fd, path, follow_final=True, create_dirs=None)
        with closing(parent):
            try:
                top = os.open(name, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                raise FileMissing(f"{path!r} does not exist") from None
            except OSError as e:
                if e.errno in (errno.ENOTDIR, errno.ELOOP):
                    raise PathRejected(f"{path!r} is not a directory") from None
                raise
        with closing(top):
            for rel, name, st, _ in walk(top):
                if len(entries) >= max_entries:
                    break
                kind = ("symlink" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode)
                        else "file" if stat.S_ISREG(st.st_mode) else "other")
                entries.append(FileEntry(path="/".join([*prefix, *rel, name]), kind=kind, size=st.st_size))
    return sorted(entries, key=lambda e: e.path)
