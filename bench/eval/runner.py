"""Run cases through the whole product, and the same model single-shot as a baseline.

One stack (restate-server, the worker serving the product plus the Bench service, the real
bubblewrap sandbox) serves every case; each case gets a fresh session. Per case: write its
starting files through the Sandbox object, send its message, wait until the session is idle,
read the workspace back through the public Sandbox API (list_files, read_file), and judge it
with the hidden test (bench/eval/judge.py). Wall time is message → idle; rounds and tokens are
the task's own usage as the Agent reports it.

Besides pass or fail, each case records what the product says about its own result: the verdict
of the harness's checks (`Agent/status.last_verdict`, "none" when it reports none), the final
answer's text (the task's last history entry) and whether it claims success, hence whether it
is a false success (bench/eval/claims.py), and the longest model round: for each `model_round`
event of the task (loop rounds, rewrites, summaries) and its `plan` event (the planning round),
its time minus the time of the event before it in the task's log; the longest of those.

The single-shot baseline asks the same model once, at temperature 0, with no tools: for a
HumanEval case the function in a code block, for an own case every file it creates or changes
as a fenced block under its path (bench/eval/answer_files.py), overlaid on the starting files.
Both are judged by the same hidden test.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import openai

from bench.eval import answer_files
from bench.eval.cases import SOLUTION_FILE, Case
from bench.eval.claims import claims_success, false_success
from bench.eval.judge import judge
from tests.agent_helpers import events, history, send_message, wait_idle
from tests.harness import Stack

MAX_READ_BYTES = 256_000
SKIP_PARTS = {"__pycache__", ".git", ".pytest_cache"}
BASELINE_PROMPT = ("Complete the following Python function. Answer with the whole function, "
                   "including its imports, in one ```python code block.\n\n```python\n{prompt}\n```")
BASELINE_MAX_TOKENS = 1024
OWN_BASELINE_MAX_TOKENS = 2048  # an own case's answer holds whole files, some of them two or three
ANSWER_CLIP = 1500  # characters of an answer kept in the results
ROUND_EVENTS = ("model_round", "plan")


@dataclass
class Outcome:
    """One case's result; every number is what the run measured, nothing is derived here."""

    case: str
    group: str
    passed: bool
    wall_s: float
    rounds: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    plan_s: float | None = None  # message → the plan event
    steps: int = 0
    status: str = ""  # the task's end: done, failed, stopped, interrupted, timeout
    detail: str = ""  # the judge's output tail when it failed
    baseline: Baseline | None = None
    kind: str = ""  # own cases: "change" or "new"
    verdict: str = "none"  # the harness's: verified | failed | unverified, or none when it gave none
    checks: list[str] = field(default_factory=list)  # "kind: command → exit code (summary)"
    verdict_note: str = ""
    claims_success: bool = False  # the final answer's text says it passed / works (bench/eval/claims.py)
    false_success: bool = False
    longest_round_s: float | None = None
    answer: str = ""  # the final answer's text, clipped

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Baseline:
    """The same model asked once, directly, with no tools; one round."""

    passed: bool
    wall_s: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    detail: str = ""
    files: list[str] = field(default_factory=list)  # own cases: the paths read from the answer
    claims_success: bool = False
    false_success: bool = False
    answer: str = ""  # clipped

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Runner:
    stack: Stack
    case_timeout_s: float = 900.0
    run_id: str = field(default_factory=lambda: time.strftime("%H%M%S"))

    def run_case(self, case: Case) -> Outcome:
        session = f"eval-{self.run_id}-{case.slug}"
        for index, (path, content) in enumerate(case.files.items()):
            self._call("Bench", None, "sandbox_write",
                       {"session": session, "op_id": f"seed-{index}", "path": path, "content": content})
        started_wall, started = time.time(), time.monotonic()
        task_id = send_message(self.stack, session, case.message)
        end = "done"
        try:
            final = wait_idle(self.stack, session, timeout=self.case_timeout_s)
        except AssertionError:
            end = "timeout"
            self.stack.call("Agent", session, "interrupt")
            final = wait_idle(self.stack, session, timeout=120)
        wall = time.monotonic() - started
        usage = final.get("last_usage") or {}
        log = [e for e in events(self.stack, session) if e.get("task_id") in (task_id, None)]
        plans = [e["time"] for e in log if e["kind"] == "plan"]
        if end != "timeout":
            end = _task_end(log)
        files = self.workspace(session)
        judged = judge(files, case.hidden_test)
        entry = _final_entry(history(self.stack, session), task_id)
        said = (final.get("last_verdict") or (entry or {}).get("verdict") or {})
        answer = (entry or {}).get("text", "")
        claims = claims_success(answer)
        verdict = said.get("verdict") or "none"
        return Outcome(
            case=case.name, group=case.group, kind=case.kind, passed=judged.passed, wall_s=wall,
            # A task stopped by the timeout reports no usage: count its rounds from the event log.
            rounds=usage.get("rounds") or sum(e["kind"] in ROUND_EVENTS for e in log),
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            plan_s=(plans[0] - started_wall) if plans else None,
            steps=sum(1 for e in log if e["kind"] == "step_started"), status=end, detail=judged.detail,
            verdict=verdict, checks=[_check_line(c) for c in said.get("checks") or []],
            verdict_note=said.get("note") or "", claims_success=claims,
            false_success=false_success(judged.passed, verdict, end == "done", claims),
            longest_round_s=longest_round(log), answer=answer[:ANSWER_CLIP],
        )

    def workspace(self, session: str) -> dict[str, str]:
        """Every text file of the session's workspace, read through the public Sandbox API."""
        code, listing = self.stack.call("Sandbox", session, "list_files", {"path": "."})
        if code != 200:
            return {}
        files = {}
        for entry in listing["entries"]:
            parts = entry["path"].split("/")
            if entry["kind"] != "file" or entry["size"] > MAX_READ_BYTES or SKIP_PARTS & set(parts):
                continue
            code, body = self.stack.call("Sandbox", session, "read_file", {"path": entry["path"]})
            if code == 200:
                files[entry["path"]] = body["content"]
        return files

    def _call(self, service: str, key: str | None, handler: str, body: Any) -> Any:
        code, answer = self.stack.call(service, key, handler, body)
        if code != 200:
            raise RuntimeError(f"{service}/{handler} answered {code}: {answer}")
        return answer


