"""Run cases through the whole product, and the same model single-shot as a baseline.

One stack (restate-server, the worker serving the product plus the Bench service, the real
bubblewrap sandbox) serves every case; each case gets a fresh session. Per case: write its
starting files through the Sandbox object, send its message, wait until the session is idle,
read the workspace back through the public Sandbox API (list_files, read_file), and judge it
with the hidden test (bench/eval/judge.py). Wall time is message → idle; rounds and tokens are
the task's own usage as the Agent reports it.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import openai

from bench.eval.cases import SOLUTION_FILE, Case
from bench.eval.judge import judge
from tests.agent_helpers import events, send_message, status, wait_idle
from tests.harness import Stack

MAX_READ_BYTES = 256_000
SKIP_PARTS = {"__pycache__", ".git", ".pytest_cache"}
BASELINE_PROMPT = ("Complete the following Python function. Answer with the whole function, "
                   "including its imports, in one ```python code block.\n\n```python\n{prompt}\n```")
BASELINE_MAX_TOKENS = 1024


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

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Baseline:
    """The same model asked once, directly, with no tools (HumanEval cases only)."""

    passed: bool
    wall_s: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    detail: str = ""


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
        verdict = judge(files, case.hidden_test)
        return Outcome(
            case=case.name, group=case.group, passed=verdict.passed, wall_s=wall,
            # A task stopped by the timeout reports no usage: count its rounds from the event log.
            rounds=usage.get("rounds") or sum(e["kind"] in ("plan", "model_round") for e in log),
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            plan_s=(plans[0] - started_wall) if plans else None,
            steps=sum(1 for e in log if e["kind"] == "step_started"), status=end, detail=verdict.detail,
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


def _task_end(log: list[dict[str, Any]]) -> str:
    """How the task ended, from its session's events: the last step's status, or the error."""
    if any(e["kind"] == "error" for e in log):
        return "failed"
    finished = [e["text"] for e in log if e["kind"] == "step_finished"]
    failed = [t for t in finished if re.match(r"step \d+ failed", t)]
    return f"{len(failed)} step(s) failed" if failed else "done"


def single_shot(client: openai.OpenAI, model: str, case: Case) -> Baseline:
    """Ask the model once for the function (temperature 0) and judge its code block."""
    started = time.monotonic()
    response = client.chat.completions.create(
        model=model, temperature=0, max_tokens=BASELINE_MAX_TOKENS,
        messages=[{"role": "user", "content": BASELINE_PROMPT.format(prompt=case.prompt.strip())}],
    )
    wall = time.monotonic() - started
    code = extract_code(response.choices[0].message.content or "")
    # The prompt's imports are given to both the agent and this baseline (cases.humaneval_test),
    # so the file holds only what the model wrote.
    verdict = judge({SOLUTION_FILE: code}, case.hidden_test)
    usage = response.usage
    return Baseline(passed=verdict.passed, wall_s=wall, detail=verdict.detail,
                    prompt_tokens=usage.prompt_tokens if usage else 0,
                    completion_tokens=usage.completion_tokens if usage else 0)


_BLOCK = re.compile(r"```(?:python|py)?[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(answer: str) -> str:
    """The answer's code: its python blocks joined (a model may split helpers out), else all of it."""
    blocks = _BLOCK.findall(answer)
    if not blocks and "```" in answer:  # an unclosed block (the answer hit max_tokens)
        blocks = [answer.split("```", 1)[1].split("\n", 1)[-1]]
    return "\n\n".join(blocks) if blocks else answer

