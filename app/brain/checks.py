"""The checks the harness runs before a step may finish, and what their output says.

The model's word that something works is not evidence; a command the harness ran is. Before
a step finishes, the harness runs what the workspace and the request provide:

- **tests**: files named `test_*.py` or `*_test.py`, by pytest where the sandbox has it (it
  runs unittest cases too, and finds both names), else by `python3 -m unittest`;
- **examples**: the docstring examples (`>>>`) of the Python files the step wrote, by doctest;
- **commands** the request quotes (`` `python3 cli.py --top 3 words.txt` ``), as written.

Each check is one shell command, run as a tool call of its own (journaled, shown in the
event log, approved like any other). Pure functions here: which checks, and what an output
says (counts); running them is app/harness.py's.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass
from typing import Literal

CheckKind = Literal["tests", "examples", "command"]

TEST_NAME = re.compile(r"(^|/)(test_[^/]*|[^/]*_test)\.py$")
SKIPPED_DIRS = {".agent", ".git", "__pycache__", ".pytest_cache", "node_modules", ".venv", "venv"}
# A check is a small program's tests: a minute is plenty, and code that loops forever (the
# 1.5B wrote one) costs that minute each time it is checked.
CHECK_TIMEOUT_S = 60
COMMAND_TIMEOUT_S = 30  # a quoted command is a quick run, not a server
MAX_QUOTED_COMMANDS = 3
# A quoted command is run only if it is a Python program run (not a server, not a pipeline
# that could change things beyond the workspace) and names no placeholder.
_QUOTED = re.compile(r"`([^`\n]{3,200})`")
_RUNNABLE = re.compile(r"^(python3?|pytest)(\s|$)")
_NOT_A_CHECK = re.compile(r"[;&|<>$]|\.\.\.|<\w+>|\b(http\.server|serve|runserver|pip|install|input)\b")


@dataclass(frozen=True)
class PlannedCheck:
    kind: CheckKind
    command: str
    timeout_s: int
    files: tuple[str, ...] = ()  # the files it checks (examples), or the test files


def test_files(paths: list[str]) -> list[str]:
    """The test files among the workspace's `paths`."""
    return sorted(p for p in paths if TEST_NAME.search(p) and not SKIPPED_DIRS & set(p.split("/")[:-1]))


HAS_PYTEST = "python3 -c 'import pytest'"  # asked of the sandbox once a task


def tests_check(tests: list[str], pytest: bool | None = None) -> PlannedCheck | None:
    """One command that runs every test file: pytest where the sandbox has it, else unittest
    (a module name each: unittest cannot take `*_test.py` by discovery and a path at once).
    `pytest` None: not known, so the command asks the sandbox itself."""
    if not tests:
        return None
    modules = " ".join(shlex.quote(t[:-3].replace("/", ".")) for t in tests)
    files = " ".join(shlex.quote(t) for t in tests)
    by_pytest = f"python3 -m pytest -q -p no:cacheprovider {files}"
    by_unittest = f"python3 -m unittest -v {modules}"
    command = {True: by_pytest, False: by_unittest}.get(
        pytest, f"if {HAS_PYTEST} 2>/dev/null; then {by_pytest}; else {by_unittest}; fi")  # type: ignore[arg-type]
    return PlannedCheck("tests", command, CHECK_TIMEOUT_S, tuple(tests))


def examples_check(with_examples: list[str]) -> PlannedCheck | None:
    if not with_examples:
        return None
    command = "python3 -m doctest " + " ".join(shlex.quote(p) for p in with_examples)
    return PlannedCheck("examples", command, CHECK_TIMEOUT_S, tuple(with_examples))


def quoted_commands(request: str) -> list[PlannedCheck]:
    """Commands the request quotes in backticks that run a Python program: what the user said
    to run is run, exactly as written."""
    found: list[PlannedCheck] = []
    for text in _QUOTED.findall(request):
        command = text.strip()
        if _RUNNABLE.match(command) and not _NOT_A_CHECK.search(command) and len(command.split()) > 1:
            if all(c.command != command for c in found):
                found.append(PlannedCheck("command", command, COMMAND_TIMEOUT_S))
    return found[:MAX_QUOTED_COMMANDS]


def stubs_in(tree: ast.AST) -> list[str]:
    """The functions of a parsed file that have no code: only a docstring, `pass` or `...`
    (a small model writes the request's signature back and stops)."""
    return [node.name for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_stub(node)]


