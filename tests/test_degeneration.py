"""A round that degenerates is cut: the watcher cuts loops and answers with no end, never code.

The watcher (app/brain/degeneration.py) is tested in-process, fed text as a model streams it. The
model client (app/llm.py) is tested through the real `openai` client against the scripted server:
a looping answer is cut early and asked again, with other sampling.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator

import pytest

from app.brain.degeneration import MAX_CHARS, SPAN, Bounds, Cut, Watch, repeating_unit
from app.config import Settings
from app.llm import OFFLINE_RETRY, RETRY_TEMPERATURE, ModelClient
from app.models import ModelTurn
from tests.fakes.degeneration_scripts import FILE, LOOP, PIECE_DELAY_S
from tests.harness import ScriptedLLM

# --- code that must stream through untouched ------------------------------------------------------

REPORT_MODULE = '''"""
==============================================================================
report.py: monthly sales reports
==============================================================================

Usage::

    python report.py sales.csv --month 2024-03

The input is a CSV file with one sale per row.
"""

import argparse
import csv
from collections import defaultdict
from dataclasses import dataclass

MONTHS = {
    "01": "January",
    "02": "February",
    "03": "March",
    "04": "April",
    "05": "May",
    "06": "June",
    "07": "July",
    "08": "August",
    "09": "September",
    "10": "October",
    "11": "November",
    "12": "December",
}

STATUS_CODES = {
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass
class Sale:
    day: str
    region: str
    amount: float


def read_sales(path):
    with open(path, newline="") as f:
        return [Sale(row["day"], row["region"], float(row["amount"])) for row in csv.DictReader(f)]


def totals_by_region(sales, month):
    totals = defaultdict(float)
    for sale in sales:
        if sale.day.startswith(month):
            totals[sale.region] += sale.amount
    return dict(totals)


def render(totals, month):
    year, number = month.split("-")
    lines = [f"Sales for {MONTHS[number]} {year}", "=" * 40]
    for region, amount in sorted(totals.items(), key=lambda item: -item[1]):
        lines.append(f"{region:<20}{amount:>20.2f}")
    lines.append("-" * 40)
    lines.append(f"{'Total':<20}{sum(totals.values()):>20.2f}")
    return "\\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--month", required=True)
    args = parser.parse_args()
    print(render(totals_by_region(read_sales(args.path), args.month), args.month))


if __name__ == "__main__":
    main()
'''

ROMAN_TESTS = '''import unittest

from roman import from_roman, to_roman


class ToRomanTest(unittest.TestCase):
    def test_units(self):
        self.assertEqual(to_roman(1), "I")
        self.assertEqual(to_roman(2), "II")
        self.assertEqual(to_roman(3), "III")
        self.assertEqual(to_roman(4), "IV")
        self.assertEqual(to_roman(5), "V")
        self.assertEqual(to_roman(6), "VI")
        self.assertEqual(to_roman(7), "VII")
        self.assertEqual(to_roman(8), "VIII")
        self.assertEqual(to_roman(9), "IX")

    def test_tens(self):
        self.assertEqual(to_roman(10), "X")
        self.assertEqual(to_roman(20), "XX")
        self.assertEqual(to_roman(30), "XXX")
        self.assertEqual(to_roman(40), "XL")
        self.assertEqual(to_roman(50), "L")
        self.assertEqual(to_roman(90), "XC")

    def test_large(self):
        self.assertEqual(to_roman(1994), "MCMXCIV")
        self.assertEqual(to_roman(2024), "MMXXIV")
        self.assertEqual(to_roman(3999), "MMMCMXCIX")

    def test_out_of_range(self):
        with self.assertRaises(ValueError):
            to_roman(0)
        with self.assertRaises(ValueError):
            to_roman(-1)
        with self.assertRaises(ValueError):
            to_roman(4000)


class FromRomanTest(unittest.TestCase):
    def test_round_trip(self):
        for number in range(1, 4000):
            self.assertEqual(from_roman(to_roman(number)), number)

    def test_invalid(self):
        for text in ["", "IIII", "VV", "IC", "MMMM", "ABC"]:
            with self.subTest(text=text):
                with self.assertRaises(ValueError):
                    from_roman(text)


if __name__ == "__main__":
    unittest.main()
'''

SUDOKU = '''"""A sudoku solver by backtracking."""

EMPTY = [
    [0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0, 0],
]

PUZZLE = [
    [5, 3, 0, 0, 7, 0, 0, 0, 0],
    [6, 0, 0, 1, 9, 5, 0, 0, 0],
    [0, 9, 8, 0, 0, 0, 0, 6, 0],
    [8, 0, 0, 0, 6, 0, 0, 0, 3],
    [4, 0, 0, 8, 0, 3, 0, 0, 1],
    [7, 0, 0, 0, 2, 0, 0, 0, 6],
    [0, 6, 0, 0, 0, 0, 2, 8, 0],
    [0, 0, 0, 4, 1, 9, 0, 0, 5],
    [0, 0, 0, 0, 8, 0, 0, 7, 9],
]


def candidates(board, row, col):
    used = set(board[row]) | {board[r][col] for r in range(9)}
    top, left = 3 * (row // 3), 3 * (col // 3)
    used |= {board[r][c] for r in range(top, top + 3) for c in range(left, left + 3)}
    return [n for n in range(1, 10) if n not in used]


def solve(board):
    for row in range(9):
        for col in range(9):
            if board[row][col] == 0:
                for n in candidates(board, row, col):
                    board[row][col] = n
                    if solve(board):
                        return True
                board[row][col] = 0
                return False
    return True
'''

CSV_TESTS = '''import os
import tempfile
import unittest

from report import read_sales, render, totals_by_region

SALES = """day,region,amount
2024-03-01,north,100.00
2024-03-01,south,100.00
2024-03-02,north,100.00
2024-03-02,south,100.00
2024-03-03,north,100.00
2024-03-03,south,100.00
2024-04-01,north,50.00
"""


class ReportTest(unittest.TestCase):
    def setUp(self):
        handle, self.path = tempfile.mkstemp(suffix=".csv")
        with os.fdopen(handle, "w") as f:
            f.write(SALES)

    def tearDown(self):
        os.remove(self.path)

    def test_totals(self):
        totals = totals_by_region(read_sales(self.path), "2024-03")
        self.assertEqual(totals, {"north": 300.0, "south": 300.0})

    def test_other_month(self):
        totals = totals_by_region(read_sales(self.path), "2024-04")
        self.assertEqual(totals, {"north": 50.0})

    def test_render(self):
        text = render({"north": 300.0, "south": 300.0}, "2024-03")
        self.assertIn("March 2024", text)
        self.assertIn("=" * 40, text)
        self.assertIn("600.00", text)


if __name__ == "__main__":
    unittest.main()
'''

README = '''# wordfreq

Counts words.

| option      | default | meaning                           |
|-------------|---------|-----------------------------------|
| `--top N`   | 10      | show the N most frequent words    |
| `--min N`   | 1       | hide words seen fewer than N times|
| `--lower`   | off     | fold case before counting         |

----------------------------------------------------------------------------------------

```sh
$ python wordfreq.py < book.txt
the     1204
and      855
```
'''

SOURCES = {"report.py": REPORT_MODULE, "test_roman.py": ROMAN_TESTS, "sudoku.py": SUDOKU,
           "test_report.py": CSV_TESTS, "README.md": README}


def as_structured_call(path: str, content: str) -> str:
    """What a small model writes in structured mode: the file inside a JSON string."""
    return json.dumps({"tool": "write_file", "args": {"path": path, "content": content}}, indent=2)


def pieces(text: str, size: int = 4) -> Iterator[str]:
    """`text` as a model streams it, a token (a few characters) at a time."""
    for start in range(0, len(text), size):
        yield text[start:start + size]


def watch_all(text: str, watch: Watch | None = None) -> tuple[Cut | None, int]:
    """Feed `text` to a watch; the cut, if any, and how many characters had streamed by then."""
    watch = watch or Watch()
    streamed = 0
    for piece in pieces(text):
        streamed += len(piece)
        if (cut := watch.feed(piece)) is not None:
            return cut, streamed
    return None, streamed


@pytest.mark.parametrize("path", sorted(SOURCES))
def test_real_code_is_never_cut(path: str) -> None:
    assert watch_all(SOURCES[path]) == (None, len(SOURCES[path]))
    assert watch_all(as_structured_call(path, SOURCES[path]))[0] is None


def test_a_long_healthy_answer_is_not_cut() -> None:
    # Every file above, one after the other, as several calls in one answer, several times over
    # with other names: over 40 kB, the longest answer a round should need.
    answer = "\n".join(as_structured_call(f"v{n}/{path}", source)
                       for n in range(6) for path, source in SOURCES.items())
    assert 40_000 < len(answer) < MAX_CHARS
    assert watch_all(answer)[0] is None


# --- loops that must be cut ------------------------------------------------------------------------


def test_a_run_of_backslashes_is_cut_within_a_few_hundred_characters() -> None:
    cut, streamed = watch_all(LOOP)
    assert cut is not None and cut.kind == "loop"
    assert "'\\\\'" in cut.reason  # it names the unit: one backslash
    assert streamed < len("import re\n\nWORD = re.compile(r'[^") + SPAN + 40

    # The same inside a JSON string (structured mode), where each backslash is two.
    cut, streamed = watch_all(as_structured_call("wordfreq.py", LOOP[:5_000]))
    assert cut is not None and cut.kind == "loop" and streamed < 600


@pytest.mark.parametrize("name, loop", [
    ("a repeated line", '        self.assertEqual(word_freq("a a"), {"a": 2})\n'),
    ("a repeated block", "    def test_empty(self):\n        self.assertEqual(words(''), [])\n\n"),
    ("a repeated short unit", "0, "),
    ("a repeated pair of characters", "ab"),
    ("blank lines", "\n"),
    ("escaped blank lines", "\\n"),
])
def test_a_repeating_tail_is_cut(name: str, loop: str) -> None:
    start = SOURCES["test_roman.py"][:600]  # real code first: the loop starts mid-answer
    cut, streamed = watch_all(start + loop * (2_000 // len(loop) + 20))
    assert cut is not None and cut.kind == "loop", name
    # Soon: twelve times the unit, or SPAN characters of it, whichever is longer (and a check's stride).
    assert streamed - len(start) <= max(SPAN, 12 * len(loop)) + len(loop) + 40, (name, streamed)


def test_the_unit_is_the_shortest_one() -> None:
    assert repeating_unit("x = " + "ab" * 300) == "ab"
    assert repeating_unit("x = " + "ab" * 100) is None  # 200 characters: not yet a loop


# --- answers with no end ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_past_the_time_bound_is_cut_and_the_clock_starts_at_its_first_text() -> None:
    clock = Clock()
    watch = Watch(Bounds(max_seconds=90), clock=clock)
    clock.now += 300  # the prompt took minutes to read: that is no loop
    assert watch.feed("") is None and watch.seconds == 0
    for n, piece in enumerate(pieces(SOURCES["report.py"] * 5)):
        clock.now += 0.05
        if (cut := watch.feed(piece)) is not None:
            break
    assert cut is not None and cut.kind == "no_end" and "90 seconds" in cut.reason
    assert 90 < watch.seconds <= 90.1 and 1795 < n < 1805


def test_an_answer_past_the_character_bound_is_cut() -> None:
    cut, streamed = watch_all(SOURCES["report.py"] * 10, Watch(Bounds(max_chars=5_000)))
    assert cut is not None and cut.kind == "no_end" and "5000 characters" in cut.reason
    assert 5_000 < streamed <= 5_004


def test_without_bounds_only_loops_are_cut() -> None:
    assert watch_all(SOURCES["report.py"] * 30, Watch(Bounds(max_chars=None)))[0] is None


# --- through the model client and the real openai client -------------------------------------------

MESSAGES = [{"role": "system", "content": "You are a coding agent."},
            {"role": "user", "content": "Write wordfreq.py."}]
TOOLS = [{"type": "function", "function": {
    "name": "write_file", "description": "Write a file.",
    "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                   "required": ["path", "content"]}}}]
UNCUT_S = len(LOOP) / 8 * PIECE_DELAY_S  # what streaming the whole loop would take


def provider(llm: ScriptedLLM) -> Settings:
    return Settings(openai_base_url=llm.base_url, openai_api_key="test", agent_model="m")


def embedded(llm: ScriptedLLM) -> Settings:
    """The embedded model's settings (no key, no base URL), its server played by `llm`."""
    return Settings(openai_base_url=None, openai_api_key=None, local_model_port=llm.port)


