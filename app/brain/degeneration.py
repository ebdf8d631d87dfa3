"""Watching a streamed model answer for degeneration, so that a round that degenerates is cut.

A small model decoding greedily can fall into a loop: the embedded 1.5B once streamed backslashes
for 4.7 minutes, until its token limit. A `Watch` is fed the answer as it streams and says when
to cut it:

- a loop: the end of the answer is one unit over and over (a run of backslashes, the same line
  again and again), long enough that no code a person would keep looks like it;
- no end: the answer has run longer than a bound, in characters, or in seconds since its first
  text, without finishing (an answer is one tool call, or a few, so this is also "no complete
  call within the bound").

Pure and in-process: no I/O, and the clock is passed in. The caller (app/llm.py) owns the
stream, stops it on a cut, and retries the round once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

# A loop of short units (up to SPAN / MIN_REPEATS = 33 characters: a backslash, `0, `, a short
# line) is cut once it covers the last SPAN characters, about 5 s of the 1.5B's output. Real
# code repeats less: a 79-character row of `=`, a 9x9 board of zeros (333 characters).
SPAN = 400
# A longer unit (a line, a few lines, up to MAX_UNIT characters) must come MIN_REPEATS times in a
# row: real code has near-repeats (similar assertions, similar dict rows), not twelve exact ones.
MIN_REPEATS = 12
MAX_UNIT = 200  # a longer loop is left to the bounds (at most 2,400 characters to see 12 of them)
CHECK_EVERY = 32  # characters between two loop checks: a cut comes that much later, for 1/32 the work
_TAIL = max(SPAN, MIN_REPEATS * MAX_UNIT) + MAX_UNIT  # the most of the answer a check looks at

MAX_CHARS = 50_000  # no answer a round needs is longer (a whole file is a few thousand characters)
# The embedded model's generation time for one round (its first text to its last, both attempts
# together): 90 s of the 1.5B on 2 threads is about 2,000 tokens, its whole answer limit.
OFFLINE_MAX_SECONDS = 90.0


@dataclass(frozen=True)
class Bounds:
    """How long an answer may run before it is cut; None: no bound of that kind."""

    max_chars: int | None = MAX_CHARS
    max_seconds: float | None = None


@dataclass(frozen=True)
class Cut:
    """Why an answer was cut: `reason` says what the answer did, in words for the model."""

    kind: Literal["loop", "no_end"]
    reason: str


class Watch:
    """One answer's watcher: `feed` it each streamed piece of text; a `Cut` means stop."""

    def __init__(self, bounds: Bounds = Bounds(), clock: Callable[[], float] = time.monotonic) -> None:
        self.bounds = bounds
        self._clock = clock
        self._started: float | None = None  # the first text, not the request: prompt time is no loop
        self._tail = ""
        self._chars = 0
        self._unchecked = 0

    @property
    def seconds(self) -> float:
        """How long the answer has been streaming, from its first text."""
        return 0.0 if self._started is None else self._clock() - self._started

    def feed(self, text: str) -> Cut | None:
        if not text:
            return None
        if self._started is None:
            self._started = self._clock()
        self._tail = (self._tail + text)[-_TAIL:]
        self._chars += len(text)
        self._unchecked += len(text)
        if self._unchecked >= CHECK_EVERY:
            self._unchecked = 0
            if (unit := repeating_unit(self._tail)) is not None:
                return Cut("loop", f"it repeated {_shown(unit)} over and over")
        if self.bounds.max_chars is not None and self._chars > self.bounds.max_chars:
            return Cut("no_end", f"it ran past {self.bounds.max_chars} characters without finishing")
        if self.bounds.max_seconds is not None and self.seconds > self.bounds.max_seconds:
            return Cut("no_end", f"it ran past {self.bounds.max_seconds:.0f} seconds without finishing")
        return None


def repeating_unit(text: str) -> str | None:
    """The shortest unit that the end of `text` repeats often enough to be a loop, or None."""
    for size in range(1, MAX_UNIT + 1):
        cover = max(SPAN, MIN_REPEATS * size)  # grows with size, so the first too long ends it
        if len(text) < cover:
            return None
        # The last character first: most sizes fail that cheap look.
        if text[-1] == text[-1 - size] and text[-cover + size:] == text[-cover:-size]:
            return text[-size:]
    return None


def _shown(unit: str) -> str:
    return repr(unit if len(unit) <= 40 else unit[:40] + "…")
