"""Shapes that outlive a deployment: state, and messages that wait (one-way sends, timers).

An upgrade runs new code against state the old code wrote, and delivers to it reports and
delayed self-calls the old code sent. Each such shape derives from `Stored`, which carries its
version and upgrades what an older version wrote as it is read:

- a change an older reader or writer would trip on (a field renamed, removed, made required,
  or its meaning or type changed) bumps the class's `SHAPE` and appends the step from the
  previous shape to `MIGRATIONS` (a function from the old dict to the new one);
- a field added with a default needs neither: older data lacks it and gets the default, and
  older code ignores it (pydantic ignores unknown fields).

The version is written only once it is above 0, so the shapes of before this module read and
write as they did. What is read from JSON (state, a message) without a version is of shape 0;
what this code constructs is of its own shape. A shape newer than the code (a rollback), or one no migration explains, is
refused by `load` with a TerminalError naming the key: the invocation fails with the reason,
where a ValidationError would be retried forever and wedge the object's key.
`tests/test_stored.py` reads the state a real run of an earlier version recorded
(tests/fixtures/stored/) with the current shapes.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, TypeVar

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, model_validator
from restate import ObjectContext, ObjectSharedContext, TerminalError

S = TypeVar("S", bound="Stored")
Migration = Callable[[dict[str, Any]], dict[str, Any]]


class Stored(BaseModel):
    SHAPE: ClassVar[int] = 0
    MIGRATIONS: ClassVar[tuple[Migration, ...]] = ()  # MIGRATIONS[n] turns shape n into shape n + 1

    shape: int = Field(default=0, exclude_if=lambda v: v == 0)

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        # Read from JSON (state, a message): no `shape` is the shape before versions, 0. Made in
        # Python (this code's own constructor calls): no `shape` is this code's.
        found = data.get("shape", 0 if info.mode == "json" else cls.SHAPE)
        if not isinstance(found, int) or found > cls.SHAPE:
            raise ValueError(f"{cls.__name__} of shape {found!r} is newer than this code reads "
                             f"(shape {cls.SHAPE}): was the code rolled back past a change?")
        if len(cls.MIGRATIONS) != cls.SHAPE:
            raise TypeError(f"{cls.__name__}: SHAPE {cls.SHAPE} needs {cls.SHAPE} migrations, "
                            f"not {len(cls.MIGRATIONS)}")
        for step in cls.MIGRATIONS[found:]:
            data = step(dict(data))
        return {**data, "shape": cls.SHAPE}


async def load(ctx: ObjectContext | ObjectSharedContext, key: str, model: type[S]) -> S | None:
    """State `key` as `model`, upgraded from the shape it was written in; a TerminalError (500)
    that names the key when it cannot be read, never a retry that can only fail again."""
    try:
        return await ctx.get(key, type_hint=model)
    except ValidationError as error:
        raise TerminalError(
            f"state {key!r} of {ctx.key()!r} cannot be read as {model.__name__}: {error.errors(include_url=False)[:3]}; "
            "a change of its shape needs a migration (app/stored.py)", status_code=500) from None