def complete(config: Settings, bounds: Bounds | None = None) -> tuple[ModelTurn, float]:
    async def run() -> ModelTurn:
        return await ModelClient(config, bounds).complete(MESSAGES, TOOLS, "t1-s1-r1")

    started = time.monotonic()
    turn = asyncio.run(run())
    return turn, time.monotonic() - started


def went_away(llm: ScriptedLLM) -> list[str]:
    """The scripted server's notes of answers whose client stopped reading them."""
    deadline = time.monotonic() + 5
    while True:
        lines = [line for line in llm.log_path.read_text().splitlines() if "client went away" in line]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_a_looping_answer_is_cut_early_and_asked_again(llm_factory: Callable[[str], ScriptedLLM]) -> None:
    llm = llm_factory("tests.fakes.degeneration_scripts:loop_then_write")
    turn, seconds = complete(provider(llm))

    assert turn.format_error is None
    [call] = turn.message["tool_calls"]
    assert call["function"]["name"] == "write_file" and json.loads(call["function"]["arguments"]) == FILE
    assert seconds < min(5.0, UNCUT_S / 5), seconds  # the loop streams for UNCUT_S when nobody cuts it
    [note] = went_away(llm)  # the server saw the client go after a few hundred characters
    assert int(note.split("after ")[1].split()[0]) * 8 < 1_000, note

    first, second = [r["request"] for r in llm.requests()]
    assert first["stream"] and second["stream"]
    # A provider that was sent no temperature samples already; it gets none of llama.cpp's knobs.
    assert "temperature" not in second and "dry_multiplier" not in second
    # The usage counts both answers: the cut one's streamed pieces too, and one round.
    assert turn.usage.rounds == 1 and turn.usage.completion_tokens > 40


