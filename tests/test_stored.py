"""Stored shapes across versions: state a real run of an earlier version recorded
(tests/fixtures/stored/, made by `python -m tests.record_stored`) is read by the current code,
and the migration mechanism (app/stored.py) upgrades or refuses what it must."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from app.events import LogMeta, Page
from app.models import Checkpoints, Exports, History, LastTask, PendingApprovals, RunningTask, SandboxState, Source
from app.stored import Stored

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "stored").glob("*.json"))
READERS: dict[tuple[str, str], Any] = {
    ("Agent", "history"): History, ("Agent", "last"): LastTask, ("Agent", "current"): RunningTask,
    ("Agent", "checkpoints"): Checkpoints, ("Agent", "approvals"): PendingApprovals, ("Agent", "source"): Source,
    ("Agent", "exports"): Exports, ("Sandbox", "state"): SandboxState, ("Events", "meta"): LogMeta,
    ("Events", "page"): Page, ("Snapshots", "holders"): list[str], ("Snapshots", "deleted"): bool,
    ("SessionOwner", "owner"): str,
}


def reader(service: str, name: str) -> Any:
    return READERS[(service, name.split(":")[0])]


def contained(recorded: Any, now: Any) -> bool:
    """Whether everything `recorded` says is still said by `now` (which may say more)."""
    if isinstance(recorded, dict):
        return isinstance(now, dict) and all(k in now and contained(v, now[k]) for k, v in recorded.items())
    if isinstance(recorded, list):
        return isinstance(now, list) and len(recorded) == len(now) and all(map(contained, recorded, now))
    return recorded == now


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.stem for f in FIXTURES])
def test_state_an_earlier_version_wrote_reads_whole_with_the_current_shapes(fixture: Path) -> None:
    rows = json.loads(fixture.read_text())["state"]
    assert rows, fixture
    for row in rows:
        shape = reader(row["service"], row["name"])
        value = TypeAdapter(shape).validate_json(row["value"])
        again = json.loads(TypeAdapter(shape).dump_json(value))
        assert contained(json.loads(row["value"]), again), (row["service"], row["name"])


def test_every_state_key_the_code_reads_has_a_reader_here_and_a_stored_shape() -> None:
    read = set()
    for path in (ROOT / "app").glob("*.py"):
        for name, model in re.findall(r'load\(ctx, f?"([a-z_]+)[^"]*", ([A-Za-z]+)\)', path.read_text()):
            read.add((name, model))
    assert read, "the code reads its state through app.stored.load"
    known = {(name, shape.__name__) for (_, name), shape in READERS.items() if isinstance(shape, type)}
    assert read <= known, read - known
    for _, shape in READERS.items():
        if isinstance(shape, type) and issubclass(shape, BaseModel):
            assert issubclass(shape, Stored), shape


class Note(Stored):
    """A shape that moved on twice: `text` was `body` (shape 0 → 1), then `tags` became a list (1 → 2)."""

    SHAPE: ClassVar[int] = 2
    MIGRATIONS = (
        lambda d: {**{k: v for k, v in d.items() if k != "body"}, "text": d.get("body", "")},
        lambda d: {**d, "tags": [t for t in d.get("tags", "").split(",") if t]},
    )
    text: str
    tags: list[str] = []


def test_an_older_shape_is_upgraded_as_it_is_read_and_written_back_as_the_new() -> None:
    assert Note.model_validate_json('{"body": "hi", "tags": "a,b"}') == Note(text="hi", tags=["a", "b"])
    assert Note.model_validate_json('{"shape": 1, "text": "hi", "tags": "a"}').tags == ["a"]
    assert json.loads(Note(text="x").model_dump_json()) == {"shape": 2, "text": "x", "tags": []}


def test_a_shape_newer_than_the_code_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="newer than this code reads"):
        Note.model_validate_json('{"shape": 3, "text": "from the future"}')


def test_shape_zero_is_written_as_before_so_older_code_reads_it() -> None:
    assert "shape" not in json.loads(Source(kind="archive", files=1, bytes=1, checkpoint="c").model_dump_json())
