"""An uploaded tar or zip, checked entry by entry and rewritten as one safe, normalized tar.

`normalize(body, max_bytes=..., max_files=...)` is the import's whole defence against a hostile
archive, so it runs before anything touches a workspace and refuses (`Refused`: 400 or 413, the
message naming the entry) rather than repairs:
- nothing may land outside the tree: no absolute path, no `..`, no entry reached through a
  symlink, no symlink whose target (followed through the tree's other links) climbs out;
- nothing but directories, regular files and such symlinks: devices, FIFOs and sparse files are
  refused, a hard link becomes a copy of the earlier regular file it names;
- no entry hides another: a path that appears twice is refused, since "last wins" hides content;
- a bomb is stopped while it inflates, never after: tar members are charged to the byte cap from
  their headers before they are read, zip entries likewise and then read no further than they
  declare, and the tar stream as a whole may not inflate past the caps plus room for its headers.

The format comes from the content (gzip, bzip2 or xz tar, plain tar, zip), never from a name.
"""

from __future__ import annotations

import bz2
import calendar
import gzip
import io
import lzma
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import IO, Literal

MAX_NAME = 255  # bytes in one path component: Linux's NAME_MAX
MAX_PATH = 4096  # bytes in a whole path or a link target: Linux's PATH_MAX
MAX_TAR_HEADER = 1 << 20  # tarfile reads a pax or GNU long-name header into memory whole
TAR_OVERHEAD_PER_ENTRY = 4096  # a member's header, pax header and padding, generously
MAX_LINK_HOPS = 40  # Linux's own limit: a longer chain fails with ELOOP and reaches nothing
MAX_LINK_STEPS = 1024  # path components walked to check one symlink (legit ones take a few dozen)
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a first entry, or the end record of an empty zip
COMPRESSIONS = ((b"\x1f\x8b", "gzip", gzip.open), (b"BZh", "bzip2", bz2.open), (b"\xfd7zXZ\x00", "xz", lzma.open))
# What a corrupt or truncated archive raises from the stdlib readers: all of them are a 400.
MALFORMED = (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, lzma.LZMAError, zlib.error,
             ValueError, OverflowError, NotImplementedError)


