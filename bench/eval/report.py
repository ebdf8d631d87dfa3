"""The eval's tables: one row per case, then totals per group, in markdown."""

from __future__ import annotations

from collections.abc import Sequence

from bench.common import median, p90
from bench.eval.runner import Outcome


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def case_table(outcomes: Sequence[Outcome]) -> str:
    lines = ["| case | passed | wall s | plan s | steps | rounds | tokens (prompt+gen) | end "
             "| single-shot passed | single-shot s | single-shot tokens |",
             "|" + "---|" * 11]
    for o in outcomes:
        b = o.baseline
        lines.append(
            f"| {o.case} | {'yes' if o.passed else 'no'} | {o.wall_s:.1f} | {_s(o.plan_s)} | {o.steps} | {o.rounds} "
            f"| {o.tokens} ({o.prompt_tokens}+{o.completion_tokens}) | {o.status} "
            f"| {'–' if b is None else ('yes' if b.passed else 'no')} | {'–' if b is None else f'{b.wall_s:.1f}'} "
            f"| {'–' if b is None else b.prompt_tokens + b.completion_tokens} |")
    return "\n".join(lines)


def totals_table(outcomes: Sequence[Outcome]) -> str:
    lines = ["| group | cases | passed | pass rate | wall s median | wall s p90 | rounds median "
             "| tokens median | single-shot pass rate | single-shot s median |",
             "|" + "---|" * 10]
    groups = sorted({o.group for o in outcomes}) + (["all"] if len({o.group for o in outcomes}) > 1 else [])
    for group in groups:
        chosen = [o for o in outcomes if group in ("all", o.group)]
        passed = sum(o.passed for o in chosen)
        walls = [o.wall_s for o in chosen]
        base = [o.baseline for o in chosen if o.baseline is not None]
        base_rate = f"{100 * sum(b.passed for b in base) / len(base):.0f}% ({sum(b.passed for b in base)}/{len(base)})" \
            if base else "–"
        lines.append(
            f"| {group} | {len(chosen)} | {passed} | {100 * passed / len(chosen):.0f}% | {median(walls):.1f} "
            f"| {p90(walls):.1f} | {median([o.rounds for o in chosen]):.0f} | {median([o.tokens for o in chosen]):.0f} "
            f"| {base_rate} | {_s(median([b.wall_s for b in base]) if base else None)} |")
    return "\n".join(lines)
