"""Writes a benchmark workspace of a given size: 70 % of the bytes source-like text, 30 % random.

The text is Python-ish tokens (keywords, punctuation, indentation and a few thousand
identifiers) in files of 2–24 kB, 100 to a directory, like a source tree; it compresses
several times over, as code does. The rest is random bytes in files of up to 1 MB, which do
not compress at all, like build outputs or data files. Seeded, so every run writes the same.

It runs inside the sandbox, as the sandbox user (see `command()`), so it uses only the
standard library.
"""

import array
import os
import random

TEXT_SHARE = 0.7
BLOB_BYTES = 1 << 20


def populate(root: str, total: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    text_target, written, n = int(total * TEXT_SHARE), 0, 0
    while written < text_target:
        data = _source(rng, vocab, min(rng.randint(2_000, 24_000), text_target - written))
        _write(os.path.join(root, "src", f"pkg{n // 100:03d}", f"mod{n % 100:02d}.py"), data)
        written, n = written + len(data), n + 1
    blobs = 0
    while written < total:
        data = rng.randbytes(min(BLOB_BYTES, total - written))
        _write(os.path.join(root, "data", f"blob{blobs:03d}.bin"), data)
        written, blobs = written + len(data), blobs + 1


def _vocabulary(rng: random.Random) -> list[bytes]:
    """4096 tokens: frequent keywords and punctuation, then random identifiers."""
    common = (b"def return if else: elif for in while import from class self None True False "
              b"( ) : = + - == , . [ ] { } 0 1").split() + [b"\n", b"\n    ", b"\n        ", b"\n\n"]
    letters = "abcdefghijklmnopqrstuvwxyz_"
    names = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 12))).encode()
             for _ in range(4096 - 30 * len(common))]
    return common * 30 + names


def _source(rng: random.Random, vocab: list[bytes], size: int) -> bytes:
    picks = array.array("H", rng.randbytes(2 * (size // 4 + 1)))
    return b" ".join([vocab[i & 4095] for i in picks])[:size]


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def command(total: int) -> str:
    """A shell command that writes this workspace into the current directory."""
    with open(__file__, encoding="utf-8") as f:
        source = f.read()
    return f"python3 - <<'EOF'\n{source}\npopulate('.', {total})\nEOF\n"
