"""An uploaded archive becomes a safe, normalized tar, or is refused with a status and the entry's
name: in-process, on archives built here with the stdlib, in milliseconds (the bombs in a second)."""

from __future__ import annotations

import gzip
import io
import stat
import subprocess
import sys
import tarfile
import time
import tracemalloc
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.repo.archives import Refused, Tree, normalize

MTIME = 1_700_000_000  # even: a zip's DOS time keeps only even seconds
MB = 1 << 20
BIG = {"max_bytes": 10 * MB, "max_files": 1000}


@dataclass
class Member:
    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    linkname: str = ""


def file(name: str, data: bytes = b"x", mode: int = 0o644) -> Member:
    return Member(name, data=data, mode=mode)


def directory(name: str) -> Member:
    return Member(name, tarfile.DIRTYPE, mode=0o755)


def symlink(name: str, target: str) -> Member:
    return Member(name, tarfile.SYMTYPE, mode=0o777, linkname=target)


def hardlink(name: str, target: str) -> Member:
    return Member(name, tarfile.LNKTYPE, linkname=target)


def tar_of(*members: Member, compression: str = "gz") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=f"w:{compression}" if compression else "w", format=tarfile.PAX_FORMAT) as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type, info.mode, info.linkname, info.mtime = m.type, m.mode, m.linkname, MTIME
            info.uid, info.gid, info.uname, info.gname = 1000, 1000, "alice", "staff"
            info.size = len(m.data) if m.type == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(m.data) if m.type == tarfile.REGTYPE else None)
    return out.getvalue()


ZIP_KINDS = {tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK, tarfile.FIFOTYPE: stat.S_IFIFO,
             tarfile.CHRTYPE: stat.S_IFCHR}


def zip_of(*members: Member) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for m in members:
            kind = ZIP_KINDS.get(m.type, stat.S_IFREG)
            info = zipfile.ZipInfo(m.name + ("/" if kind == stat.S_IFDIR else ""), time.gmtime(MTIME)[:6])
            info.create_system, info.external_attr = 3, (kind | m.mode) << 16
            archive.writestr(info, m.linkname or m.data, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def members_of(tree: Tree) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tree.tar)) as tar:
        return {m.name: m for m in tar.getmembers()}


def contents_of(tree: Tree) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(tree.tar)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}


def refusal(body: bytes, **caps: int) -> Refused:
    with pytest.raises(Refused) as refused:
        normalize(body, **(caps or BIG))
    return refused.value


PROJECT = (directory("src"), file("src/app.py", b"print('hi')\n"), file("run.sh", b"#!/bin/sh\n", mode=0o700),
           symlink("src/main.py", "app.py"), symlink("docs", "src"), file(".git/HEAD", b"ref: refs/heads/main\n"),
           hardlink("copy.py", "src/app.py"))


def test_a_project_round_trips_with_dirs_modes_links_and_git_kept():
    tree = normalize(tar_of(*PROJECT), **BIG)

    members = members_of(tree)
    assert list(members) == [".git", ".git/HEAD", "copy.py", "docs", "run.sh", "src", "src/app.py", "src/main.py"]
    assert contents_of(tree) == {".git/HEAD": b"ref: refs/heads/main\n", "copy.py": b"print('hi')\n",
                                 "run.sh": b"#!/bin/sh\n", "src/app.py": b"print('hi')\n"}
    assert members["src"].isdir() and members["src"].mode == 0o755
    assert members[".git"].isdir() and members[".git"].mode == 0o755  # implied by .git/HEAD, made explicit
    assert members["run.sh"].mode == 0o755 and members["src/app.py"].mode == 0o644
    assert members["copy.py"].isreg()  # the hard link is a copy now
    assert (members["src/main.py"].issym(), members["src/main.py"].linkname) == (True, "app.py")
    assert (members["docs"].issym(), members["docs"].linkname) == (True, "src")
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, "", "")}
    assert members["src/app.py"].mtime == MTIME
    assert (tree.files, tree.bytes, tree.stripped) == (4, 12 + 10 + 12 + 21, None)


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz"])
def test_the_same_tree_gives_the_same_bytes_whatever_the_format(compression):
    without_hardlink = PROJECT[:-1]  # a zip has none
    reference = normalize(tar_of(*without_hardlink), **BIG)
    assert normalize(tar_of(*without_hardlink, compression=compression), **BIG).tar == reference.tar
    assert normalize(zip_of(*without_hardlink), **BIG).tar == reference.tar


