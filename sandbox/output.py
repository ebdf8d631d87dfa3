"""Capped capture of a command's output.

The model sees the head and the tail of each stream around a marker. The full stream is
spooled to an anonymous temporary file (nothing to clean up after a crash) up to a hard cap,
past which it is read and thrown away, so a 100 MB print costs neither memory nor a stall.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import tempfile
import time
from collections.abc import AsyncIterable, Iterator
from pathlib import Path
from typing import IO

from sandbox.protocol import ExecResult

_CHUNK = 1 << 16
TIMEOUT_EXIT_CODE = 124  # like coreutils `timeout`
OUTPUTS_DIR = ".agent/outputs"  # where truncated output is saved, inside the workspace
KEEP_OUTPUTS = 20  # saved full outputs kept in OUTPUTS_DIR; older ones are deleted
OUTPUT_NAME = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}\.log")  # the names full_log_path gives


class StreamCapture:
    def __init__(self, head_bytes: int, tail_bytes: int, hard_cap: int, spool_dir: Path) -> None:
        self._head_limit, self._tail_limit, self._hard_cap = head_bytes, tail_bytes, hard_cap
        self._spool_dir = spool_dir
        self._all = bytearray()  # everything, while it still fits in head + tail
        self._head = b""
        self._tail = bytearray()
        self._spool: IO[bytes] | None = None
        self.total = 0  # bytes the command wrote, kept or not
        self.spooled = 0  # bytes in the spool file

    @property
    def truncated(self) -> bool:
        return self._spool is not None

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self._spool is None:
            if len(self._all) + len(chunk) <= self._head_limit + self._tail_limit:
                self._all += chunk
                return
            # First overflow: everything so far is still in memory, so the spool starts complete.
            self._spool = tempfile.TemporaryFile(dir=self._spool_dir)
            chunk, self._all = bytes(self._all) + chunk, bytearray()
            self._head, chunk = chunk[: self._head_limit], chunk[self._head_limit:]
            self._write_spool(self._head)
        self._write_spool(chunk)
        if self._tail_limit:
            self._tail += chunk
            del self._tail[: -self._tail_limit]

    def _write_spool(self, data: bytes) -> None:
        assert self._spool is not None
        room = self._hard_cap - self.spooled
        if room > 0 and data:
            self._spool.write(data[:room])
            self.spooled += min(room, len(data))

    def text(self, where: str) -> str:
        """What the model sees; `where` says where the full output went (used when truncated)."""
        if self._spool is None:
            return self._all.decode("utf-8", errors="replace")
        omitted = self.total - len(self._head) - len(self._tail)
        return (self._head.decode("utf-8", errors="replace")
                + f"\n... [{omitted} bytes omitted; {where}] ...\n"
                + self._tail.decode("utf-8", errors="replace"))

    def full(self) -> Iterator[bytes]:
        """The kept output: all of it, or the first `hard_cap` bytes when it was longer."""
        if self._spool is None:
            yield bytes(self._all)
            return
        self._spool.flush()
        self._spool.seek(0)
        while chunk := self._spool.read(1 << 20):
            yield chunk

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()


async def pump(stream: asyncio.StreamReader | AsyncIterable[bytes], capture: StreamCapture) -> None:
    """Read a stream to its end: a pipe, or any async iterable of chunks (a Modal process's
    output). Never stops early: a writer must not block on a full pipe."""
    if isinstance(stream, asyncio.StreamReader):  # iterating one would split it into lines
        while chunk := await stream.read(_CHUNK):
            capture.feed(chunk)
    else:
        async for chunk in stream:
            capture.feed(chunk)


def full_log(command: str, stdout: StreamCapture, stderr: StreamCapture) -> Iterator[bytes]:
    """The file saved in the workspace when output was truncated."""
    yield f"$ {command}\n".encode()
    for name, capture in (("stdout", stdout), ("stderr", stderr)):
        kept = "" if capture.spooled >= capture.total or not capture.truncated else (
            f", only the first {capture.spooled} kept")
        yield f"--- {name} ({capture.total} bytes{kept}) ---\n".encode()
        yield from capture.full()
        yield b"\n"


def full_log_path() -> str:
    """A fresh workspace-relative path for a truncated command's full output. Once it is
    saved, a backend deletes all but the newest KEEP_OUTPUTS files named like OUTPUT_NAME."""
    return f"{OUTPUTS_DIR}/{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}.log"


def exec_result(exit_code: int, out: StreamCapture, err: StreamCapture, *, timed_out: bool,
                saved_in: str | None, notes: list[str]) -> ExecResult:
    """What every backend returns: head and tail of each stream around a marker that says where
    the rest is (`saved_in`, or that it was not saved), and the sandbox's own `[sandbox]` notes
    appended to stderr."""

    def where(capture: StreamCapture) -> str:
        if not saved_in:
            return "full output not saved"
        if capture.spooled < capture.total:
            return f"the first {capture.spooled} bytes are in {saved_in}"
        return f"full output in {saved_in}"

    stderr = err.text(where(err))
    if notes:
        stderr += ("" if not stderr or stderr.endswith("\n") else "\n") + "".join(
            f"[sandbox] {n}\n" for n in notes)
    return ExecResult(exit_code=exit_code, stdout=out.text(where(out)), stderr=stderr,
                      truncated=out.truncated or err.truncated, timed_out=timed_out,
                      full_output_path=saved_in)