class Refused(Exception):
    """An archive we will not import. `status` is the HTTP status to answer (400 bad entry or
    malformed/unknown format, 413 over a cap); `message` names the offending entry."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Tree:
    """The normalized tree: a tar of directories, regular files and inside symlinks only."""

    tar: bytes = field(repr=False)  # an uncompressed POSIX (PAX) tar, paths relative ("src/a.py"), sorted
    files: int  # regular files
    bytes: int  # total size of regular files
    stripped: str | None  # the single top-level directory removed, if any


def normalize(body: bytes, *, max_bytes: int, max_files: int) -> Tree:
    """The tree in `body` (a tar, compressed or not, or a zip), checked and normalized."""
    collected = _Collected(max_bytes=max_bytes, max_files=max_files)
    try:
        if body[:4] in ZIP_MAGICS:
            _read_zip(body, collected)
        else:
            _read_tar(body, collected)
    except MALFORMED as e:
        at = f" near {_shown(collected.current)}" if collected.current else ""
        raise Refused(400, f"malformed archive{at}: {e}") from None
    return collected.tree()


@dataclass
class _Entry:
    kind: Literal["dir", "file", "symlink"]
    mtime: int
    executable: bool = False
    data: bytes = b""
    target: str = ""


class _Collected:
    """The entries read so far, each checked as it arrives, so that a refusal comes early."""

    def __init__(self, max_bytes: int, max_files: int):
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.entries: dict[str, _Entry] = {}
        self.implied: set[str] = set()  # parent directories that have no entry of their own (yet)
        self.bytes = 0
        self.current = ""  # the name being read, for a malformed archive's message

    @property
    def room(self) -> int:
        return self.max_bytes - self.bytes

    def charge(self, path: str, size: int) -> None:
        """Count `size` bytes of file content against the byte cap, before they are read."""
        if size > self.room:
            raise Refused(413, f"over the byte cap: more than {self.max_bytes} bytes of files (at {_shown(path)})")
        self.bytes += size

    def put(self, path: str, entry: _Entry) -> None:
        if path in self.entries:
            raise Refused(400, f"duplicate path {_shown(path)}: the archive holds it twice")
        if entry.kind != "dir" and path in self.implied:
            raise Refused(400, f"{_shown(path)} is a {entry.kind} but other entries live under it")
        if entry.kind == "symlink":
            _check_target(path, entry.target)
        self._claim_parents(path)
        self.entries[path] = entry
        self.implied.discard(path)
        # One more than the cap: the single top directory may still be stripped.
        if len(self.entries) + len(self.implied) > self.max_files + 1:
            raise self.too_many()

    def hardlink(self, path: str, linkname: str) -> None:
        """A hard link, as a copy of the earlier regular file it names, or refused."""
        source = self.entries.get(_lexical(linkname))
        if source is None or source.kind != "file":
            raise Refused(400, f"hard link {_shown(path)} -> {_shown(linkname)} is not to an earlier "
                               "regular file of the archive")
        self.charge(path, len(source.data))
        self.put(path, _Entry("file", source.mtime, source.executable, source.data))

    def too_many(self) -> Refused:
        return Refused(413, f"over the file cap: more than {self.max_files} files, directories and links")

    def _claim_parents(self, path: str) -> None:
        # Upward until a parent already known as a directory: its own parents were checked when
        # it arrived, so each path costs only its new directories.
        parent = path
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            known = self.entries.get(parent)
            if parent in self.implied or (known is not None and known.kind == "dir"):
                return
            if known is not None:
                raise Refused(400, f"{_shown(path)} passes through the {known.kind} {_shown(parent)}")
            self.implied.add(parent)

    def tree(self) -> Tree:
        entries = self.entries | {path: _Entry("dir", 0) for path in self.implied}
        top = _single_top(entries)
        if top is not None:
            entries = {path[len(top) + 1:]: e for path, e in entries.items() if path != top}
        if len(entries) > self.max_files:
            raise self.too_many()
        links = {path: e.target for path, e in entries.items() if e.kind == "symlink"}
        for path, target in links.items():  # after the strip: `top/x -> ../top` no longer stays inside
            if _leaves_tree(path, target, links):
                named, where = (f"{top}/{path}", f", which is what lies under {top}/") if top else (path, "")
                raise Refused(400, f"symlink {_shown(named)} -> {_shown(target)} points outside the tree{where}")
        files = sum(e.kind == "file" for e in entries.values())
        return Tree(tar=_write(entries), files=files, bytes=self.bytes, stripped=top)


# ---- the two readers ---------------------------------------------------------------------------

def _read_tar(body: bytes, collected: _Collected) -> None:
    source, compression = _decompressed(body)
    limit = collected.max_bytes + (collected.max_files + 2) * TAR_OVERHEAD_PER_ENTRY + MAX_TAR_HEADER
    stream = _Capped(source, limit, collected.max_bytes)
    try:
        archive = tarfile.open(fileobj=stream, mode="r|", tarinfo=_StrictHeader,
                               encoding="utf-8", errors="surrogateescape")
    except tarfile.ReadError as e:
        what = f"a {compression}-compressed tar" if compression else "a tar, tar.gz, tar.bz2, tar.xz or zip archive"
        raise Refused(400, f"not {what} ({e})") from None
    for member in archive:
        collected.current = member.name
        _take_member(member, archive, collected)
    collected.current = ""
    # Read to the end, so that a truncated or corrupt compressed stream is refused too.
    while stream.read(1 << 16):
        pass


def _take_member(member: tarfile.TarInfo, archive: tarfile.TarFile, collected: _Collected) -> None:
    path = _clean(member.name)
    if path is None:
        return
    mtime = _mtime(member.mtime)
    if member.issparse():  # before isreg(): tarfile counts a sparse file as regular
        raise Refused(400, f"{_shown(path)} is a sparse file, which an import does not take")
    if member.isdir():
        collected.put(path, _Entry("dir", mtime))
    elif member.issym():
        collected.put(path, _Entry("symlink", mtime, target=member.linkname))
    elif member.islnk():
        collected.hardlink(path, member.linkname)
    elif member.isreg():
        collected.charge(path, member.size)
        data = archive.extractfile(member).read()  # type: ignore[union-attr]
        collected.put(path, _Entry("file", mtime, bool(member.mode & 0o111), data))
    else:
        raise Refused(400, f"{_shown(path)} is {_tar_kind(member)}, which an import does not take")


def _read_zip(body: bytes, collected: _Collected) -> None:
    archive = zipfile.ZipFile(io.BytesIO(body))
    for info in archive.infolist():
        name = _zip_name(info)
        collected.current = name
        path = _clean(name)
        if path is None:
            continue
        if info.flag_bits & 0x1:
            raise Refused(400, f"{_shown(path)} is encrypted")
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        mtime = _zip_mtime(info)
        if name.endswith("/") or kind == stat.S_IFDIR:
            collected.put(path, _Entry("dir", mtime))
        elif kind == stat.S_IFLNK:
            with archive.open(info) as f:
                target = f.read(MAX_PATH + 1).decode("utf-8", "surrogateescape")
            collected.put(path, _Entry("symlink", mtime, target=target))
        elif kind in (0, stat.S_IFREG):
            # Charged at its declared size before it inflates, then read no further than that size
            # (zipfile refuses an entry whose content is longer or shorter than it declares).
            collected.charge(path, info.file_size)
            with archive.open(info) as f:
                data = f.read(info.file_size + 1)
            if len(data) != info.file_size:
                raise Refused(400, f"{_shown(path)} inflates to other than the {info.file_size} bytes it declares")
            collected.put(path, _Entry("file", mtime, bool(mode & 0o111), data))
        else:
            raise Refused(400, f"{_shown(path)} is {_mode_kind(kind)}, which an import does not take")
    collected.current = ""


def _decompressed(body: bytes) -> tuple[IO[bytes], str | None]:
    """A reader of `body`'s tar bytes, inflating them as they are read, and the compression's name."""
    for magic, name, open_ in COMPRESSIONS:
        if body.startswith(magic):
            return open_(io.BytesIO(body)), name
    return io.BytesIO(body), None


class _Capped:
    """The tar stream, refused (413) once more than `limit` bytes came out of it: the backstop
    against an archive that inflates in its headers, its skipped entries or after its end."""

    def __init__(self, source: IO[bytes], limit: int, max_bytes: int):
        self.source, self.limit, self.max_bytes, self.count = source, limit, max_bytes, 0

    def read(self, size: int = -1) -> bytes:
        want = self.limit - self.count + 1  # one byte past the limit tells "more" from "exactly"
        data = self.source.read(want if size < 0 else min(size, want))
        self.count += len(data)
        if self.count > self.limit:
            raise Refused(413, f"over the byte cap: the tar inflates past {self.limit} bytes "
                               f"(the {self.max_bytes}-byte cap plus room for its headers)")
        return data


class _StrictHeader(tarfile.TarInfo):
    """tarfile's member header, made strict where tarfile is lenient."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        # After the first member, tarfile takes a bad or missing header for the archive's end and
        # quietly drops the rest of a corrupt or truncated archive: here that is an error. At the
        # start, tarfile's own error ("not a tar") stands.
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.EmptyHeaderError:
            if tarfile_.offset == 0:
                raise
            raise tarfile.ReadError("truncated: the archive ends without its end-of-archive blocks") from None
        except (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError) as e:
            if tarfile_.offset == 0:
                raise
            raise tarfile.ReadError(f"bad header at byte {tarfile_.offset}: {e}") from None

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        # tarfile reads an extended header into memory whole (its source invites this override):
        # cap it before it does, so a pax header cannot be the bomb.
        extended = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                    tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
        if self.type in extended and self.size > MAX_TAR_HEADER:
            raise Refused(400, f"malformed tar: an extended header of {self.size} bytes (more than {MAX_TAR_HEADER})")
        return super()._proc_member(tarfile_)


