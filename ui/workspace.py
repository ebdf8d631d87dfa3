"""The workspace as a .zip, built from the Sandbox's public read-only handlers and sent as it is made.

The UI server never touches the sandbox's files directly: it lists them with `list_files` and
reads each one with `read_file`, through the ingress, like any other client. `read_file` returns
text (UTF-8, undecodable bytes replaced) and at most 256 kB, so a file that is binary, larger
than that, unreadable, or not a regular file is not put in the zip as it is: it is named in
MANIFEST.txt inside the zip instead, with the reason. (The Sandbox's own operation records live
outside the workspace, so they never show up here.)

The zip is streamed: each file goes out as soon as it is read, a few reads ahead at most, and a
file the listing says would pass MAX_ZIP_BYTES is not read at all. So the server holds a few
files at a time, never the whole workspace.
"""

from __future__ import annotations

import asyncio
import zipfile
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ui.ingress import Answer, Ingress

MAX_READ_BYTES = 256_000  # app.sandbox_service.MAX_READ_BYTES: read_file returns no more
MAX_ZIP_BYTES = 64_000_000  # leave files out past this much content
READERS = 4  # read_file calls in flight at once
LISTING_LIMIT = 2_000  # list_files returns no more entries


async def workspace_zip(ingress: Ingress, session: str
                        ) -> tuple[AsyncIterator[bytes], None] | tuple[None, Answer]:
    """(the zip's bytes as they are made, None), or (None, the ingress's error) when the
    workspace cannot be listed: that answer can still be the response's own."""
    listing = await ingress.call("Sandbox", session, "list_files", {"path": "."})
    if not listing.ok:
        return None, listing
    return _zip(ingress, session, listing.json()["entries"]), None


class _Pending:
    """A write-only file for zipfile: it keeps what was written until the response takes it."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


async def _zip(ingress: Ingress, session: str, entries: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    skipped: list[str] = []
    files = list(_readable(entries, skipped))
    wanted, planned = [], 0
    for entry in files:  # by the listing's sizes: what would pass the cap is never read
        if planned + entry["size"] > MAX_ZIP_BYTES:
            skipped.append(f"{entry['path']}: left out, the zip reached {MAX_ZIP_BYTES} bytes")
            continue
        planned += entry["size"]
        wanted.append(entry)
    pending = _Pending()
    total = 0
    with zipfile.ZipFile(pending, "w", zipfile.ZIP_DEFLATED) as archive:  # type: ignore[arg-type]
        async for entry, answer in _read_in_order(ingress, session, wanted):
            data = _content(entry, answer, skipped)
            if data is None:
                continue
            if total + len(data) > MAX_ZIP_BYTES:  # grown since it was listed
                skipped.append(f"{entry['path']}: left out, the zip reached {MAX_ZIP_BYTES} bytes")
                continue
            total += len(data)
            archive.writestr(entry["path"], data)
            yield pending.take()
        if skipped or len(entries) >= LISTING_LIMIT:
            lines = ["These workspace entries are not in this zip:", "", *skipped]
            if len(entries) >= LISTING_LIMIT:
                lines += ["", "The listing stopped at 2,000 entries; deeper files may be missing."]
            taken = {f["path"] for f in files}
            note = "MANIFEST.txt" if "MANIFEST.txt" not in taken else "MANIFEST.workspace-ui.txt"
            archive.writestr(note, "\n".join(lines) + "\n")
    yield pending.take()


def _readable(entries: list[dict[str, Any]], skipped: list[str]) -> Iterator[dict[str, Any]]:
    """The entries read_file can return whole; the others are named in `skipped`."""
    for entry in entries:
        if entry["kind"] == "dir":
            continue
        if entry["kind"] != "file":
            skipped.append(f"{entry['path']}: a {entry['kind']}, not a regular file")
        elif entry["size"] > MAX_READ_BYTES:
            skipped.append(f"{entry['path']}: {entry['size']} bytes, more than read_file returns "
                           f"({MAX_READ_BYTES})")
        else:
            yield entry


async def _read_in_order(ingress: Ingress, session: str, files: list[dict[str, Any]]
                         ) -> AsyncIterator[tuple[dict[str, Any], Answer]]:
    """Each file's read_file answer, in order, with at most READERS reads in flight."""
    ahead: deque[tuple[dict[str, Any], asyncio.Task[Answer]]] = deque()
    remaining = iter(files)

    def read_next() -> None:
        entry = next(remaining, None)
        if entry is not None:
            ahead.append((entry, asyncio.ensure_future(
                ingress.call("Sandbox", session, "read_file", {"path": entry["path"]}))))

    for _ in range(READERS):
        read_next()
    try:
        while ahead:
            entry, reading = ahead.popleft()
            answer = await reading
            read_next()
            yield entry, answer
    finally:  # the download was abandoned: stop reading for it
        for _, reading in ahead:
            reading.cancel()


def _content(entry: dict[str, Any], answer: Answer, skipped: list[str]) -> bytes | None:
    """The file's bytes, or None (and why, in `skipped`) when they cannot go in as they are."""
    if not answer.ok:
        skipped.append(f"{entry['path']}: could not be read ({answer.status}: "
                       f"{answer.body[:200].decode(errors='replace')})")
        return None
    content: str = answer.json()["content"]
    if "\ufffd" in content:
        skipped.append(f"{entry['path']}: not UTF-8 text (binary?); read_file cannot return it intact")
        return None
    return content.encode()