def test_modes_come_down_to_0644_or_0755():
    body = tar_of(file("setuid", mode=0o4711), file("private", mode=0o600), file("group_x", mode=0o610))
    modes = {name: m.mode for name, m in members_of(normalize(body, **BIG)).items()}
    assert modes == {"group_x": 0o755, "private": 0o644, "setuid": 0o755}


def test_a_github_archive_loses_its_top_directory():
    body = tar_of(directory("repo-main"), file("repo-main/README.md", b"hi"), directory("repo-main/src"),
                  file("repo-main/src/a.py"), symlink("repo-main/latest", "src/a.py"))
    tree = normalize(body, **BIG)
    assert tree.stripped == "repo-main"
    assert list(members_of(tree)) == ["README.md", "latest", "src", "src/a.py"]


def test_a_zip_from_github_loses_its_top_directory_too():
    tree = normalize(zip_of(directory("repo-main"), file("repo-main/a.py"), file("repo-main/b/c.py")), **BIG)
    assert (tree.stripped, list(members_of(tree))) == ("repo-main", ["a.py", "b", "b/c.py"])


@pytest.mark.parametrize("members", [
    (file("a/x"), file("b/y")),  # two tops
    (file("README.md"),),  # a single file is not a directory to strip
    (directory("a"), file("a/x"), file("b")),
])
def test_nothing_is_stripped_without_a_single_top_directory(members):
    assert normalize(tar_of(*members), **BIG).stripped is None


def test_dot_entries_are_skipped_and_dot_slash_prefixes_dropped():
    tree = normalize(tar_of(directory("."), directory("./src"), file("./src/a.py"), file("b.py")), **BIG)
    assert list(members_of(tree)) == ["b.py", "src", "src/a.py"]


@pytest.mark.parametrize("body", [tar_of(), tar_of(compression=""), zip_of()], ids=["tar.gz", "tar", "zip"])
def test_an_empty_archive_is_an_empty_tree(body):
    tree = normalize(body, **BIG)
    assert (tree.files, tree.bytes, tree.stripped, members_of(tree)) == (0, 0, None, {})


def test_a_zip_keeps_an_inside_symlink_and_the_exec_bit():
    tree = normalize(zip_of(file("bin/run", b"#!", mode=0o755), symlink("run", "bin/run")), **BIG)
    members = members_of(tree)
    assert members["bin/run"].mode == 0o755
    assert (members["run"].issym(), members["run"].linkname) == (True, "bin/run")


def test_the_same_archive_normalizes_to_the_same_bytes():
    body = tar_of(*PROJECT)
    assert normalize(body, **BIG).tar == normalize(body, **BIG).tar


def char_device(name: str) -> Member:
    return Member(name, tarfile.CHRTYPE)


HOSTILE = [
    # (members, the name the message must show)
    ((file("../x"),), "../x"),
    ((file("/etc/passwd"),), "/etc/passwd"),
    ((file("a/../../x"),), "a/../../x"),
    ((file("a/../b"),), "a/../b"),  # any '..', even one that stays inside
    ((symlink("etc", "/etc"),), "etc"),
    ((symlink("a/b/up", "../../../x"),), "a/b/up"),
    ((symlink("link", "sub"), directory("sub"), file("link/x")), "link/x"),
    ((file("link/x"), symlink("link", "sub")), "link"),  # the same, the other way round
    ((file("a"), file("a/b")), "a/b"),
    ((hardlink("passwd", "/etc/passwd"),), "/etc/passwd"),
    ((hardlink("copy", "missing.py"),), "missing.py"),
    ((hardlink("copy", "later.py"), file("later.py")), "later.py"),
    ((directory("d"), hardlink("copy", "d")), "copy"),
    ((char_device("dev/null"),), "dev/null"),
    ((Member("dev/disk", tarfile.BLKTYPE),), "dev/disk"),
    ((Member("pipe", tarfile.FIFOTYPE),), "pipe"),
    ((file("a.py", b"1"), file("a.py", b"2")), "a.py"),
    ((file("x" * 256),), "x" * 100),
    ((file("/".join(["d"] * 2049)),), "d/d/d"),
    # d/up -> .. stays inside, but d/esc -> up/.. walks through it and out
    ((directory("d"), symlink("d/up", ".."), symlink("d/esc", "up/.."), file("e")), "d/esc"),
    # inside the archive, but outside the tree once repo/ is stripped
    ((directory("repo"), file("repo/a"), symlink("repo/b", "../repo/a")), "repo/b -> ../repo/a"),
]