def longest_round(log: list[dict[str, Any]]) -> float | None:
    """The longest model round of a task's event log, in seconds: for each model_round or plan
    event, its time minus the time of the event before it; None when there was none."""
    gaps = [event["time"] - log[index - 1]["time"] for index, event in enumerate(log)
            if index > 0 and event["kind"] in ROUND_EVENTS]
    return max(gaps) if gaps else None


def _final_entry(entries: list[dict[str, Any]], task_id: str) -> dict[str, Any] | None:
    """The task's final answer in the history: its last agent entry, or event (failed, stopped)."""
    mine = [e for e in entries if e.get("task_id") == task_id and e["role"] in ("agent", "event")]
    return mine[-1] if mine else None


def _check_line(check: dict[str, Any]) -> str:
    return f"{check.get('kind')}: {check.get('command')} → {check.get('exit_code')} ({check.get('summary')})"


def _task_end(log: list[dict[str, Any]]) -> str:
    """How the task ended, from its session's events: the last step's status, or the error."""
    if any(e["kind"] == "error" for e in log):
        return "failed"
    if any(e["kind"] == "interrupted" for e in log):
        return "interrupted"  # stopped by a budget, or interrupted
    finished = [e["text"] for e in log if e["kind"] == "step_finished"]
    failed = [t for t in finished if re.match(r"step \d+ failed", t)]
    return f"{len(failed)} step(s) failed" if failed else "done"


def single_shot(client: openai.OpenAI, model: str, case: Case) -> Baseline:
    """Ask the model once (temperature 0, no tools) and judge what it wrote with the hidden test:
    a HumanEval case's function from its code block, an own case's files over its starting files."""
    if case.group == "humaneval":
        question, max_tokens = BASELINE_PROMPT.format(prompt=case.prompt.strip()), BASELINE_MAX_TOKENS
    else:
        question, max_tokens = answer_files.prompt(case), OWN_BASELINE_MAX_TOKENS
    started = time.monotonic()
    response = client.chat.completions.create(
        model=model, temperature=0, max_tokens=max_tokens, messages=[{"role": "user", "content": question}])
    wall = time.monotonic() - started
    answer = response.choices[0].message.content or ""
    if case.group == "humaneval":
        # The prompt's imports are given to both the agent and this baseline (cases.humaneval_test),
        # so the file holds only what the model wrote.
        written = {SOLUTION_FILE: extract_code(answer)}
        workspace = written
    else:
        written = answer_files.parse(answer, case)
        workspace = answer_files.overlay(case, written)
    judged = judge(workspace, case.hidden_test)
    usage = response.usage
    claims = claims_success(answer)
    return Baseline(passed=judged.passed, wall_s=wall, detail=judged.detail,
                    prompt_tokens=usage.prompt_tokens if usage else 0,
                    completion_tokens=usage.completion_tokens if usage else 0,
                    files=sorted(written), claims_success=claims,
                    false_success=false_success(judged.passed, "none", True, claims), answer=answer[:ANSWER_CLIP])


_BLOCK = re.compile(r"```(?:python|py)?[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(answer: str) -> str:
    """The answer's code: its python blocks joined (a model may split helpers out), else all of it."""
    blocks = _BLOCK.findall(answer)
    if not blocks and "```" in answer:  # an unclosed block (the answer hit max_tokens)
        blocks = [answer.split("```", 1)[1].split("\n", 1)[-1]]
    return "\n\n".join(blocks) if blocks else answer

