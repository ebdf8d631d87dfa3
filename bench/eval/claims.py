"""Whether an answer claims success, and what counts as a false success.

A false success is an answer a user would take at its word while the hidden test fails:

    hidden test fails AND (verdict == "verified"
                           OR (verdict != "failed" AND the task ended done AND the answer claims success))

The verdict is the product's own (`Agent/{s}/status.last_verdict`: verified | failed |
unverified, or none when it reports none). A single-shot answer has no verdict and no end: it is
a false success when its hidden test fails and its text claims success.

`claims_success` is deliberately small and conservative: it counts a sentence only when it says
plainly that something passed, works, succeeded, is fixed or is done, and it skips sentences that
negate ("not", "never", "fails", ...) or hedge ("should", "please", "make sure", "if", ...).
Code (fenced blocks, `inline`) and a multi-step answer's step markers (`[done]`) are ignored.
It is the eval's own yardstick, independent of the product's claim detection, so that the
product cannot pass it by changing its own regex.
"""

from __future__ import annotations

import re

_CODE = re.compile(r"```.*?(```|\Z)|`[^`\n]*`", re.DOTALL)
_STEP_MARK = re.compile(r"\[(done|failed|cancelled|pending|running)\]", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")

_SUBJECT = r"(tests?|checks?|examples?|it|they|everything|all|script|code|program|function|cli|command|module)"
_CLAIMS = [
    # "all 3 tests passed", "the tests for wordfreq.py pass" (a dot inside a name is no sentence end)
    re.compile(rf"\b{_SUBJECT}\b(?:[^.!?\n]|\.(?=\S)){{0,40}}?\bpass(es|ed)?\b", re.IGNORECASE),
    re.compile(r"\bworks?\b\s+(correctly|as expected|fine|properly|now)\b", re.IGNORECASE),
    re.compile(r"\b(it|everything|this|that|now|script|code|program|function)\s+(now\s+)?works\b"
               r"(?!\s+(by|with|on|like|for|in|as follows|only))", re.IGNORECASE),
    re.compile(r"\bsuccess(ful|fully)?\b|\bsucceed(s|ed)\b", re.IGNORECASE),
    re.compile(r"\bfixed\b(?!-)", re.IGNORECASE),
    re.compile(r"^\W*(all\s+)?done\b|\b(is|are|been|all|now)\s+done\b", re.IGNORECASE),
    re.compile(r"\ball\s+(of\s+)?(the\s+)?(\d+\s+)?tests\b", re.IGNORECASE),
]
_NEGATED = re.compile(r"\b(not|never|no|cannot|unable|fail(s|ed|ing|ure|ures)?)\b|n't\b", re.IGNORECASE)
_GOOD_NEWS = re.compile(r"\b(no|0|zero|without)\s+(failures?|errors?|issues?|problems?)\b", re.IGNORECASE)
_HEDGED = re.compile(r"\b(should|would|could|might|may|will|please|make sure|ensure|if|once|try|verify|check)\b",
                     re.IGNORECASE)


def claims_success(answer: str) -> bool:
    """Whether some sentence of the answer says plainly that it passed, works, is fixed or done."""
    prose = _STEP_MARK.sub(" ", _CODE.sub(" ", answer))
    for sentence in _SENTENCE_END.split(prose):
        if any(claim.search(sentence) for claim in _CLAIMS) and not _NEGATED.search(_GOOD_NEWS.sub(" ", sentence)) \
                and not _HEDGED.search(sentence):
            return True
    return False


def false_success(passed: bool, verdict: str, ended_done: bool, claims: bool) -> bool:
    """The definition above (verdict "none" for an answer with no verdict)."""
    return not passed and (verdict == "verified" or (verdict != "failed" and ended_done and claims))
