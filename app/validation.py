"""Parse raw handler input into a pydantic model, with a 400 the caller can read.

The SDK answers a failed typed-input parse with a 500, so public handlers take raw bytes
and validate here, in one helper, instead of relying on the SDK's parser.
"""

from __future__ import annotations

import re
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from app.errors import bad_request

M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 1_000_000
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse(raw: bytes | None, model: type[M], max_bytes: int = MAX_BODY_BYTES) -> M:
    body = raw or b"{}"
    if len(body) > max_bytes:
        raise bad_request(f"request body is {len(body)} bytes; the limit is {max_bytes}")
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        problems = "; ".join(_describe(e) for e in error.errors(include_url=False))
        raise bad_request(f"invalid {model.__name__}: {problems}") from None


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error.get("loc", ())) or "body"
    if error.get("type") == "json_invalid":
        return f"malformed JSON ({error.get('ctx', {}).get('error', 'parse error')})"
    return f"{where}: {error.get('msg', 'invalid')}"


def check_key(key: str, what: str = "session id") -> str:
    """Keys become directory and sandbox names, so they are restricted to a safe alphabet."""
    if not _KEY.match(key):
        raise bad_request(f"invalid {what} {key!r}: use 1-64 letters, digits, '_', '-' or '.'")
    return key


WORKSPACE = "/project"


def workspace_relative(path: str) -> str:
    """Accept the workspace's own absolute spelling (`/project/x`) as the relative `x`.

    Commands run with /project as their working directory, so models and users naturally
    write it; every other absolute path is still refused by the backend.
    """
    if path == WORKSPACE or path == WORKSPACE + "/":
        return "."
    if path.startswith(WORKSPACE + "/"):
        return path[len(WORKSPACE) + 1:]
    return path
