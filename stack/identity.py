"""Signed requests: the ED25519 key pair with which Restate proves that a request came from it.

Restate signs every request it sends to a deployment with its private key (a JWT in the
`x-restate-jwt-v1` header, scheme `x-restate-signature-scheme: v1`); the worker is given the
public key and refuses, with 401, any request that is not signed with it. Without that, anyone
who can reach the worker's port could run handlers directly, around Restate's journal.

The private key is a PKCS#8 PEM file (what `openssl genpkey -algorithm ed25519` writes), kept
in the data dir with mode 0600; restate-server reads it from
`RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE`. The public key is given to the worker as
`WORKER_IDENTITY_KEYS` in Restate's compact format, `publickeyv1_` followed by the base58 of
the 32 raw key bytes (the SDK's verifier parses exactly that).

`python -m stack run`, the test harness and the cluster mode all get their key pair here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_FILE_NAME = "request-identity.pem"
PUBLIC_KEY_PREFIX = "publickeyv1_"
_BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@dataclass(frozen=True)
class RequestIdentity:
    """A key pair: the private key's file (for Restate) and the public key (for the worker)."""

    private_key_file: Path
    public_key: str

    def restate_env(self) -> dict[str, str]:
        """What restate-server needs in its environment to sign its requests."""
        return {"RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE": str(self.private_key_file)}

    def worker_env(self) -> dict[str, str]:
        """What the worker needs in its environment to refuse requests not signed by Restate."""
        return {"WORKER_IDENTITY_KEYS": self.public_key}


def ensure_identity(directory: Path) -> RequestIdentity:
    """The key pair kept in `directory`, generated on first use.

    Kept, not regenerated: the key is part of the deployment's configuration, and a worker
    started with the old public key must keep accepting the server's requests.
    """
    path = directory / KEY_FILE_NAME
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        _write_private(path, generate_private_key_pem())
    return RequestIdentity(path.resolve(), public_key_of(path.read_bytes()))


def generate_private_key_pem() -> bytes:
    """A new ED25519 private key as unencrypted PKCS#8 PEM."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """The ED25519 private key in a PEM file; anything else is refused with a ValueError."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"expected an ED25519 private key, got {type(key).__name__}")
    return key


def public_key_of(pem: bytes) -> str:
    """The public key of a PEM private key, in Restate's `publickeyv1_<base58>` format."""
    raw = load_private_key(pem).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base58(raw)


def base58(data: bytes) -> str:
    """Bitcoin-alphabet base58, as Restate's key format uses (leading zero bytes become '1')."""
    number = int.from_bytes(data, "big")
    digits = ""
    while number:
        number, remainder = divmod(number, 58)
        digits = _BASE58_ALPHABET[remainder] + digits
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + digits


def _write_private(path: Path, pem: bytes) -> None:
    """Write `pem` readable by its owner only, never visible half-written or world-readable."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
