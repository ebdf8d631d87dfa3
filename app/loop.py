"""The agent loop for one plan step: model round, tool calls, repeat, until the checks let it finish.

Each model round is one journaled `ctx.run_typed` step and each tool call is a durable call,
so the message list is rebuilt identically on replay from journaled results alone. What the
model is sent is that list fitted to its context window (app/window.py).

The step's policies live in one object (app/brain/gate.py: repeats, finishing); this module
does what it says, durably. Three things happen here beside the model's own calls:
- a write's content is asked for as plain text (app/brain/prompts.py) when the call has none,
  which is always the case in structured mode; writing over a file the task never read is
  refused, with the file's content;
- a finish (or a plain answer) runs the harness's checks first (app/harness.py); a failure
  goes back to the model, a failure that does not converge gets a fresh sample of the failing
  file, and past the bound the step ends failed with the failing output;
- the step's result carries the checks' last runs: the answer's evidence (app/brain/evidence.py).
"""

from __future__ import annotations

from typing import Any

from app import harness, retry, tools
from app import sandbox_service as sandbox
from app.brain import checks, paths, prompts
from app.brain.checks import TEST_NAME
from app.brain.evidence import ok
from app.brain.gate import Bounds, StepGate
from app.context import clip
from app.models import FileEntryOut, ModelTurn, PathIn, PlanStep, StepResult, Usage
from app.taskrun import TaskRun
from app.window import SAVED_DIR, StepWindow

SYSTEM_PROMPT = (
    "You are a coding agent. You work in a Linux sandbox; /project is the working directory, "
    "python3 is installed and there is no network. Use the tools to do the current step: write "
    "complete code to files (never a stub), then run it to check it, for example on the examples "
    "given in the request, and fix what is wrong. When done, call finish with a one-line result: "
    "the agent then runs the tests it finds itself. Be brief."
)
MAX_SUMMARY = 500
MAX_SHOWN_WRITE = 4_000  # of a file written from text, shown back to the model in the tool result
MAX_LISTED_FILES = 40  # of the workspace, in a step's first prompt
MAX_AFTER_WRITE = 2_000  # of a failing check's output, in a write's result
MAX_TESTS_READ = 3  # test files read to show beside code being written
_UNLISTED = (SAVED_DIR.split("/")[0], ".git", "__pycache__")
UNCHANGED = ("note: {path} already held exactly this, so nothing changed. If something fails, the cause is "
             "elsewhere: read the error again (a command's arguments, another file).")
BLIND_WRITE = ("error: {path} already exists and this task has not read it, so writing it whole would lose what "
               "it holds. Its current content:\n{shown}\nWrite it again with that in view (keep what is right), "
               "or change a part of it with edit_file.")


def step_prompt(context: str, number: int, step: PlanStep, files: list[FileEntryOut],
                notice: str | None = None) -> str:
    """The step's first user message. `notice`: what the sandbox says happened to the workspace
    (a snapshot that could not be found, a rollback), told before the model acts on it."""
    sandbox_line = f"{sandbox.sandbox_says(notice)}\n\n" if notice else ""
    return (f"{context}\n\n{sandbox_line}{workspace_line(files)}\n\n"
            f"Current step {number}: {step.title}\n{step.instructions}").strip()


def workspace_line(files: list[FileEntryOut]) -> str:
    """What the workspace holds as the step starts: a small model that knows `solution.py` does
    not exist yet writes it, instead of editing or running it."""
    shown = [e for e in files if not set(e.path.split("/")) & set(_UNLISTED)]
    if not shown:
        return "Files in /project: none yet."
    names = [e.path + ("/" if e.kind == "dir" else "") for e in shown[:MAX_LISTED_FILES]]
    more = f" and {len(shown) - MAX_LISTED_FILES} more (list_files shows them)" if len(shown) > MAX_LISTED_FILES else ""
    return f"Files in /project: {', '.join(names)}{more}."


