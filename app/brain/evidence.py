"""The part of every answer the harness writes: which checks ran, and what they showed.

A task's verdict comes from the checks the harness ran itself, never from the model's text:

- **failed**: a step ended failed, or the last run of a check failed;
- **verified**: every check's last run passed and at least one of them tested behaviour
  (tests, examples or a quoted command; a file that parses proves little);
- **unverified**: nothing was there to run.

If the model's text says tests or checks passed and no test or check passed, the answer says
so plainly, under the model's words. Pure functions of journaled values.
"""

from __future__ import annotations

import re

from app.brain.checks import REPORTED_ERROR
from app.models import CheckRun, Verdict, VerdictKind

BEHAVIOUR = ("tests", "examples", "command")
# "tests pass", "all 3 tests passed", "works correctly", "verified", "Success"... unless negated.
_CLAIM = re.compile(
    r"\b(tests?|checks?|examples?|it|code|function|script|program|everything)\b[^.\n]{0,40}?\b"
    r"(pass(es|ed)?|succeed(s|ed)?|work(s|ed|ing)?( correctly| as expected| fine)?|verified|green)\b"
    r"|\b(success(ful(ly)?)?|verified|all good|works correctly|works as expected)\b",
    re.IGNORECASE)
_NEGATED = re.compile(r"\b(not|n't|never|no|fail(s|ed)?|unable|cannot|if|once|should|would|until)\b", re.IGNORECASE)
_CLAUSE = re.compile(r"[.;:!?\n,]")


def verdict(checks: list[CheckRun], step_failed: bool) -> VerdictKind:
    """The task's verdict from each check's last run (`checks` in the order they ran)."""
    last = latest(checks)
    if step_failed or any(not ok(c) for c in last):
        return "failed"
    if any(c.kind in BEHAVIOUR for c in last):
        return "verified"
    return "unverified"


def latest(checks: list[CheckRun]) -> list[CheckRun]:
    """Each distinct check once: its last run. Tests and examples are one check each whatever
    files they cover (a run over more test files replaces the one over fewer); a quoted
    command is one check per command."""
    by_key: dict[tuple[str, str], CheckRun] = {}
    for check in checks:
        key = (check.kind, check.command if check.kind == "command" else "")
        by_key.pop(key, None)
        by_key[key] = check
    return list(by_key.values())


def ok(check: CheckRun) -> bool:
    """A check passed: exit code 0, for tests at least one test ran (a test file with no tests
    in it, or with every test skipped, proves nothing), and a command reported no error."""
    return check.exit_code == 0 and not check.summary.startswith(("0 tests", "no tests", REPORTED_ERROR))


def claims_success(text: str) -> bool:
    """Whether the model's text says that something passed or works (and does not say no)."""
    for match in _CLAIM.finditer(text):
        before = [m.end() for m in _CLAUSE.finditer(text, 0, match.start())]
        clause = text[before[-1] if before else 0:match.end()]
        if not _NEGATED.search(clause):
            return True
    return False


def judge(answer: str, checks: list[CheckRun], step_failed: bool) -> Verdict:
    """The task's verdict and, when the answer (the model's words only) claims what no check
    showed, the note saying so."""
    kind = verdict(checks, step_failed)
    note = ""
    if claims_success(answer):
        if any(not ok(c) for c in latest(checks)):
            note = "The answer above says something passed or works, but the agent's own checks failed."
        elif kind == "failed":
            note = "The answer above says something passed or works, but a step of the task failed."
        elif not any(ok(c) and c.kind in BEHAVIOUR for c in latest(checks)):
            note = ("The answer above says something passed or works, but no test or check run by the "
                    "agent showed that.")
    return Verdict(verdict=kind, checks=latest(checks), note=note)


def evidence_text(result: Verdict) -> str:
    """The harness's part of the answer, in plain words: one line per check, or that nothing
    was run; each line names its tool call in the session's event log."""
    failing = any(not ok(c) for c in result.checks)
    head = {"verified": "Verified by the agent's own checks:",
            "failed": "Failed: the agent's own checks show it:" if failing else "Failed: a step of the task failed.",
            "unverified": "Unverified:"}[result.verdict]
    if not result.checks:
        lines = [f"{head} nothing was run to check this." if result.verdict != "failed" else
                 f"{head} Nothing was run to check it."]
    else:
        lines = [head] + [
            f"- `{c.command}` → exit {'?' if c.exit_code is None else c.exit_code}: {c.summary} "
            f"(step {c.step}, call {c.ref})" for c in result.checks]
    if result.note:
        lines.append(f"Note: {result.note}")
    return "\n".join(lines)
