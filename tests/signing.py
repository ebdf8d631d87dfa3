"""Sign a request the way Restate does, to check what the worker accepts and refuses.

Restate's scheme v1: an EdDSA JWT in `x-restate-jwt-v1` whose audience is the request's path
(`/discover`, `/invoke/<service>/<handler>`), valid from now for a minute, and the header
`x-restate-signature-scheme: v1`.
"""

from __future__ import annotations

import base64
import json
import time

from stack.identity import load_private_key


def signed_headers(private_key_pem: bytes, path: str, now: float | None = None) -> dict[str, str]:
    """The two headers that sign a request to `path` with `private_key_pem`."""
    issued = int(now if now is not None else time.time())
    header = {"alg": "EdDSA", "typ": "JWT"}
    claims = {"aud": path, "iat": issued, "nbf": issued - 1, "exp": issued + 60}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = load_private_key(private_key_pem).sign(signing_input.encode())
    return {"x-restate-signature-scheme": "v1", "x-restate-jwt-v1": f"{signing_input}.{_b64(signature)}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