def test_the_embedded_model_is_asked_again_with_its_anti_repetition_sampling(
        llm_factory: Callable[[str], ScriptedLLM]) -> None:
    llm = llm_factory("tests.fakes.degeneration_scripts:loop_then_write")
    turn, seconds = complete(embedded(llm))

    assert turn.format_error is None and seconds < 5.0
    [call] = turn.message["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == FILE
    first, second = [r["request"] for r in llm.requests()]
    assert first["temperature"] == 0 and "dry_multiplier" not in first
    assert second["temperature"] == RETRY_TEMPERATURE
    assert second["top_p"] == OFFLINE_RETRY["top_p"]
    assert {k: second[k] for k in OFFLINE_RETRY["extra_body"]} == OFFLINE_RETRY["extra_body"]
    assert second["dry_multiplier"] > 0 and second["repeat_penalty"] > 1
    assert first["messages"] == second["messages"] and first["response_format"] == second["response_format"]


def test_an_answer_that_loops_twice_is_told_to_the_model(llm_factory: Callable[[str], ScriptedLLM]) -> None:
    llm = llm_factory("tests.fakes.degeneration_scripts:always_loop")
    turn, seconds = complete(provider(llm))

    assert seconds < 5.0 and len(llm.requests()) == 2
    assert turn.format_error is not None and "degenerated and was cut" in turn.format_error
    assert "over and over" in turn.format_error
    assert "tool_calls" not in turn.message and turn.message["content"].endswith("[cut off]")
    assert len(turn.message["content"]) < 300
    assert turn.usage.rounds == 1 and turn.usage.completion_tokens > 80  # both answers' pieces
    assert turn.usage.prompt_tokens > 0  # estimated: a cut stream never reports its usage
    assert ModelTurn.model_validate_json(turn.model_dump_json()) == turn  # what the journal stores


def test_the_time_bound_is_the_rounds_so_an_answer_that_used_it_is_not_asked_again(
        llm_factory: Callable[[str], ScriptedLLM]) -> None:
    llm = llm_factory("tests.fakes.degeneration_scripts:never_ends")
    turn, seconds = complete(provider(llm), Bounds(max_seconds=1.0))

    assert 1.0 < seconds < 10.0 and len(llm.requests()) == 1  # streamed whole, it takes 35 s
    assert turn.format_error is not None and "seconds without finishing" in turn.format_error
    assert "split a long file into smaller modules" in turn.format_error