@pytest.mark.parametrize("members,shown", HOSTILE, ids=[shown[:20] for _, shown in HOSTILE])
def test_a_hostile_entry_is_refused_with_a_400_naming_it(members, shown):
    refused = refusal(tar_of(*members))
    assert refused.status == 400
    assert shown in refused.message


@pytest.mark.filterwarnings("ignore:Duplicate name")  # zipfile warns as it writes the duplicate
@pytest.mark.parametrize("members,shown", [
    ((file("../x"),), "../x"),
    ((symlink("out", "../../etc"),), "out"),
    ((symlink("abs", "/etc/passwd"),), "abs"),
    ((Member("pipe", tarfile.FIFOTYPE),), "pipe"),
    ((char_device("dev/null"),), "dev/null"),
    ((file("a.py", b"1"), file("a.py", b"2")), "a.py"),
])
def test_a_hostile_zip_entry_is_refused_too(members, shown):
    refused = refusal(zip_of(*members))
    assert refused.status == 400 and shown in refused.message


def test_a_name_that_is_not_utf8_or_holds_a_nul_is_refused():
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.GNU_FORMAT, encoding="latin-1") as archive:
        archive.addfile(tarfile.TarInfo("caf\xe9.txt"))  # written as the byte 0xe9
    assert "caf\\xe9" in refusal(tar.getvalue()).message

    pax = io.BytesIO()
    with tarfile.open(fileobj=pax, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("innocent")
        info.pax_headers = {"path": "a\x00b"}
        archive.addfile(info)
    assert "a\\0b" in refusal(pax.getvalue()).message


def test_more_entries_than_the_file_cap_is_a_413_naming_the_cap():
    body = tar_of(*(file(f"f{i}") for i in range(10_000)))
    started = time.monotonic()
    refused = refusal(body, max_bytes=10 * MB, max_files=1000)
    assert refused.status == 413 and "1000" in refused.message and "file cap" in refused.message
    assert time.monotonic() - started < 2


def test_the_file_cap_counts_implied_directories_and_forgives_a_stripped_top():
    deep = tar_of(file("a/b/c/d"), file("e"))  # a, a/b, a/b/c, a/b/c/d and e
    assert refusal(deep, max_bytes=MB, max_files=4).status == 413
    assert normalize(deep, max_bytes=MB, max_files=5).files == 2
    assert normalize(tar_of(file("top/a"), file("top/b")), max_bytes=MB, max_files=2).stripped == "top"


def test_more_bytes_than_the_byte_cap_is_a_413_naming_the_cap():
    refused = refusal(tar_of(file("a", bytes(600)), file("b", bytes(600))), max_bytes=1000, max_files=10)
    assert refused.status == 413 and "1000" in refused.message and "byte cap" in refused.message
    assert normalize(tar_of(file("a", bytes(500)), file("b", bytes(500))), max_bytes=1000, max_files=10).bytes == 1000
    assert refusal(zip_of(file("a", bytes(1001))), max_bytes=1000, max_files=10).status == 413


class Zeros:
    """`size` zero bytes, read without ever holding them."""

    def __init__(self, size: int):
        self.left = size

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return bytes(size)


def zip_bomb(size: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("bomb.bin", "w") as entry:
            source = Zeros(size)
            while chunk := source.read(MB):
                entry.write(chunk)
    return out.getvalue()


def tar_gz_bomb(size: int, then: int = 0) -> bytes:
    """A tar.gz holding `size` zeros in one file, and `then` more zeros in its gzip stream after the
    tar's end."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb") as compressed:
        with tarfile.open(fileobj=compressed, mode="w") as archive:
            info = tarfile.TarInfo("bomb.bin")
            info.size = size
            archive.addfile(info, Zeros(size))
        source = Zeros(then)
        while chunk := source.read(MB):
            compressed.write(chunk)
    return out.getvalue()


def refused_quickly_and_small(body: bytes, max_bytes: int) -> Refused:
    """The refusal, asserting it took under 2 s and never held as much as the cap in memory."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        refused = refusal(body, max_bytes=max_bytes, max_files=1000)
        elapsed, peak = time.monotonic() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 2 and peak < max_bytes // 4, (elapsed, peak)
    return refused


def test_a_zip_bomb_is_refused_quickly_without_inflating_it():
    body = zip_bomb(200 * MB)
    assert len(body) < 300_000
    refused = refused_quickly_and_small(body, max_bytes=50 * MB)
    assert refused.status == 413 and "bomb.bin" in refused.message


def test_a_zip_whose_entry_lies_about_its_size_is_refused_without_inflating_it():
    body = bytearray(zip_bomb(200 * MB))
    # The entry declares 1 KiB, in its local header (offset 22) and its central record (24).
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = body.find(signature) + offset
        body[at:at + 4] = (1024).to_bytes(4, "little")
    refused = refused_quickly_and_small(bytes(body), max_bytes=50 * MB)
    assert refused.status == 400 and "bomb.bin" in refused.message


def test_a_gzip_bomb_tar_is_refused_quickly_without_inflating_it():
    refused = refused_quickly_and_small(tar_gz_bomb(200 * MB), max_bytes=50 * MB)
    assert refused.status == 413 and "bomb.bin" in refused.message and str(50 * MB) in refused.message


def test_a_tar_gz_that_inflates_on_after_its_end_is_refused_while_inflating():
    refused = refused_quickly_and_small(tar_gz_bomb(1000, then=200 * MB), max_bytes=50 * MB)
    assert refused.status == 413 and "byte cap" in refused.message


@pytest.mark.parametrize("body", [b"", b"just some text, not an archive", b"\x00" * 100, b"PK\x03\x04 not really",
                                  b"\x1f\x8b not really gzip", zip_of(file("a")).replace(b"PK", b"QK")])
def test_what_is_not_an_archive_is_a_400(body):
    assert refusal(body).status == 400


def test_a_compressed_stream_that_is_not_a_tar_is_a_400_saying_so():
    refused = refusal(gzip.compress(b"hello, world\n" * 100))
    assert refused.status == 400 and "not a gzip-compressed tar" in refused.message


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_a_truncated_tar_gz_is_a_400(cut):
    body = tar_of(*(file(f"f{i}", bytes(range(256)) * 40) for i in range(5)))
    assert refusal(body[:int(len(body) * cut)]).status == 400


def test_a_corrupt_header_midway_is_a_400_not_a_shorter_archive():
    body = bytearray(tar_of(file("a", b"1"), file("b", b"2"), file("c", b"3"), compression=""))
    body[1024 + 10] ^= 0xFF  # the second member's header: its checksum no longer holds
    assert refusal(bytes(body)).status == 400
    assert refusal(tar_of(file("a"), compression="")[:1024]).status == 400  # no end-of-archive blocks


def test_an_encrypted_zip_entry_is_a_400_naming_it():
    body = bytearray(zip_of(file("secret.txt", b"hidden")))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # the flags' bit 0: encrypted
        body[body.find(signature) + offset] |= 0x1
    refused = refusal(bytes(body))
    assert refused.status == 400 and "secret.txt" in refused.message and "encrypted" in refused.message


def test_a_sparse_file_is_refused():
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("holes.img")
        # GNU's sparse format 0.1: a map of (offset, size) regions, the holes between them unwritten
        info.pax_headers = {"GNU.sparse.map": "0,0", "GNU.sparse.size": "1048576", "GNU.sparse.name": "holes.img"}
        archive.addfile(info)
    refused = refusal(out.getvalue())
    assert refused.status == 400 and "holes.img" in refused.message


def test_a_huge_pax_header_is_refused_before_tarfile_reads_it_whole():
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("a")
        info.pax_headers = {"comment": "z" * (3 * MB)}
        archive.addfile(info)
    refused = refused_quickly_and_small(out.getvalue(), max_bytes=10 * MB)
    assert refused.status == 400 and "extended header" in refused.message


def test_a_symlink_loop_reaches_nothing_and_is_kept():
    tree = normalize(tar_of(symlink("a", "b"), symlink("b", "a"), file("c")), **BIG)
    assert [m.name for m in members_of(tree).values() if m.issym()] == ["a", "b"]


def test_importing_the_module_loads_no_restate_and_no_service():
    """app.repo is pure code the import handler calls: loading it must not drag in the SDK."""
    loaded = subprocess.run([sys.executable, "-c", "import sys, app.repo.archives; print(*sorted(sys.modules))"],
                            capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent).stdout.split()
    ours = {name for name in loaded if name.split(".")[0] in ("app", "restate", "sandbox")}
    assert ours == {"app", "app.repo", "app.repo.archives"}