def stubs(code: str) -> list[str]:
    """`stubs_in` of Python source; none if it does not parse (that is said elsewhere)."""
    try:
        return stubs_in(ast.parse(code))
    except (SyntaxError, ValueError, RecursionError):
        return []


def _is_stub(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    decorators = {ast.unparse(d).rsplit(".", 1)[-1] for d in function.decorator_list}
    if decorators & {"abstractmethod", "overload"}:
        return False  # meant to have no body
    return all(isinstance(stmt, ast.Pass)
               or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                   and (isinstance(stmt.value.value, str) or stmt.value.value is Ellipsis))
               for stmt in function.body)


def has_examples(code: str) -> bool:
    """Whether Python `code` holds docstring examples doctest would run."""
    return any(line.lstrip().startswith(">>> ") for line in code.splitlines())


_PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")
_PYTEST_LINE = re.compile(r"\d+ (passed|failed|errors?|skipped)\b.* in [\d.]+s")
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests?", re.MULTILINE)
_UNITTEST_END = re.compile(r"^(?:OK|FAILED)(?: \(([^)]*)\))?\s*$", re.MULTILINE)
_DOCTEST_FAILED = re.compile(r"\*\*\*Test Failed\*\*\* (\d+) failures?")


def summarize(kind: CheckKind, exit_code: int | None, output: str) -> str:
    """The counts an output shows, in a few words ("3 tests, 3 passed"), from the runner's own
    summary lines; the exit code when there are none."""
    if exit_code is None:
        return "no result came back"
    if kind == "tests":
        return _tests_summary(exit_code, output)
    if kind == "examples":
        failed = sum(int(n) for n in _DOCTEST_FAILED.findall(output))
        return "the examples pass" if exit_code == 0 else (
            f"{failed} example{'s' if failed != 1 else ''} failed" if failed else f"exit code {exit_code}")
    error = reported_error(output) if exit_code == 0 else None
    return f"{REPORTED_ERROR} {error}" if error else f"exit code {exit_code}"


# A command that exits 0 but prints a traceback or an error (a caught exception printed as
# "Error: ...") has not shown that it works: the 1.5B "fixed" a crash the request quoted by
# catching it and printing the error.
REPORTED_ERROR = "exit code 0, but it reported an error:"
_ERROR_LINE = re.compile(r"^(Traceback \(most recent call last\):.*|(?:[A-Za-z_][\w.]*)?(?:Error|Exception): .+)$",
                         re.MULTILINE)


def reported_error(output: str) -> str | None:
    """The first line of `output` that reports an error (`Traceback (most recent call last):`,
    `ValueError: ...`, `Error: ...`), clipped; None if there is none."""
    found = _ERROR_LINE.search(output)
    return found.group(0).strip()[:160] if found else None


def _tests_summary(exit_code: int, output: str) -> str:
    tail = output[-3000:]
    line = next((l for l in reversed(tail.splitlines()) if _PYTEST_LINE.search(l)), "")
    counts = {word.rstrip("s"): int(n) for n, word in _PYTEST_COUNT.findall(line)}
    if counts:
        ran = counts.get("passed", 0) + counts.get("failed", 0)
        parts = [f"{v} {k}{'s' if k == 'error' and v != 1 else ''}" for k, v in counts.items()]
        return f"{ran} test{'s' if ran != 1 else ''}, " + ", ".join(parts)
    if exit_code == 5 and "no tests ran" in tail:
        return "no tests were collected"
    ran_lines = _UNITTEST_RAN.findall(output)
    if ran_lines:
        total = sum(int(n) for n in ran_lines)
        ended = _UNITTEST_END.search(output)
        detail = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", ended.group(1) or "")) if ended else {}
        skipped = detail.get("skipped", 0) + detail.get("expected_failures", 0)
        bad = detail.get("failures", 0) + detail.get("errors", 0) + detail.get("unexpected_successes", 0)
        ran = total - skipped
        words = {"failures": "failed", "errors": "errors", "skipped": "skipped"}
        parts = [f"{ran - bad} passed"] + [f"{v} {words.get(k, k.replace('_', ' '))}" for k, v in detail.items() if v]
        return f"{ran} test{'s' if ran != 1 else ''}, " + ", ".join(parts)
    return f"exit code {exit_code}"


