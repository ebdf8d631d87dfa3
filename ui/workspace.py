"""The workspace as a .zip, built from the Sandbox's public read-only handlers.

The UI server never touches the sandbox's files directly: it lists them with `list_files` and
reads each one with `read_file`, through the ingress, like any other client. `read_file` returns
text (UTF-8, undecodable bytes replaced) and at most 256 kB, so a file that is binary, larger
than that, unreadable, or not a regular file is not put in the zip as it is: it is named in
MANIFEST.txt inside the zip instead, with the reason. (The Sandbox's own operation records live
outside the workspace, so they never show up here.)
"""

from __future__ import annotations

import asyncio
import io
import zipfile

from ui.ingress import Answer, Ingress

MAX_READ_BYTES = 256_000  # app.sandbox_service.MAX_READ_BYTES: read_file returns no more
MAX_ZIP_BYTES = 64_000_000  # stop adding files past this much content
READERS = 4  # read_file calls in flight at once


async def workspace_zip(ingress: Ingress, session: str) -> tuple[bytes, None] | tuple[None, Answer]:
    """(zip bytes, None), or (None, the ingress's error) when the workspace cannot be listed."""
    listing = await ingress.call("Sandbox", session, "list_files", {"path": "."})
    if not listing.ok:
        return None, listing
    entries = listing.json()["entries"]
    skipped: list[str] = []
    files = []
    for entry in entries:
        if entry["kind"] == "dir":
            continue
        if entry["kind"] != "file":
            skipped.append(f"{entry['path']}: a {entry['kind']}, not a regular file")
        elif entry["size"] > MAX_READ_BYTES:
            skipped.append(f"{entry['path']}: {entry['size']} bytes, more than read_file returns "
                           f"({MAX_READ_BYTES})")
        else:
            files.append(entry)

    gate = asyncio.Semaphore(READERS)

    async def read(path: str) -> Answer:
        async with gate:
            return await ingress.call("Sandbox", session, "read_file", {"path": path})

    answers = await asyncio.gather(*(read(f["path"]) for f in files))
    buffer = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry, answer in zip(files, answers):
            if not answer.ok:
                skipped.append(f"{entry['path']}: could not be read ({answer.status}: "
                               f"{answer.body[:200].decode(errors='replace')})")
                continue
            content: str = answer.json()["content"]
            if "\ufffd" in content:
                skipped.append(f"{entry['path']}: not UTF-8 text (binary?); read_file cannot return it intact")
                continue
            data = content.encode()
            if total + len(data) > MAX_ZIP_BYTES:
                skipped.append(f"{entry['path']}: left out, the zip reached {MAX_ZIP_BYTES} bytes")
                continue
            total += len(data)
            archive.writestr(entry["path"], data)
        if skipped or len(entries) >= 2_000:
            lines = ["These workspace entries are not in this zip:", "", *skipped]
            if len(entries) >= 2_000:
                lines += ["", "The listing stopped at 2,000 entries; deeper files may be missing."]
            taken = {f["path"] for f in files}
            note = "MANIFEST.txt" if "MANIFEST.txt" not in taken else "MANIFEST.workspace-ui.txt"
            archive.writestr(note, "\n".join(lines) + "\n")
    return buffer.getvalue(), None
