"""A step's policies in one object, asked one question per tool call: may it run, and if not,
what does the model hear?

- **Repeats.** Exactly the previous round's call again (one retry of a call that failed may
  be deliberate), or two calls in turn where one writes a file: refused, since nothing will
  change. A model told so twice in a row is closing the step the only way it can.
- **Finishing.** A `finish` (or a plain answer) is a request to end the step; the harness's
  checks decide it (`after_checks`): all pass → done; a failure → refused with the output;
  failures that do not converge → a fresh sample of the failing file; past the bound → the
  step ends failed, with the failing output. With nothing to run, each of these refuses a
  finish once: a Python file the request names does not exist; the request asks for tests and
  there is no test file; the step says to run or test something and no command has run.

Everything it decides from is a journaled value (calls, outcomes, check results), so a replay
decides the same. No I/O here: app/loop.py does what it says.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import hashlib

from app.brain import checks, paths
from app.brain.evidence import latest, ok
from app.context import clip
from app.models import CheckRun

FINISH = "finish"
WRITES = ("write_file", "edit_file")

REPEATED_PAIR = (
    "error: you are repeating the same two calls in turn, with the same arguments, and their results "
    "are above: nothing will change. Do something different (read the error, fix the code or the "
    "command), or call finish if the step is done.")
REPEATED_CALL = (
    "error: this is exactly the call you made in the previous round, and its result is above. "
    "Do something different (write or fix a file, run another command), or call finish if the "
    "step is done.")
NOT_RUN = ("error: not finished: this step says to run or test, and no command has run yet. Call run_command "
           "to run it and check the output, then call finish.")
STUBS = ("error: not finished: in {path}, {names} has no code yet (only a docstring, pass or ...). Write the "
         "code (write_file {path}), then call finish.")
MISSING = ("error: not finished: the request names {paths}, and it does not exist in /project. Write it with "
           "write_file, then call finish.")
NO_TESTS = ("error: not finished: the request asks for tests, and there is no test file in /project (a file "
            "named test_*.py). Write the tests with write_file, then call finish: the agent runs them.")
CHECK_FAILED = ("error: not finished: the agent ran `{command}` and it failed ({summary}):\n{output}\n"
                "{advice}Then call finish: the checks run again.")
ADVICE = {
    "tests": "Fix the code so the tests pass (change a test only if the test itself is wrong). ",
    "examples": "The examples are right and the code is wrong: fix the code, leave the examples as they are. ",
    "command": "The request says to run this command: fix the code so that it works. ",
}
MAX_REPORT = 3_000  # of a failing check's output, in what the model is told
_TRACEBACK_FILE = re.compile(r'File "([^"]+\.py)", line|^([\w/.-]+\.py):\d+: ', re.MULTILINE)
_NAMED_CODE = re.compile(r"(?<![\w/.-])([A-Za-z_][\w/-]*\.py)\b")
_SAYS_RUN = re.compile(r"\b(run|runs|running|test|tests|testing|execute)\b", re.IGNORECASE)
_ASKS_TESTS = re.compile(
    r"\b(write|add|create|with|include|and)\b[^.\n]{0,40}\b(unit ?tests?|tests?|pytest|unittest)\b"
    r"|\btest_\w+\.py\b", re.IGNORECASE)


@dataclass(frozen=True)
class Bounds:
    """How long a step may try to make its checks pass."""

    check_failures: int = 6  # failed check runs before the step ends failed
    resample_after: int = 2  # failed finishes before the harness resamples the failing file
    resamples: int = 2  # fresh samples per step


@dataclass
class StepGate:
    step_text: str  # the step's title and instructions, or the request for a one-step plan
    request: str  # the user's latest message: what it quotes to run, whether it asks for tests
    enabled: bool = True  # AGENT_FINISH_CHECK: the finish rules; repeats are always refused
    bounds: Bounds = field(default_factory=Bounds)

    previous: list[dict[str, Any]] = field(default_factory=list)
    previous_failed: bool = False
    earlier: list[list[dict[str, Any]]] = field(default_factory=list)
    insisted: int = 0
    last_success: str = ""
    ran_command: bool = False
    with_examples: dict[str, bool] = field(default_factory=dict)  # Python files written: have examples
    stubbed: dict[str, list[str]] = field(default_factory=dict)  # Python files written: functions with no code
    written: list[str] = field(default_factory=list)  # files this step wrote, latest last
    refused_once: set[str] = field(default_factory=set)
    failures: int = 0  # failing check runs, after a write or at a finish
    resampled: int = 0
    last_failure: str = ""  # the output of the latest failing check
    workspace: list[str] = field(default_factory=list)  # its files, when the checks were last planned
    runs: list[CheckRun] = field(default_factory=list)  # this step's check runs, in order
    fresh: dict[tuple[str, str], CheckOutput] = field(default_factory=dict)  # run since the last change
    contents: dict[str, str] = field(default_factory=dict)  # call id → what a write put in its file

    # ------------------------------------------------------------------ every call

    def refusal(self, call: dict[str, Any]) -> str | None:
        """The error to answer a (non-finish) call with instead of running it, or None."""
        name = _name(call)
        if name == FINISH or (name == "write_file" and "content" not in call_args(call)):
            return None  # a write as text is asked for afresh each time: no repeat of anything
        if _same_call(call, self.previous) and (
                not self.previous_failed or (len(self.earlier) > 1 and _same_call(call, self.earlier[-2]))):
            return REPEATED_CALL
        if self._in_a_cycle(call):
            return REPEATED_PAIR
        return None

    def ran(self, call: dict[str, Any], text: str, error: bool, content: str | None = None) -> None:
        """A call ran (or was answered); `content`: what a write put in the file."""
        name = _name(call)
        if error:
            return
        self.last_success = text
        if name == "run_command":
            self.ran_command = True
            self._change()
        elif name in WRITES:
            path = paths.normal(str(call_args(call).get("path", "")))
            self._change()
            self.written = [p for p in self.written if p != path] + [path]
            if content is not None:
                self.contents[str(call.get("id"))] = hashlib.sha256(content.encode()).hexdigest()[:16]
            if path.endswith(".py") and content is not None:
                self.with_examples[path] = checks.has_examples(content)
                self.stubbed[path] = checks.stubs(content)

    def _change(self) -> None:
        self.fresh.clear()

    def end_round(self, calls: list[dict[str, Any]], refused: int, failed: bool) -> bool:
        """After a round: whether the step should close (the model insisted on refused repeats
        twice in a row: for a small model that is how "done" comes out)."""
        self.insisted = self.insisted + 1 if calls and refused == len(calls) else 0
        # A write as text is the same call each time ({"path": ...}) whatever it wrote: it is
        # remembered with its content's hash, so that writing something new is no repeat.
        seen = [self._identity(c) for c in calls]
        self.previous, self.previous_failed = seen, failed
        self.earlier.append(seen)
        return self.insisted >= 2

    def _identity(self, call: dict[str, Any]) -> dict[str, Any]:
        digest = self.contents.get(str(call.get("id")))
        if _name(call) != "write_file" or digest is None or "content" in call_args(call):
            return call
        args = {**call_args(call), "content_sha256": digest}
        return {**call, "function": {"name": "write_file", "arguments": json.dumps(args, sort_keys=True)}}

    # ------------------------------------------------------------------ finishing

    def plan_checks(self, workspace: list[str], pytest: bool | None = None) -> list[checks.PlannedCheck]:
        """What the harness runs before the step may finish, given the workspace's files (and
        whether the sandbox has pytest, if known)."""
        self.workspace = list(workspace)
        planned = [checks.tests_check(checks.test_files(workspace), pytest),
                   checks.examples_check([p for p, has in self.with_examples.items() if has and p in workspace])]
        return [c for c in planned if c is not None] + checks.quoted_commands(self.request)

    def stub_refusal(self) -> str | None:
        """The error to answer a finish with while a file the step wrote has a function with no
        code (once: it may be meant so), or None."""
        stubbed = {p: names for p, names in self.stubbed.items() if names}
        if not self.enabled or not stubbed or "stubs" in self.refused_once:
            return None
        self.refused_once.add("stubs")
        path, names = next(iter(stubbed.items()))
        return STUBS.format(path=path, names=", ".join(names))

    def without_checks(self, workspace: list[str]) -> str | None:
        """With nothing to run: the refusal to answer a finish with (each at most once), or None."""
        if not self.enabled:
            return None
        missing = [p for p in named_code(self.request) if paths.normal(p) not in workspace]
        if missing and "missing" not in self.refused_once:
            self.refused_once.add("missing")
            return MISSING.format(paths=", ".join(missing))
        if _ASKS_TESTS.search(self.request) and not checks.test_files(workspace) and "tests" not in self.refused_once:
            self.refused_once.add("tests")
            return NO_TESTS
        if _SAYS_RUN.search(self.step_text) and not self.ran_command and "run" not in self.refused_once:
            self.refused_once.add("run")
            return NOT_RUN
        return None

    def need_run(self, planned: list[checks.PlannedCheck]) -> bool:
        """Whether the checks must run: one of them has not run since the last change. (Run
        again on the same files, a check says the same: a code that loops forever times out
        again, a minute each time.)"""
        return any((c.kind, c.command) not in self.fresh for c in planned)

    def runs_since_change(self, planned: list[checks.PlannedCheck]) -> list[CheckOutput]:
        """The planned checks' runs since the last change, when `need_run` says none is due."""
        return [self.fresh[(c.kind, c.command)] for c in planned]

    def latest_runs(self) -> list[CheckRun]:
        return latest(self.runs)

    def checked(self, done: list[CheckOutput]) -> None:
        self.runs.extend(d.run for d in done)
        # A run with no result (cut off by a crash) says nothing: it is run again, never reused.
        self.fresh.update({(d.run.kind, d.run.command): d for d in done if d.run.exit_code is not None})

    def after_checks(self, done: list[CheckOutput], may_resample: bool = True) -> FinishDecision:
        """What a finish gets once its checks ran (each run with its output)."""
        self.checked(done)
        failing = [d for d in done if not ok(d.run)]
        if not failing:
            return FinishDecision("finish")
        self.failed(failing[0].output)
        first = failing[0].run
        output = clip(failing[0].output, MAX_REPORT)
        report = f"`{first.command}` ({first.summary}):\n{output}"
        text = CHECK_FAILED.format(command=first.command, summary=first.summary, output=output,
                                   advice=ADVICE[first.kind])
        if self.failures >= self.bounds.check_failures:
            return FinishDecision("fail", text=text, report=f"the checks still fail after {self.failures} tries: "
                                                            f"{report}")
        if may_resample and self._sample_due():
            target = self.resample_target(failing[0].output)
            if target is not None:
                self.resampled += 1
                return FinishDecision("resample", text=text, report=report, path=target)
        return FinishDecision("refuse", text=text, report=report)

    def failed(self, output: str) -> None:
        """A check run failed (after a write, or at a finish): one more try that did not work."""
        self.failures += 1
        self.last_failure = output

    def take_sample(self, path: str) -> int | None:
        """Whether this write of `path` should be a fresh sample rather than a repair: the
        repairs have not converged (failures since the step began reached the bound) and `path`
        is the failing file. The sample's number (1, 2...), or None."""
        if self._sample_due() and self.resample_target(self.last_failure) == path:
            self.resampled += 1
            return self.resampled
        return None

    def _sample_due(self) -> bool:
        """Sample k is due once the step has failed k * resample_after times (and k is left)."""
        return (self.resampled < self.bounds.resamples
                and self.failures >= (self.resampled + 1) * self.bounds.resample_after)

    def resample_target(self, output: str) -> str | None:
        """The file to write afresh: a test file that does not parse is the test's fault; else
        the latest non-test Python file this step wrote."""
        broken_tests = [p for p in self.written if checks.TEST_NAME.search(p) and p in output
                        and "SyntaxError" in output]
        if broken_tests:
            return broken_tests[-1]
        code = [p for p in self.written if p.endswith(".py") and not checks.TEST_NAME.search(p)]
        if code:
            return code[-1]
        # Nothing written yet (or only elsewhere): the deepest project file the traceback names.
        named = [a or b for a, b in _TRACEBACK_FILE.findall(output)]
        ours = [w for p in named for w in self.workspace
                if (p == w or p.endswith("/" + w)) and w.endswith(".py") and not checks.TEST_NAME.search(w)]
        return ours[-1] if ours else None

    def _in_a_cycle(self, call: dict[str, Any]) -> bool:
        """A, B, A and now B again, with the same arguments, one of them a write: writing the
        same text again changes nothing, so neither will the other call. (Two commands in turn
        may be polling something that changes, like a server starting.)"""
        earlier = self.earlier
        if len(earlier) < 3 or not _same_call(call, earlier[-2]):
            return False
        pair = [call, *earlier[-1]]
        return (len(earlier[-1]) == len(earlier[-3])
                and all(_same_call(c, earlier[-3]) for c in earlier[-1])
                and not all(_same_call(c, earlier[-2]) for c in earlier[-1])
                and any(_name(c) in WRITES for c in pair))


