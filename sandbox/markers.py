"""Markers: small named records a local sandbox keeps outside its workspace.

They live in `<root>/<name>/markers/`, next to the workspace but never bound into
bubblewrap, so no command can see, delete or rewrite them (`git clean -fdx`, `rm -rf /project/*`).
Each is written to a temporary file and renamed into place, so a reader sees the old record
or the new one, never a part. Snapshots carry them (sandbox/archive.py).
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from sandbox.limits import MB

NAME = re.compile(r"[A-Za-z0-9._~-]{1,200}")
MAX_BYTES = MB
_TMP_PREFIX = "+"  # not a marker name character, so a write in progress is never a marker


def is_name(name: str) -> bool:
    return isinstance(name, str) and NAME.fullmatch(name) is not None and name not in (".", "..")


def check_name(name: str) -> str:
    """`name`, or ValueError if it is not a marker name (see SandboxBackend.write_marker)."""
    if not is_name(name):
        raise ValueError(f"marker names are 1-200 characters of [A-Za-z0-9._~-], not {name!r}")
    return name


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or (prefix and not NAME.fullmatch(prefix)):
        raise ValueError(f"a marker prefix is up to 200 characters of [A-Za-z0-9._~-], not {prefix!r}")
    return prefix


def names(directory: Path) -> list[str]:
    """The markers in `directory`, sorted (none if it does not exist)."""
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(n for n in entries if is_name(n))


def write(directory: Path, name: str, data: str, durable: bool = True) -> None:
    """Write the marker atomically (temporary file, rename). `durable`: fsync it first, so a
    host crash cannot leave it empty; a process that dies never can (the page cache stays)."""
    tmp = _spool(directory, name, data, durable)
    try:
        os.replace(tmp, directory / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create(directory: Path, name: str, data: str) -> bool:
    """Write the marker durably only if there is none of that name: True if this call made it.
    A hard link never replaces its target, so of two concurrent creates exactly one wins, and
    the record it places is already whole."""
    tmp = _spool(directory, name, data, durable=True)
    try:
        os.link(tmp, directory / name)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _spool(directory: Path, name: str, data: str, durable: bool) -> Path:
    """The marker's content in a temporary file of `directory`, ready to be put in place."""
    check_name(name)
    raw = data.encode()
    if len(raw) > MAX_BYTES:
        raise ValueError(f"marker {name!r} is {len(raw)} bytes; at most {MAX_BYTES} are kept")
    directory.mkdir(mode=0o700, exist_ok=True)
    tmp = directory / f"{_TMP_PREFIX}{secrets.token_hex(6)}"
    try:
        with open(tmp, "xb") as f:
            f.write(raw)
            if durable:
                f.flush()
                os.fsync(f.fileno())  # a record that survives a host crash is whole, not empty
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def read(directory: Path, name: str) -> str | None:
    try:
        return (directory / check_name(name)).read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None


def delete(directory: Path, prefix: str) -> int:
    """Delete the markers whose name starts with `prefix`; how many went."""
    check_prefix(prefix)
    gone = 0
    for name in names(directory):
        if name.startswith(prefix):
            try:
                (directory / name).unlink()
                gone += 1
            except FileNotFoundError:
                pass  # a concurrent delete got it first
    return gone