# ---- names, links and kinds --------------------------------------------------------------------

def _clean(name: str) -> str | None:
    """`name` as a relative path without `.` or empty components; None for the root (`.`)."""
    if "\x00" in name or not _is_utf8(name):
        raise Refused(400, f"path {_shown(name)} is not UTF-8 or holds a NUL byte")
    if name.startswith("/"):
        raise Refused(400, f"absolute path {_shown(name)}")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise Refused(400, f"path {_shown(name)} has a '..' component")
    if any(len(part.encode()) > MAX_NAME for part in parts):
        raise Refused(400, f"path {_shown(name)} has a component longer than {MAX_NAME} bytes")
    path = "/".join(parts)
    if len(path.encode()) > MAX_PATH:
        raise Refused(400, f"path {_shown(name)} is longer than {MAX_PATH} bytes")
    return path or None


def _lexical(name: str) -> str | None:
    """`name` spelled as `_clean` would, or None where it refuses: a hard link's target."""
    try:
        return _clean(name)
    except Refused:
        return None


def _check_target(path: str, target: str) -> None:
    if not target or "\x00" in target or not _is_utf8(target) or len(target.encode()) > MAX_PATH:
        raise Refused(400, f"symlink {_shown(path)} has an empty, non-UTF-8 or too long target {_shown(target)}")
    if target.startswith("/"):
        raise Refused(400, f"symlink {_shown(path)} -> {_shown(target)} has an absolute target")


