"""Code written as text: reading a file's content out of a plain-chat answer.

A model writes worse code inside a JSON string than as text (characters dropped under a
grammar, escapes doubled: `[^\\w\\s]` became `[^\\`, a tab and `\\n\\r\\s]`), so a file's content
never passes through a tool call's arguments in structured mode. The model answers in plain
chat instead, in one of two forms (Aider's "whole" and "diff" edit formats):

- the whole file, in one fenced block;
- search/replace blocks, for a change to a large existing file:

      <<<<<<< SEARCH
      exact lines of the file
      =======
      the lines to put in their place
      >>>>>>> REPLACE

An answer with several files names each one on the line before its block (`path`, `### path`,
`**path**`, `# File: path`...). Pure functions of the answer's text: a replay reads the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.brain.paths import normal

_FENCE = re.compile(r"^(`{3,}|~{3,})([^\n`]*)\n(.*?)^\1[ \t]*$", re.DOTALL | re.MULTILINE)
_SEARCH_REPLACE = re.compile(
    r"^<{5,9} ?SEARCH[^\n]*\n(.*?)^={5,9}[ \t]*\n(.*?)^>{5,9} ?REPLACE[^\n]*$", re.DOTALL | re.MULTILINE)
_PATH = re.compile(r"[\w./-]+\.[A-Za-z0-9]{1,8}|[\w./-]*(?:Makefile|Dockerfile|README)")
# What may stand around a path on the line before a block: markdown heading, bold, a label.
_PATH_LINE = re.compile(r"^\s*(?:#+\s*)?(?:[*_`]+)?(?:(?:file|path|filename)\s*[:=]\s*)?(?:[*_`]+)?"
                        r"(?P<path>[\w./-]+)(?:[*_`]+)?:?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Block:
    info: str  # what follows the opening fence: a language, sometimes a path
    code: str
    named: str | None  # the path the answer gives it (the line before it, or the info string)


def blocks(answer: str) -> list[Block]:
    """Every fenced block of the answer, with the path it is given, if any."""
    found = []
    # An answer cut off inside a block has no match for it: a file that is not whole is never
    # taken for one.
    for match in _FENCE.finditer(answer):
        info, code = match.group(2).strip(), match.group(3)
        before = answer[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        named = _path_in_info(info) or _path_on_line(before)
        found.append(Block(info=info, code=code, named=normal(named) if named else None))
    return found


def whole_file(answer: str, path: str | None = None) -> str | None:
    """The file of an answer asked for one file whole: the block named `path` if there is one,
    else its longest fenced block (a model may add a usage example after it), or None if it
    has none. Never the bare answer: "Done" is valid Python too."""
    found = [b for b in blocks(answer) if b.code.strip()]
    named = [b.code for b in found if path is not None and b.named == path]
    code = named or [b.code for b in found]
    if not code:
        return None
    longest = max(code, key=len)
    return longest if longest.endswith("\n") else longest + "\n"


def files(answer: str) -> dict[str, str]:
    """The files of an answer asked for several, each named on the line before its block (or
    in its info string). Blocks with no name are left out: guessing where code goes is how a
    file gets overwritten with another's content."""
    out: dict[str, str] = {}
    for block in blocks(answer):
        if block.named and block.code.strip():
            out[block.named] = block.code if block.code.endswith("\n") else block.code + "\n"
    return out


@dataclass(frozen=True)
class Replacement:
    search: str
    replace: str


def replacements(answer: str) -> list[Replacement]:
    """The search/replace blocks of an answer, in order (inside fences or not)."""
    return [Replacement(search=m.group(1), replace=m.group(2)) for m in _SEARCH_REPLACE.finditer(answer)]


class EditError(ValueError):
    """A search/replace block that cannot be applied; the message is for the model."""


def apply(content: str, edits: list[Replacement]) -> str:
    """`content` with every replacement made, in order. A search text must occur exactly once
    (whitespace at line ends aside): an edit that could land in two places is refused rather
    than guessed."""
    for number, edit in enumerate(edits, 1):
        if not edit.search.strip():
            if content.strip():
                raise EditError(f"block {number} has an empty SEARCH part; it may be empty only for a new file")
            content = edit.replace
            continue
        content = _replace_once(content, edit, number)
    return content


def _replace_once(content: str, edit: Replacement, number: int) -> str:
    count = content.count(edit.search)
    if count == 1:
        return content.replace(edit.search, edit.replace, 1)
    if count > 1:
        raise EditError(f"the SEARCH text of block {number} occurs {count} times; include more lines so it "
                        "occurs once")
    # Trailing spaces and the last newline are where a model's copy most often differs.
    lines = [line.rstrip() for line in content.split("\n")]
    wanted = [line.rstrip() for line in edit.search.rstrip("\n").split("\n")]
    starts = [i for i in range(len(lines) - len(wanted) + 1) if lines[i:i + len(wanted)] == wanted]
    if len(starts) != 1:
        first = edit.search.strip().splitlines()[0][:80]
        raise EditError(f"the SEARCH text of block {number} is not in the file ({first!r}...); copy it exactly "
                        "from the file's current content" if not starts else
                        f"the SEARCH text of block {number} occurs {len(starts)} times; include more lines")
    original = content.split("\n")
    start = starts[0]
    replacement = edit.replace.rstrip("\n").split("\n") if edit.replace.strip("\n") else []
    return "\n".join(original[:start] + replacement + original[start + len(wanted):])


def _path_in_info(info: str) -> str | None:
    """`python title=a.py`, `a.py`, `python:a.py`: a path given after the opening fence."""
    for word in re.split(r"[\s:=]+", info):
        word = word.strip("'\"")
        if "." in word and _PATH.fullmatch(word) and not word.startswith("."):
            return word
    return None


def _path_on_line(line: str) -> str | None:
    match = _PATH_LINE.match(line)
    if match is None:
        return None
    path = match.group("path").strip("`*_")
    return path if _PATH.fullmatch(path) and not path.startswith("/") else None
