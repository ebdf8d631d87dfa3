"""Whether a step may finish yet, and the rewrite of a file whose docstring examples fail.

With `AGENT_FINISH_CHECK=on` (the offline model's default) a step's `finish` is refused, once,
if the step says to run or test and no command has run, or if a Python file changed since
the last command. A Python file with docstring examples (`>>>`, Python's doctest format) is
checked by running them: the `finish` runs `python3 -m doctest FILE` as a tool call of its own
(journaled, shown, approved like any other).

When they fail in a file the step wrote whole, the file is first *rewritten*: the model is asked
in plain chat (no tools, no grammar) for the whole file again, given the request and doctest's
report but not its own wrong code, which a small model tends to write again. The answer's code
block is written with a write_file call of its own and the examples run again; if they pass the
finish goes through, and after MAX_REWRITES failed rewrites the model is told, in its own
conversation, that they fail (at most MAX_EXAMPLE_REFUSALS times a step).

A Python file the step writes whole that does not parse is rewritten the same way at once, from
the parser's error, without waiting for a `finish`: a small model that wrote broken code into a
JSON string patches it with edits for many rounds. A rewrite counts as good when it parses and
its examples, if it has any, pass. The rewrites happen once a step, for whichever comes first.

Everything here is decided from journaled calls and results only (tool outcomes, model turns),
so a replay refuses the same calls and makes the same rewrites.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

from app import context, retry, tools
from app.llm import model_client
from app.models import ModelTurn, Usage
from app.taskrun import TaskRun

_SAYS_RUN = re.compile(r"\b(run|runs|running|test|tests|testing|execute)\b", re.IGNORECASE)
NOT_RUN = ("error: not finished: this step says to run or test, and no command has run yet. Call run_command "
           "to run it and check the output, then call finish.")
NOT_CHECKED = ("error: not finished: you changed {path} and have not run anything since. Run it with "
               "run_command (for example on the examples from the request), check the output, fix what is "
               "wrong, then call finish.")
EXAMPLES_FAIL = ("error: not finished: the examples in the docstrings of {paths} were run with `{command}` "
                 "and some fail:\n{output}\nThe examples are right and the code is wrong: fix the code (write "
                 "the whole file again with write_file), leave the examples as they are, then call finish.")
EXAMPLES_UNKNOWN = ("error: not finished: the examples in the docstrings of {paths} were run with `{command}`, "
                    "but no result came back:\n{output}\nCall finish again to run them again.")
REWRITTEN = "\n(Before this, {paths} was written again from the request, {times}, and the examples failed each time.)"
BROKEN_REWRITTEN = ("\n{path} did not parse, so it was written again from the request ({times}) and now parses"
                    "{examples}. Call read_file to see it before changing it.")
BROKEN_STILL = ("\n{path} did not parse; it was written again from the request ({times}), and the last version "
                "is still wrong:\n{report}\nCall read_file to see it, then fix it.")
MAX_EXAMPLE_REFUSALS = 3  # per step: a model that cannot make them pass still finishes

# The rewrite. The first is greedy (the configured temperature): asked afresh, without its
# wrong code in view, the 1.5B wrote a passing file for 7 of the 13 HumanEval/0-39 cases whose
# examples its own first write failed, and the second rewrite, sampled so that it can differ from
# the first, for 2 more (bench/results/eval-2026-12-03.md, "The rewrite alone").
MAX_REWRITES = 2
REWRITE_TEMPERATURES: tuple[float | None, ...] = (None, 0.7)
REWRITE_SYSTEM = "You are a careful Python programmer. You answer with code only."
REWRITE_PROMPT = ("The request:\n{request}\n\n{path} was written for this request, and {problem}:\n{report}\n\n"
                  "{advice}Write {path} again, whole: every function complete, so that {goal}. Answer with "
                  "the whole file in one ```python code block.")
EXAMPLES_PROBLEM = ("the examples in its docstrings fail when run with `{command}`", "The examples are right. ",
                    "the examples pass")
SYNTAX_PROBLEM = ("it is not valid Python", "", "it is valid Python and does what the request asks")
REWRITE_AGAIN = "\n\n(Rewrite {number}: the rewrite before this one was wrong too.)"
MAX_REPORT_CHARS = 3_000  # of doctest's report, in a rewrite request
_BLOCK = re.compile(r"```(?:python|py)?[^\n]*\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class ExamplesRefusal:
    text: str  # the error the finish is answered with


class FinishCheck:
    """A step's finish check: what ran and what changed, from the step's journaled calls."""

    def __init__(self, task: TaskRun, number: int, request: str, step_text: str) -> None:
        self.task, self.number, self.request = task, number, request
        self.enabled = task.config.finish_check == "on"
        self.says_run = bool(_SAYS_RUN.search(step_text))
        self.ran = False
        self.unchecked: str | None = None  # a Python file changed since the last command
        self.refused = False
        self.with_examples: set[str] = set()  # Python files that have docstring examples
        self.examples_stale: list[str] = []  # ... changed since their examples last ran, in order
        self.written_whole: set[str] = set()  # files this step wrote with write_file: its own to rewrite
        self.example_refusals = 0
        self.rewrote = False  # rewrites happen at the step's first failing examples only
        self.usage = Usage()  # of the rewrite rounds

    def saw(self, call: dict[str, Any], outcome: tools.ToolOutcome) -> None:
        name, args = _name_and_args(call)
        if name == "run_command" and not outcome.error:
            self.ran, self.unchecked = True, None
        elif name in ("write_file", "edit_file") and not outcome.error and str(args.get("path", "")).endswith(".py"):
            path = str(args["path"])
            self.unchecked = path
            written = str(args.get("content" if name == "write_file" else "new", ""))
            if name == "write_file":
                self.written_whole.add(path)
            if _has_examples(written):
                self.with_examples.add(path)
            elif name == "write_file":
                self.with_examples.discard(path)
            if path in self.with_examples and path not in self.examples_stale:
                self.examples_stale.append(path)

    def refusal(self, call: dict[str, Any]) -> str | None:
        """The error to answer a `finish` with, or None to let the call through. Asked after
        `examples_refusal`: running the examples counts as running a command."""
        if not self.enabled or self.refused or _name_and_args(call)[0] != tools.FINISH:
            return None
        if self.says_run and not self.ran:
            self.refused = True
            return NOT_RUN
        if self.unchecked is not None and self.unchecked not in self.with_examples:
            self.refused = True
            return NOT_CHECKED.format(path=self.unchecked)
        return None

    async def examples_refusal(self, op_id: str, call: dict[str, Any]) -> ExamplesRefusal | None:
        """Before a `finish`: run the examples of the Python files changed since their examples
        last ran (none once the model was told MAX_EXAMPLE_REFUSALS times that they fail);
        rewrite the failing files the step wrote whole. The refusal to answer the finish with
        if an example still fails."""
        if not self.enabled or _name_and_args(call)[0] != tools.FINISH or self.example_refusals >= MAX_EXAMPLE_REFUSALS:
            return None
        paths = [p for p in self.examples_stale if p in self.with_examples]
        if not paths:
            return None
        outcome = await self._run_examples(f"{op_id}/examples", "finish check", paths)
        if outcome.exit_code == 0:
            return None
        command = _doctest(paths)
        # No exit code: the run was cut off (its worker killed) or refused. Never run again unasked:
        # examples are code, and may have done part of what they do.
        if outcome.exit_code is None:
            self.example_refusals += 1
            return ExamplesRefusal(EXAMPLES_UNKNOWN.format(paths=", ".join(paths), command=command, output=outcome.text))
        ours = [p for p in paths if p in self.written_whole]
        note = ""
        report = outcome.text
        if ours and not self.rewrote:
            self.rewrote = True
            good, report, made = await self._rewrite(op_id, ours, report, syntax=False)
            if good:
                return None
            note = REWRITTEN.format(paths=", ".join(ours), times=_times(made)) if made else ""
        self.example_refusals += 1
        return ExamplesRefusal(EXAMPLES_FAIL.format(paths=", ".join(paths), command=command, output=report) + note)

    async def rewrite_if_broken(self, op_id: str, call: dict[str, Any],
                                outcome: tools.ToolOutcome) -> tools.ToolOutcome | None:
        """After a tool call: if it wrote a whole Python file that does not parse, rewrite the
        file at once (the step's rewrites, unless it had them). The outcome to answer the call
        with instead of its own, or None."""
        name, args = _name_and_args(call)
        if not self.enabled or self.rewrote or name != "write_file" or outcome.error:
            return None
        path = str(args.get("path", ""))
        broken = tools.syntax_error(path, str(args.get("content", "")))
        if broken is None:
            return None
        self.rewrote = True
        good, report, made = await self._rewrite(op_id, [path], broken, syntax=True)
        if not made:
            return None
        if good:
            examples = ", and its examples pass" if path in self.with_examples else ""
            note = BROKEN_REWRITTEN.format(path=path, times=_times(made), examples=examples)
        else:
            note = BROKEN_STILL.format(path=path, times=_times(made), report=report)
        return tools.ToolOutcome(outcome.text + note, exit_code=outcome.exit_code)

    async def _run_examples(self, ref: str, why: str, paths: list[str]) -> tools.ToolOutcome:
        probe = {"id": ref, "type": "function",
                 "function": {"name": "run_command", "arguments": json.dumps({"command": _doctest(paths), "timeout_s": 60})}}
        self.task.emit("tool_call", f"{why}: {tools.describe_call(probe, limit=400)}", ref=ref)
        outcome = await tools.dispatch(self.task, ref, probe)
        tools.emit_result(self.task, ref, outcome.text)
        self.saw(probe, outcome)
        if outcome.exit_code == 0:  # done with until their files change
            self.examples_stale = [p for p in self.examples_stale if p not in paths]
        return outcome

    async def _rewrite(self, op_id: str, paths: list[str], report: str, syntax: bool) -> tuple[bool, str, int]:
        """Rewrite `paths` until a rewrite is good (it parses, and its examples, if any, pass), at
        most MAX_REWRITES times; `report` says what is wrong with them now (`syntax`: that they
        do not parse). Returns whether the last rewrite is good, what is wrong with it if not,
        and how many rewrites were written."""
        made = 0
        for number in range(1, MAX_REWRITES + 1):
            written: list[tuple[str, str]] = []
            for index, path in enumerate(paths):
                code = await self._ask_rewrite(path, report, syntax, number, made,
                                               f"{op_id}/rewrite{number}/f{index}")
                if code is None:
                    continue
                ref = f"{op_id}/rewrite{number}/f{index}/write"
                write = {"id": ref, "type": "function",
                         "function": {"name": "write_file", "arguments": json.dumps({"path": path, "content": code})}}
                self.task.emit("tool_call", f"rewrite: {tools.describe_call(write, limit=400)}", ref=ref)
                outcome = await tools.dispatch(self.task, ref, write)
                tools.emit_result(self.task, ref, outcome.text)
                self.saw(write, outcome)
                if not outcome.error:
                    written.append((path, code))
            if not written:
                continue  # nothing new to judge
            made += 1
            broken = [note for path, code in written if (note := tools.syntax_error(path, code)) is not None]
            if broken:
                report, syntax = "\n".join(broken), True
                continue
            with_examples = [p for p in paths if p in self.with_examples]
            if with_examples:
                run = await self._run_examples(f"{op_id}/rewrite{number}/examples", "rewrite check", with_examples)
                if run.exit_code != 0:
                    report, syntax = run.text, False
                    continue
            return True, report, made
        return False, report, made

    async def _ask_rewrite(self, path: str, report: str, syntax: bool, number: int, made: int,
                           call_id: str) -> str | None:
        """One journaled plain-chat round asking for `path` whole; its code, or None if the
        answer holds none."""
        task = self.task
        prompt = rewrite_prompt(self.request, path, report, syntax)
        if made:
            prompt += REWRITE_AGAIN.format(number=number)
        messages = [{"role": "system", "content": REWRITE_SYSTEM}, {"role": "user", "content": prompt}]
        label = f"step {self.number}: rewrite {path[:60]}, {number}"
        why = f"{path} is not valid Python" if syntax else f"the examples of {path} fail"
        task.emit("rewrite", f"step {self.number}: {why}; asking the model for it whole "
                  f"(rewrite {number} of {MAX_REWRITES})", ref=label)
        turn = await task.ctx.run_typed(
            label, model_client().complete, retry.model_step(ModelTurn), messages, [], call_id,
            session_id=task.session_id, task_id=task.task_id, label=label,
            temperature=REWRITE_TEMPERATURES[number - 1],
        )
        self.usage = self.usage.plus(turn.usage)
        task.controls.charge(turn.usage)
        code = None if turn.format_error else code_in(turn.message.get("content") or "")
        task.emit("model_round", f"rewrite {number} of {path}: " + ("a whole file" if code else "no code in the answer"),
                  detail=turn.message.get("content") or "", ref=label)
        return code


def rewrite_prompt(request: str, path: str, report: str, syntax: bool) -> str:
    """The rewrite request's text, before REWRITE_AGAIN: what `path` is for and what is wrong
    with it (`syntax`: it does not parse; else its examples fail, `report` being doctest's)."""
    problem, advice, goal = SYNTAX_PROBLEM if syntax else EXAMPLES_PROBLEM
    return REWRITE_PROMPT.format(request=request, path=path, problem=problem.format(command=_doctest([path])),
                                 report=context.clip(report, MAX_REPORT_CHARS), advice=advice, goal=goal)


def _times(made: int) -> str:
    return "once" if made == 1 else f"{made} times"


def code_in(answer: str) -> str | None:
    """The code of a model's answer: its ```python blocks joined (a model may split helpers
    out), or None if it has none. Never the bare answer: "Done" is valid Python too."""
    code = "\n\n".join(block.strip("\n") for block in _BLOCK.findall(answer))
    return code + "\n" if code.strip() else None


def _doctest(paths: list[str]) -> str:
    return "python3 -m doctest " + " ".join(shlex.quote(p) for p in paths)


def _has_examples(code: str) -> bool:
    return any(line.lstrip().startswith(">>> ") for line in code.splitlines())


def _name_and_args(call: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    fn = call.get("function", {})
    try:
        args = json.loads(fn.get("arguments") or "{}")
    except ValueError:
        args = {}
    return fn.get("name", ""), args if isinstance(args, dict) else {}