def _leaves_tree(path: str, target: str, links: dict[str, str]) -> bool:
    """Whether following the symlink at `path` climbs above the root, walking the target from the
    link's directory and through the tree's other symlinks, without looking at any disk."""
    here = path.rsplit("/", 1)[0] if "/" in path else ""
    todo = target.split("/")[::-1]
    hops = steps = 0
    while todo:
        part = todo.pop()
        steps += 1
        if steps > MAX_LINK_STEPS:
            return True  # too tangled to show it stays inside
        if part in ("", "."):
            continue
        if part == "..":
            if not here:
                return True
            here = here.rsplit("/", 1)[0] if "/" in here else ""
            continue
        here = f"{here}/{part}" if here else part
        inner = links.get(here)
        if inner is not None:
            hops += 1
            if hops > MAX_LINK_HOPS:
                return False  # the kernel gives up with ELOOP here: nothing is reached
            here = here.rsplit("/", 1)[0] if "/" in here else ""
            todo.extend(inner.split("/")[::-1])
    return False


def _single_top(entries: dict[str, _Entry]) -> str | None:
    """The one top-level directory every entry lives in (GitHub's `repo-main`), if there is one."""
    tops = {path.split("/", 1)[0] for path in entries}
    if len(tops) != 1:
        return None
    top = tops.pop()
    return top if entries[top].kind == "dir" else None


def _zip_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as UTF-8 (non-UTF-8 bytes kept as surrogates, to be refused by `_clean`).
    `orig_filename`, because zipfile cuts `filename` at a NUL."""
    if info.flag_bits & 0x800:  # the name is flagged UTF-8 and zipfile decoded it so
        return info.orig_filename
    # Unflagged names are bytes zipfile read as cp437 (a lossless round trip); Unix zippers write UTF-8.
    return info.orig_filename.encode("cp437").decode("utf-8", "surrogateescape")


def _zip_mtime(info: zipfile.ZipInfo) -> int:
    """The Unix mtime from the extended-timestamp field (0x5455, which git archive writes), else
    the DOS date and time read as UTC (they carry no zone), else 0."""
    extra = info.extra
    while len(extra) >= 4:
        tag, size = struct.unpack("<HH", extra[:4])
        data = extra[4:4 + size]
        if tag == 0x5455 and len(data) >= 5 and data[0] & 1:  # flag 1: the mtime is present
            return struct.unpack("<i", data[1:5])[0]
        extra = extra[4 + size:]
    try:
        return calendar.timegm(info.date_time)
    except ValueError:  # a zeroed DOS date: month 0
        return 0


def _mtime(value: float) -> int:
    try:
        return int(value)
    except (ValueError, OverflowError):  # a pax mtime of "nan" or "inf"
        return 0


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.ischr():
        return "a character device"
    if member.isblk():
        return "a block device"
    if member.isfifo():
        return "a FIFO"
    return f"an entry of tar type {member.type!r}"


def _mode_kind(kind: int) -> str:
    names = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
             stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}
    return names.get(kind, f"an entry of unix type {kind:o}")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # surrogates: the bytes were not UTF-8
        return False
    return True


def _shown(name: str) -> str:
    """`name` fit for a message: undecodable bytes escaped, NULs visible, at most 200 characters."""
    try:  # undecodable bytes came in as surrogates: show them as the bytes they were
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "backslashreplace")
    shown = raw.decode("utf-8", "backslashreplace").replace("\x00", "\\0")
    return shown if len(shown) <= 200 else shown[:200] + "..."


# ---- the output --------------------------------------------------------------------------------

def _write(entries: dict[str, _Entry]) -> bytes:
    """A PAX tar of `entries`, sorted, owned by root with no names: the same tree, the same bytes."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for path in sorted(entries):
            entry = entries[path]
            info = tarfile.TarInfo(path)
            info.mtime, info.uid, info.gid, info.uname, info.gname = entry.mtime, 0, 0, "", ""
            if entry.kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif entry.kind == "symlink":
                info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, entry.target
            else:
                info.mode, info.size = (0o755 if entry.executable else 0o644), len(entry.data)
            tar.addfile(info, io.BytesIO(entry.data) if entry.kind == "file" else None)
    return out.getvalue()