def named_code(request: str) -> list[str]:
    """The Python files a request names (`stats.py`, `pkg/util.py`), in order."""
    return list(dict.fromkeys(_NAMED_CODE.findall(request)))


@dataclass(frozen=True)
class FinishDecision:
    """A finish's fate: "finish", "refuse", "resample" (`path`) or "fail". `text`: what the model
    is told; `report`: the failing check and its output, for the next write and the result."""

    action: str
    text: str = ""
    report: str = ""
    path: str | None = None


@dataclass(frozen=True)
class CheckOutput:
    run: CheckRun
    output: str  # the check's output as the model is shown it


def _name(call: dict[str, Any]) -> str:
    return str(call.get("function", {}).get("name", ""))


def call_args(call: dict[str, Any]) -> dict[str, Any]:
    """A call's arguments as a dict ({} when they are not one)."""
    try:
        args = json.loads(call.get("function", {}).get("arguments") or "{}")
    except (TypeError, ValueError):
        return {}
    return args if isinstance(args, dict) else {}


def _same_call(call: dict[str, Any], previous: list[dict[str, Any]]) -> bool:
    fn = call.get("function", {})
    return any(_name(p) == fn.get("name") and _canonical(p.get("function", {}).get("arguments"))
               == _canonical(fn.get("arguments")) for p in previous)


def _canonical(arguments: object) -> str:
    try:
        return json.dumps(json.loads(arguments), sort_keys=True) if isinstance(arguments, str) else str(arguments)
    except ValueError:
        return str(arguments)
