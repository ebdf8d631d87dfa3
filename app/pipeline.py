"""A fixed path for the smallest model (`AGENT_MODE=pipeline`): no tool choice at all.

The 0.5B choosing actions passed 4 of 40 HumanEval problems, against 32 asked once, so it is
asked what it is good at and the harness does the rest:

1. the request, with the files it names (and the workspace's tests) shown;
2. every file to create or change, whole, as text (app/brain/prompts.py: files);
3. the harness's checks (app/brain/checks.py), as for any step;
4. on a failure: a repair (the same request with the files as they are and the failing output),
   then fresh samples at a higher temperature (without the failing code of files the task
   created), up to the step's bound; after it, the step ends failed with the failing output.

Every round and write is journaled like the loop's, with ids from the step and attempt.
"""

from __future__ import annotations

import re

from app import harness
from app import sandbox_service as sandbox
from app.brain import checks, paths, prompts, text_edits
from app.brain.gate import Bounds, StepGate
from app.loop import step_prompt
from app.models import PathIn, PlanStep, StepResult, Usage
from app.taskrun import TaskRun

REPAIRS = 1  # attempts with the failing files in view, before fresh samples
MAX_SHOWN_FILES = 6
_NAMED = re.compile(r"(?<![\w/.-])([\w][\w/.-]*\.(?:py|txt|md|json|csv|toml|cfg|ini|sh))\b")


async def run_step(task: TaskRun, number: int, step: PlanStep, step_context: str, request: str) -> StepResult:
    listing = await task.ctx.object_call(sandbox.list_for_task, key=task.session_id, arg=PathIn(path="."))
    prompt = step_prompt(step_context, number, step, listing.entries, listing.notice)
    workspace = [e.path for e in listing.entries if e.kind == "file"]
    gate = StepGate(step_text=f"{step.title}\n{step.instructions}", request=request,
                    bounds=Bounds(check_failures=1 + REPAIRS + task.config.resamples, resamples=0))
    named = named_files(f"{request}\n{step.title}\n{step.instructions}")
    usage = Usage()
    report = ""
    attempts = 1 + REPAIRS + task.config.resamples
    for attempt in range(1, attempts + 1):
        sampled = attempt > 1 + REPAIRS
        shown = await _shown(task, named, workspace, fresh=sampled)
        label = f"step {number}: files, attempt {attempt}"
        op_id = f"{task.task_id}/s{number}/a{attempt}"
        task.emit("model_round", f"step {number}: asking for the files whole (attempt {attempt} of {attempts})",
                  ref=label)
        answer, turn = await harness.ask_for_code(task, label, f"{op_id}/text", prompts.files_prompt(prompt, shown, report),
                                                  prompts.SAMPLED if sampled else None)
        usage = usage.plus(turn.usage)
        task.controls.charge(turn.usage)
        files = answer_files(answer, named, workspace)
        if not files:
            report = "The answer held no file: name each file on the line before its code block."
            continue
        unseen = [p for p in files if p in workspace and p not in task.memory.known]
        for index, (path, content) in enumerate(files.items()):
            if path in unseen:
                continue  # never written over unseen: it is shown next time instead
            written = await harness.write(task, f"{op_id}/w{index}", path, content, "write")
            if not written.error:
                if path not in workspace:
                    task.memory.created.add(path)
                gate.ran(harness.write_call(f"{op_id}/w{index}", path, content), written.text, False, content)
                workspace = sorted({*workspace, path})
        if unseen:
            named = list(dict.fromkeys([*named, *unseen]))
            report = (f"{', '.join(unseen)} already exist and were not shown to you, so they were not written. "
                      "Their content is shown now.")
            continue
        named = list(dict.fromkeys([*named, *files]))
        planned = await harness.plan(task, gate, workspace)
        if not planned:
            return StepResult(status="done", summary=f"wrote {', '.join(files)}", usage=usage)
        decision = gate.after_checks(await harness.run_checks(task, op_id, number, planned), may_resample=False)
        if decision.action == "finish":
            return StepResult(status="done", summary=f"wrote {', '.join(files)}", usage=usage,
                              checks=gate.latest_runs())
        report = decision.report
    why = f"the checks still fail after {attempts} attempts" if gate.runs else f"no usable answer in {attempts} attempts"
    return StepResult(status="failed", summary=f"{why}: {report}"[:2_000], usage=usage, checks=gate.latest_runs())


def named_files(text: str) -> list[str]:
    """The files a request names (`stats.py`, `pkg/util.py`), in order."""
    return list(dict.fromkeys(paths.normal(m) for m in _NAMED.findall(text) if not m.startswith(("http", "www."))))


def answer_files(answer: str, named: list[str], workspace: list[str]) -> dict[str, str]:
    """The answer's files by name; a single unnamed block goes to the one code file the
    request names, if it names exactly one."""
    files = text_edits.files(answer)
    if files:
        return files
    code = [p for p in named if p.endswith(".py") and not checks.TEST_NAME.search(p)]
    found = [b for b in text_edits.blocks(answer) if b.code.strip()]
    if len(found) == 1 and len(code) == 1:
        return {code[0]: found[0].code if found[0].code.endswith("\n") else found[0].code + "\n"}
    return {}


async def _shown(task: TaskRun, named: list[str], workspace: list[str], fresh: bool) -> list[tuple[str, str]]:
    """The files the model sees: those the request names that exist, and the tests. A fresh
    sample does not see the failing code of files the task created."""
    paths = [p for p in named if p in workspace] + [p for p in checks.test_files(workspace) if p not in named]
    shown = []
    for path in paths[:MAX_SHOWN_FILES]:
        if fresh and path in task.memory.created and not checks.TEST_NAME.search(path):
            continue
        now = await harness.read_now(task, path)
        if now.content is not None:
            shown.append((path, now.content))
    return shown
