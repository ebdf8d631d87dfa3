"""The eval's tables, in markdown: totals per group, then one row per case, the agent and the
same model asked once (single-shot) side by side."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.common import median, p90
from bench.eval.runner import Baseline, Outcome

VERDICTS = ("verified", "failed", "unverified", "none")

DEFINITIONS = """\
How to read the tables:
- **passed**: the hidden test, which the agent never sees, passed on the workspace the session left
  (single-shot: on the starting files with the answer's files over them).
- **false success**: the hidden test fails AND (the harness's verdict is "verified" OR (the verdict is
  not "failed" AND the task ended done AND the final answer's text claims success)). A claim is a
  sentence saying plainly that something passed, works, succeeded, is fixed or is done, not negated
  and not hedged (bench/eval/claims.py). Single-shot has no verdict: a failing answer that claims
  success is a false success.
- **verdicts**: the harness's own verdict of the task (`Agent/status.last_verdict`): verified / failed /
  unverified, and none when the product reported none.
- **longest round**: for each `model_round` event of the task (loop rounds, rewrites, summaries) and its
  `plan` event (the planning round), its time minus the time of the event before it in the task's
  log; the longest. Single-shot is one round: its wall time.
- **wall s**: message → idle (single-shot: the one request); median and p90 (nearest rank).
- **rounds, tokens**: the task's own usage (prompt + generated tokens); single-shot is one round."""


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _yes(value: bool | None) -> str:
    return "–" if value is None else ("yes" if value else "no")


def case_table(outcomes: Sequence[Outcome]) -> str:
    lines = ["| case | kind | passed | single-shot passed | false success | single-shot false success | verdict "
             "| end | wall s | single-shot s | plan s | steps | rounds | longest round s | tokens (prompt+gen) "
             "| single-shot tokens |",
             "|" + "---|" * 16]
    for o in outcomes:
        b = o.baseline
        lines.append(
            f"| {o.case} | {o.kind or '–'} | {_yes(o.passed)} | {_yes(b and b.passed)} | {_yes(o.false_success)} "
            f"| {_yes(b and b.false_success)} | {o.verdict} | {o.status} | {o.wall_s:.1f} | {_s(b and b.wall_s)} "
            f"| {_s(o.plan_s)} | {o.steps} | {o.rounds} | {_s(o.longest_round_s)} "
            f"| {o.tokens} ({o.prompt_tokens}+{o.completion_tokens}) | {'–' if b is None else b.tokens} |")
    return "\n".join(lines)


def totals_table(outcomes: Sequence[Outcome]) -> str:
    lines = ["| group | cases | passed | single-shot passed | false successes | single-shot false successes "
             "| verdicts (verified/failed/unverified/none) | wall s median | wall s p90 | single-shot s median "
             "| single-shot s p90 | rounds median | tokens median | single-shot tokens median "
             "| longest round s | single-shot longest s |",
             "|" + "---|" * 16]
    for group, chosen in _groups(outcomes):
        base = [o.baseline for o in chosen if o.baseline is not None]
        walls, base_walls = [o.wall_s for o in chosen], [b.wall_s for b in base]
        rounds = [o.longest_round_s for o in chosen if o.longest_round_s is not None]
        verdicts = "/".join(str(sum(o.verdict == v for o in chosen)) for v in VERDICTS)
        lines.append(
            f"| {group} | {len(chosen)} | {_rate(sum(o.passed for o in chosen), len(chosen))} "
            f"| {_rate(sum(b.passed for b in base), len(base))} | {sum(o.false_success for o in chosen)} "
            f"| {sum(b.false_success for b in base) if base else '–'} | {verdicts} "
            f"| {median(walls):.1f} | {p90(walls):.1f} | {_s(median(base_walls) if base else None)} "
            f"| {_s(p90(base_walls) if base else None)} | {median([o.rounds for o in chosen]):.0f} "
            f"| {median([o.tokens for o in chosen]):.0f} | {f'{median([b.tokens for b in base]):.0f}' if base else '–'} "
            f"| {_s(max(rounds) if rounds else None)} | {_s(max(base_walls) if base else None)} |")
    return "\n".join(lines)


def _groups(outcomes: Sequence[Outcome]) -> list[tuple[str, list[Outcome]]]:
    """HumanEval, own, own cases by kind, and all (each only when it differs from another row)."""
    groups = [(g, [o for o in outcomes if o.group == g]) for g in sorted({o.group for o in outcomes})]
    own = [o for o in outcomes if o.group == "own"]
    kinds = sorted({o.kind for o in own})
    if len(kinds) > 1:
        groups += [(f"own: {kind}", [o for o in own if o.kind == kind]) for kind in kinds]
    if len(groups) > 1 and len({o.group for o in outcomes}) > 1:
        groups.append(("all", list(outcomes)))
    return groups


def _rate(passed: int, cases: int) -> str:
    return f"{100 * passed / cases:.0f}% ({passed}/{cases})" if cases else "–"


def from_jsonl(path: Path) -> list[Outcome]:
    """The outcomes a run kept, one JSON line each (`--out`'s .jsonl), in the order they ran."""
    outcomes = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            raw = json.loads(line)
            baseline = raw.pop("baseline", None)
            outcomes.append(Outcome(**raw, baseline=Baseline(**baseline) if baseline else None))
    return outcomes


def main() -> int:
    """python -m bench.eval.report RUN.jsonl...: the tables of runs kept as JSON lines, e.g. of a
    run stopped before its last case, or of two runs of one commit (the cases of each, in turn)."""
    outcomes = [o for path in sys.argv[1:] for o in from_jsonl(Path(path))]
    print("### Totals\n\n" + totals_table(outcomes) + "\n\n### Per case\n\n" + case_table(outcomes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