class Step:
    """One step's run: its messages, its gate, and the durable actions the gate asks for."""

    def __init__(self, task: TaskRun, number: int, step: PlanStep, prompt: str, request: str,
                 workspace: list[str]) -> None:
        self.task, self.number, self.step, self.prompt = task, number, step, prompt
        self.workspace = workspace  # the files, as the latest listing showed them
        config = task.config
        self.schemas = tools.schemas(config.tool_mode)
        self.gate = StepGate(step_text=f"{step.title}\n{step.instructions}", request=request,
                             enabled=config.finish_check == "on",
                             bounds=Bounds(config.check_failures, config.resample_after, config.resamples))
        self.usage = Usage()
        self.report = ""  # the latest failing check's output: shown when a file is written
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT},
                                               {"role": "user", "content": prompt}]

    async def run(self) -> StepResult:
        task = self.task
        window = StepWindow(task, self.number, self.schemas)
        for round_no in range(1, task.config.max_rounds_per_step + 1):
            # The model boundary: the budget is checked and new steering joins the conversation.
            for text in await task.controls.at_model_boundary():
                self.messages.append({"role": "user", "content": f"Guidance from the user: {text}"})
            label = f"step {self.number}: {self.step.title[:60]}, round {round_no}"
            prompt = await window.fit(self.messages, label)
            turn = await task.ctx.run_typed(
                label, task.model().complete, retry.model_step(ModelTurn),
                prompt, self.schemas, f"{task.task_id}-s{self.number}-r{round_no}",
                session_id=task.session_id, task_id=task.task_id, label=label,  # addresses live text for the web UI
            )
            self._charge(turn)
            self.messages.append(turn.message)
            calls = [] if turn.format_error else turn.message.get("tool_calls") or []
            task.emit("model_round", _round_text(turn), ref=label, hold=bool(calls))  # goes with the first tool_call
            if turn.format_error:
                self.messages.append({"role": "user", "content": f"error: {turn.format_error}"})
                continue
            if not calls:
                # A plain answer with no tool call is the model saying it is done.
                op_id = f"{task.task_id}/s{self.number}/r{round_no}/answer"
                ended = await self._finish(op_id, turn.message.get("content") or "(no result)")
                if isinstance(ended, StepResult):
                    return ended
                self.messages.append({"role": "user", "content": ended})
                continue
            result = await self._calls(round_no, calls)
            if result is not None:
                return result
        return await self._close(f"gave up after {task.config.max_rounds_per_step} model rounds")

    async def _calls(self, round_no: int, calls: list[dict[str, Any]]) -> StepResult | None:
        task, gate = self.task, self.gate
        refused, failed = 0, False
        for index, call in enumerate(calls):
            op_id = f"{task.task_id}/s{self.number}/r{round_no}/c{index}"
            task.emit("tool_call", tools.describe_call(call, limit=400), ref=op_id)
            name = call.get("function", {}).get("name")
            refusal = gate.refusal(call)
            if refusal is not None:
                outcome, content = tools.ToolOutcome(refusal, error=True), None
                refused += 1
            elif name == tools.FINISH:
                summary = str(harness.call_args(call).get("result") or "(no result)")
                ended = await self._finish(op_id, summary)
                if isinstance(ended, StepResult):
                    tools.emit_result(task, op_id, ended.summary)
                    return ended
                outcome, content = tools.ToolOutcome(ended, error=True), None
            elif name == "write_file":
                outcome, content = await self._write(op_id, call, round_no)
            else:
                outcome, content = await tools.dispatch(task, op_id, call), None
                self._remember(call, outcome)
            gate.ran(call, outcome.text, outcome.error, content)
            if name == "write_file" and content is not None and not outcome.error:
                outcome = await self._check_write(op_id, call, outcome)
            failed = failed or outcome.error
            tools.emit_result(task, op_id, outcome.text)
            self.messages.append({"role": "tool", "tool_call_id": call.get("id", op_id), "content": outcome.text})
        if gate.end_round(calls, refused, failed):
            # Told twice that its call already worked, the model keeps making it: for a small
            # model that is how "done" comes out. The checks decide what that is worth.
            return await self._close("closed: the model kept repeating this call",
                                     summary=gate.last_success[:MAX_SUMMARY], done=True)
        return None

    # ------------------------------------------------------------------ writes

    async def _write(self, op_id: str, call: dict[str, Any], round_no: int) -> tuple[tools.ToolOutcome, str | None]:
        """A write_file call: its content from the call or, when it has none, from a plain-text
        round; never over an existing file the task has not seen."""
        task = self.task
        checked = tools.validate(call)
        if isinstance(checked, tools.ToolOutcome):
            return checked, None
        _, args = checked
        path, content = paths.normal(args.path), getattr(args, "content", None)
        now = None
        if path not in task.memory.known:
            now = await harness.read_now(task, path)
            if now.content is not None and content is not None:
                return tools.ToolOutcome(BLIND_WRITE.format(path=path, shown=prompts.fenced(path, now.content)),
                                         error=True), None
        new = now is not None and now.content is None and path not in task.memory.known
        if content is None:
            now = now or await harness.read_now(task, path)
            # Repairs that do not converge: this write is a fresh sample of the failing file.
            sample = self.gate.take_sample(path)
            where = f"round {round_no}, call {op_id.rsplit('/c', 1)[-1]}"
            if sample is not None:
                self._announce_sample(op_id, path)
            content, problem = await self._content(
                op_id, path, now.content, getattr(args, "change", ""), where if sample is None else f"{where}, sample {sample}",
                temperature=None if sample is None else harness.resample_temperature(sample),
                fresh=sample is not None and path in task.memory.created)
            if content is None:
                return tools.ToolOutcome(f"error: {problem}. Call write_file again.", error=True), None
        outcome = await tools.dispatch(task, op_id, harness.write_call(op_id, path, content))
        if outcome.error:
            return outcome, None
        if new:
            task.memory.created.add(path)
        task.memory.saw(path, content)
        if now is not None and now.content == content:
            return tools.ToolOutcome(f"{outcome.text}\n{UNCHANGED.format(path=path)}", exit_code=outcome.exit_code), content
        shown = f"\n{prompts.fenced(path, content, MAX_SHOWN_WRITE)}" if getattr(args, "content", None) is None else ""
        return tools.ToolOutcome(outcome.text + shown, exit_code=outcome.exit_code), content

    async def _check_write(self, op_id: str, call: dict[str, Any], outcome: tools.ToolOutcome) -> tools.ToolOutcome:
        """Right after a Python file is written: its tests and examples, run by the harness, and
        what they show, in the write's result. The model sees a failure at once instead of
        after a finish (and does not spend rounds running the file to see nothing); a finish
        with nothing changed since then does not run them again."""
        path = paths.normal(str(harness.call_args(call).get("path", "")))
        if not path.endswith(".py"):
            return outcome
        self.workspace = sorted({*self.workspace, path})
        planned = [c for c in await harness.plan(self.task, self.gate, self.workspace) if c.kind in ("tests", "examples")]
        if not planned:
            return outcome
        runs = await harness.run_checks(self.task, f"{op_id}/after", self.number, planned)
        self.gate.checked(runs)
        failing = [r for r in runs if not ok(r.run)]
        self.report = f"`{failing[0].run.command}` ({failing[0].run.summary}):\n{failing[0].output}" if failing else ""
        if failing:
            self.gate.failed(failing[0].output)
        lines = [f"The agent ran the checks: `{r.run.command}` → exit {r.run.exit_code}: {r.run.summary}"
                 + ("" if ok(r.run) else f"\n{clip(r.output, MAX_AFTER_WRITE)}") for r in runs]
        return tools.ToolOutcome(outcome.text + "\n" + "\n".join(lines), exit_code=outcome.exit_code)

    async def _content(self, op_id: str, path: str, current: str | None, change: str, where: str,
                       temperature: float | None = None, fresh: bool = False) -> tuple[str | None, str]:
        """The file's content, asked for in plain chat; a Python answer that does not parse is
        asked for once more, with what was written and the parser's error in view."""
        request = prompts.WriteRequest(request=self.prompt, path=path, current=None if fresh else current,
                                       change=change, report=self.report, others=await self._others(path))
        label = f"step {self.number}: write {path[:60]}, {where}"
        answer, turn = await harness.ask_for_code(self.task, label, f"{op_id}/text", prompts.write_prompt(request),
                                                  temperature)
        self._charge(turn)
        self.task.emit("model_round", f"{path}: " + ("the file as text" if answer else "no answer"),
                       detail=answer, ref=label)
        content, problem = harness.content_from(answer, request)
        if turn.format_error:
            problem = f"the answer with {path}'s content was not used: {turn.format_error}"
        broken = tools.syntax_error(path, content) if content is not None else None
        if broken is None:
            return content, problem
        again = prompts.WriteRequest(request=self.prompt, path=path, current=content, change=change,
                                     report=broken, others=request.others)
        label = f"step {self.number}: write {path[:60]} again, {where}"
        answer, turn = await harness.ask_for_code(self.task, label, f"{op_id}/text2", prompts.write_prompt(again),
                                                  prompts.SAMPLED)
        self._charge(turn)
        self.task.emit("model_round", f"{path} did not parse; written again", detail=answer, ref=label)
        fixed, _ = harness.content_from(answer, again)
        return (fixed, "") if fixed is not None and tools.syntax_error(path, fixed) is None else (content, "")

    async def _others(self, path: str) -> tuple[tuple[str, str], ...]:
        """Files worth seeing beside `path`: for code, the tests it must pass (read if the task
        has not yet); for a test, the code it tests, as the task last read or wrote it."""
        is_test = bool(TEST_NAME.search(path))
        if not is_test and path.endswith(".py"):
            for test in [t for t in checks.test_files(self.workspace) if t not in self.task.memory.seen][:MAX_TESTS_READ]:
                await harness.read_now(self.task, test)
        return tuple((p, c) for p, c in self.task.memory.seen.items()
                     if p != path and p.endswith(".py") and bool(TEST_NAME.search(p)) != is_test)

    def _remember(self, call: dict[str, Any], outcome: tools.ToolOutcome) -> None:
        name, args = call.get("function", {}).get("name"), harness.call_args(call)
        path = paths.normal(str(args.get("path", "")))
        if outcome.error or path == ".":
            return
        if name == "read_file" and not outcome.text.startswith("[sandbox]"):
            self.task.memory.saw(path, outcome.text)
        elif name == "edit_file":
            self.task.memory.saw(path, None)  # changed; its content is read again when needed

    # ------------------------------------------------------------------ finishing

    async def _finish(self, op_id: str, summary: str) -> StepResult | str:
        """The model says the step is done: the checks decide. The StepResult that ends the
        step, or the error the model is answered with."""
        gate = self.gate
        if (stubs := gate.stub_refusal()) is not None:
            return stubs
        self.workspace = workspace = await harness.workspace_files(self.task)
        planned = await harness.plan(self.task, gate, workspace)
        if not planned:
            refusal = gate.without_checks(workspace)
            return refusal if refusal is not None else self._result("done", summary)
        fresh = gate.need_run(planned)
        runs = await harness.run_checks(self.task, op_id, self.number, planned) if fresh else gate.runs_since_change(planned)
        decision = gate.after_checks(runs)
        self.report = decision.report
        if decision.action == "resample" and decision.path is not None:
            # A fresh sample of the failing file, checked at once; a failure goes back to the
            # model as any other would (samples are never chained).
            op_id = f"{op_id}/resample{gate.resampled}"
            if await self._resample(op_id, decision.path):
                runs = await harness.run_checks(self.task, op_id, self.number, planned)
                decision = gate.after_checks(runs, may_resample=False)
        self.report = decision.report
        if decision.action == "finish":
            return self._result("done", summary)
        if decision.action == "fail":
            return self._result("failed", f"{summary[:MAX_SUMMARY]}\n(step failed: {decision.report})")
        return decision.text

    async def _resample(self, op_id: str, path: str) -> bool:
        """Write `path` afresh (fresh: without its failing code, if the task created it) from
        the request and the failing output. Whether a new version was written."""
        now = await harness.read_now(self.task, path)
        fresh = path in self.task.memory.created
        self._announce_sample(op_id, path)
        content, _ = await self._content(op_id, path, now.content, "", f"sample {self.gate.resampled}",
                                         harness.resample_temperature(self.gate.resampled), fresh=fresh)
        if content is None or content == now.content:
            return False
        written = await harness.write(self.task, f"{op_id}/write", path, content, "resample")
        if written.error:
            return False
        self.gate.ran(harness.write_call(op_id, path, content), written.text, False, content)
        return True

    def _announce_sample(self, op_id: str, path: str) -> None:
        self.task.emit("rewrite", f"step {self.number}: the checks keep failing; asking for {path} afresh "
                       f"(sample {self.gate.resampled} of {self.gate.bounds.resamples})", ref=op_id)

    async def _close(self, why: str, summary: str = "", done: bool = False) -> StepResult:
        """The step ends without the model's finish: the checks (if there are any to run) say
        whether its work stands; with none, `done` says."""
        workspace = await harness.workspace_files(self.task)
        planned = await harness.plan(self.task, self.gate, workspace)
        op_id = f"{self.task.task_id}/s{self.number}/close"
        if planned and self.gate.need_run(planned):
            self.gate.checked(await harness.run_checks(self.task, op_id, self.number, planned))
        last = self.gate.latest_runs() if planned else []
        text = f"{summary} ({why})" if summary else why
        if last:
            passing = all(ok(r) for r in last)
            return self._result("done" if passing else "failed",
                                f"{text}; the checks {'pass' if passing else 'fail'}")
        return self._result("done" if done else "failed", text)

    def _result(self, status: str, summary: str) -> StepResult:
        return StepResult(status=status, summary=summary, usage=self.usage,  # type: ignore[arg-type]
                          checks=self.gate.latest_runs())

    def _charge(self, turn: ModelTurn) -> None:
        self.usage = self.usage.plus(turn.usage)
        self.task.controls.charge(turn.usage)


async def run_step(task: TaskRun, number: int, step: PlanStep, step_context: str, request: str = "") -> StepResult:
    # A durable call like any tool's: a replay reads the same listing from the journal. It is
    # the step's first sandbox call, so it carries any pending notice, which the prompt tells.
    listing = await task.ctx.object_call(sandbox.list_for_task, key=task.session_id, arg=PathIn(path="."))
    prompt = step_prompt(step_context, number, step, listing.entries, listing.notice)
    files = [e.path for e in listing.entries if e.kind == "file"]
    return await Step(task, number, step, prompt, request or f"{step.title}\n{step.instructions}", files).run()


def _round_text(turn: ModelTurn) -> str:
    calls = turn.message.get("tool_calls") or []
    text = turn.message.get("content") or ""
    if calls and text.lstrip().startswith(("{", "[")):
        text = ""  # a structured-mode answer: the tool_call events show it
    names = ", ".join(c["function"]["name"] for c in calls)
    return (text + (f" → {names}" if names else "")).strip() or "(empty answer)"
