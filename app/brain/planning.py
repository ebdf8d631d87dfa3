"""A plan made without a model round: the request's own parts, one step each.

The offline model's planning round cost more than the work and its split plans were worse,
so a request is split by rule instead: each sentence that starts with an imperative ("Write
...", "Add tests ...", "Then make ...") begins a step; the sentences after it that do not
(details, "Run the tests.", "Use argparse.") belong to it, because writing code and checking
it is one step. A request with one such part is one step. Titles are whole words, never a
sentence cut in the middle; the step's instructions hold its whole text.
"""

from __future__ import annotations

import re

from app.models import Plan, PlanStep

MAX_TITLE = 100
# Verbs a part of a coding request starts with. "Run"/"Test"/"Check"/"Make sure" are not here:
# checking belongs to the step that made the thing it checks.
_STARTS = re.compile(
    r"^(?:(?:then|next|also|finally|after that|and)[,]?\s+)?(?:please\s+)?"
    r"(write|add|create|implement|fix|refactor|rename|move|extend|update|change|build|make|"
    r"modify|replace|remove|delete|convert|split|extract|document)\b(?!\s+sure)", re.IGNORECASE)
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`])|\n\s*\n|\n(?=\s*(?:\d+[.)]|[-*•])\s)")
_LIST_MARK = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+")


def split(request: str, max_steps: int) -> Plan:
    """The request's parts as steps (at most `max_steps`: the rest joins the last one)."""
    parts: list[list[str]] = []
    context: list[str] = []  # what comes before the first part ("I have stats.py.") belongs to it
    for sentence in sentences(request):
        if _STARTS.match(sentence):
            parts.append([*context, sentence])
            context = []
        elif parts:
            parts[-1].append(sentence)
        else:
            context.append(sentence)
    if len(parts) > max_steps:
        parts = parts[:max_steps - 1] + [[s for part in parts[max_steps - 1:] for s in part]]
    if context:
        parts.append(context)  # no imperative anywhere: the request is one part
    if len(parts) <= 1:
        # One part: the step sees the whole request in the conversation; the title names it.
        return Plan(steps=[PlanStep(title=title_of(request))])
    return Plan(steps=[step_of("\n".join(part), title=next((x for x in part if _STARTS.match(x)), part[0]))
                       for part in parts])


def sentences(request: str) -> list[str]:
    """The request's sentences and list items, with code (inline or fenced) kept whole inside
    the sentence that holds it."""
    hidden: list[str] = []

    def hide(match: re.Match[str]) -> str:
        hidden.append(match.group(0))
        return f"\x00{len(hidden) - 1}\x00"

    text = _CODE.sub(hide, request.strip())
    out = []
    for piece in _SENTENCE_END.split(text):
        piece = _LIST_MARK.sub("", piece.strip())
        if piece:
            out.append(re.sub(r"\x00(\d+)\x00", lambda m: hidden[int(m.group(1))], piece))
    return out


def step_of(text: str, title: str | None = None) -> PlanStep:
    """A step titled by `title` (else `text`'s first sentence), cut at a word (with "…"), whose
    instructions are the whole text when the title does not hold it all."""
    title = title_of(title or text)
    return PlanStep(title=title, instructions="" if title == text.strip() else text.strip()[:4000])


def title_of(text: str) -> str:
    """The first line of `text`, cut at a word boundary if it is long."""
    first = (text.strip() or "Do the request").split("\n", 1)[0].strip()
    return first if len(first) <= MAX_TITLE else first[:MAX_TITLE].rsplit(" ", 1)[0].rstrip(",;:") + " …"
