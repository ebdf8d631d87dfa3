"""Snapshot archives as restore_snapshot reads them: what it refuses to put on disk."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import zstandard

from sandbox.archive import MARKERS, WORKSPACE, restore_snapshot


def layered_archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"durable-agent.layout": "2"}) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    path.write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()))
    return path


def entry(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


def test_hard_links_are_never_restored_even_when_their_target_looks_inside(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    archive = layered_archive(tmp_path / "snap.tar.zst", [
        (entry(WORKSPACE, tarfile.DIRTYPE), None),
        (entry(f"{WORKSPACE}/ok.txt"), b"fine"),
        (entry(f"{MARKERS}/m1"), b"marker"),
        # A prefix check passes each of these; every one climbs out of the workspace.
        (entry(f"{WORKSPACE}/into-markers", tarfile.LNKTYPE, f"{WORKSPACE}/../{MARKERS}/m1"), None),
        (entry(f"{WORKSPACE}/out", tarfile.LNKTYPE, f"{WORKSPACE}/../../outside.txt"), None),
        (entry(f"{WORKSPACE}/inside", tarfile.LNKTYPE, f"{WORKSPACE}/ok.txt"), None),
        (entry(f"{WORKSPACE}/link", tarfile.SYMTYPE, "ok.txt"), None),
    ])
    dest = tmp_path / "dest"
    dest.mkdir()
    restore_snapshot(archive, dest, (os.geteuid(), os.getegid()))

    workspace = dest / WORKSPACE
    assert sorted(p.name for p in workspace.iterdir()) == ["link", "ok.txt"]
    assert (workspace / "ok.txt").read_text() == "fine" and os.readlink(workspace / "link") == "ok.txt"
    assert (dest / MARKERS / "m1").stat().st_nlink == 1 and outside.stat().st_nlink == 1
