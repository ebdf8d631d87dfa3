"""Parse raw handler input into a pydantic model, with a 400 the caller can read.

The SDK answers a failed typed-input parse with a 500, so public handlers take raw bytes
and validate here, in one helper, instead of relying on the SDK's parser.
"""

from __future__ import annotations

import json
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
        raise bad_request(f"invalid {model.__name__}: {describe_errors(error)}") from None


def describe_errors(error: ValidationError) -> str:
    """pydantic's errors in one line a person (or a model) can act on: `where: what; ...`."""
    return "; ".join(_describe(e) for e in error.errors(include_url=False))


def no_input(raw: bytes | None) -> None:
    """For a handler that takes no input: accept an empty body, `{}` or `null` (many clients
    always send a JSON body), and refuse anything else with a 400."""
    body = (raw or b"").strip()
    if body in (b"", b"{}", b"null"):
        return
    try:
        value = json.loads(body)
    except ValueError:
        raise bad_request("malformed JSON; this handler takes no input (send nothing or {})") from None
    if value != {}:
        raise bad_request("this handler takes no input (send nothing or {})")


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error.get("loc", ())) or "input"
    if error.get("type") == "json_invalid":
        return f"malformed JSON ({error.get('ctx', {}).get('error', 'parse error')})"
    if error.get("type") == "value_error" and "error" in error.get("ctx", {}):
        return f"{where}: {error['ctx']['error']}"  # our own validator's words, without pydantic's "Value error, "
    return f"{where}: {error.get('msg', 'invalid')}"


def check_key(key: str, what: str = "session id") -> str:
    """Keys become directory and sandbox names, so they are restricted to a safe alphabet."""
    if not _KEY.fullmatch(key):  # not match: `$` would let a trailing newline through
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
