"""`Task`: a workflow keyed by task id that runs plan, then steps, then tool loops.

A workflow runs exactly once per key, so the Agent's one-way start can never spawn a second
copy. Progress and the outcome go to the Agent as one-way sends (app/report.py): the Agent
may be busy waiting for this very task to clean up, and a blocking call would deadlock.
The first step journals the settings the task runs with (app/config.py: TaskSettings).

SAGA: a compensation is registered *before* the resource it undoes is acquired (the acquire
may complete even if we are cancelled while awaiting its answer). On a terminal error or a
cancellation the compensations run durably, the Agent is told, and the error is re-raised.
Retryable errors are not caught here: Restate retries them from the journal and nothing is
cleaned up that is still needed.
"""

from __future__ import annotations

from typing import Awaitable, Callable

import restate
from restate import TerminalError, WorkflowContext, WorkflowSharedContext

from app import loop, pipeline, report, retry
from app.brain import evidence
from app import sandbox_service as sandbox
from app.config import TaskSettings, settings
from app.controls import BudgetStopped
from app.errors import is_cancellation
from app.models import (
    AcquireIn, ApprovalDecision, Checkpoint, CheckpointIn, CheckpointOut, PlanItem, PlanStep, ProgressReport, ReleaseIn,
    SteerMessage, StepResult, TaskInput, TaskOutcome,
)
from app.planner import make_plan
from app.taskrun import TaskRun
from app.window import conversation_view

MAX_SUMMARY_CHARS = 1_500

task_workflow = restate.Workflow(
    "Task",
    invocation_retry_policy=retry.INVOCATION_RETRY,
    inactivity_timeout=retry.LONG_STEP_INACTIVITY,
    abort_timeout=retry.LONG_STEP_ABORT,
)

Compensation = Callable[[], Awaitable[None]]


async def _task_settings() -> TaskSettings:
    return TaskSettings.of(settings())


@task_workflow.main(ingress_private=True)
async def run(ctx: WorkflowContext, inp: TaskInput) -> TaskOutcome:
    # Journaled: a replay (on any worker, with any environment) runs with these same values.
    config = await ctx.run_typed("settings", _task_settings, retry.local_step(TaskSettings))
    task = TaskRun(ctx, inp.session_id, inp.task_id, config)
    controls = task.controls
    compensations: list[Compensation] = []
    plan: list[PlanItem] = []

    def progress() -> None:
        report.progress(ctx, inp.session_id, ProgressReport(task_id=inp.task_id, plan=plan))

    async def release_sandbox() -> None:
        await ctx.object_call(sandbox.release, key=inp.session_id, arg=ReleaseIn(task_id=inp.task_id))

    try:
        await controls.start()
        compensations.append(release_sandbox)
        await ctx.object_call(sandbox.acquire, key=inp.session_id, arg=AcquireIn(task_id=inp.task_id))

        conversation = await conversation_view(task, inp.conversation)
        latest = next((t.text for t in reversed(inp.conversation) if t.role == "user"), None)
        the_plan, plan_usage = await make_plan(task, conversation, latest)
        controls.charge(plan_usage)
        plan = [PlanItem(title=s.title) for s in the_plan.steps]
        task.emit("plan", "\n".join(f"{i}. {s.title}" for i, s in enumerate(the_plan.steps, 1)))
        progress()

        results: list[StepResult] = []
        for number, step in enumerate(the_plan.steps, start=1):
            plan[number - 1].status = "running"
            task.emit("step_started", f"step {number}: {step.title}", ref=f"step {number}")
            progress()
            context = step_context(conversation, the_plan.steps, results)
            # A one-step plan checks against the whole request; a step of several, its own part.
            request = (latest or "") if len(the_plan.steps) == 1 else f"{step.title}\n{step.instructions}"
            run_step = pipeline.run_step if config.agent_mode == "pipeline" else loop.run_step
            result = await run_step(task, number, step, context, request)
            results.append(result)
            plan[number - 1].status = result.status
            task.emit("step_finished", f"step {number} {result.status}: {result.summary}", ref=f"step {number}")
            await checkpoint(task, number, step)
            progress()

        await release_sandbox()
        compensations.clear()
        answer = final_answer(plan, results)
        verdict = evidence.judge(answer, [c for r in results for c in r.checks],
                                 step_failed=any(r.status == "failed" for r in results))
        outcome = TaskOutcome(task_id=inp.task_id, status="done", text=f"{answer}\n\n{evidence.evidence_text(verdict)}",
                              plan=plan, usage=controls.used, steering_read=controls.steering_read, verdict=verdict)
    except TerminalError as error:
        if isinstance(error, BudgetStopped):
            status, text = "stopped", error.message
        elif is_cancellation(error):
            status, text = "interrupted", "task interrupted"
        else:
            status, text = "failed", f"task failed: {error.message}"
        for item in plan:
            if item.status in ("pending", "running"):
                item.status = "failed" if status == "failed" else "cancelled"
        for compensate in reversed(compensations):
            await compensate()
        report.finished(ctx, inp.session_id, TaskOutcome(
            task_id=inp.task_id, status=status, text=text, plan=plan, usage=controls.used,
            steering_read=controls.steering_read))
        raise

    report.finished(ctx, inp.session_id, outcome)
    return outcome


async def checkpoint(task: TaskRun, number: int, step: PlanStep) -> None:
    """Keep the workspace as this step left it, so the session can rewind or fork to here.

    The Sandbox returns a snapshot it holds as its own base; the Agent takes the checkpoint's
    hold when it records it (and only for its current task), so a task cancelled anywhere in
    here leaves no hold behind. A checkpoint that fails costs the checkpoint, not the task.
    """
    if task.config.checkpoints == "off":
        return
    checkpoint_id = f"{task.task_id}-s{number}"
    try:
        # A send and an attach, not a call: the SDK cancels a cancelled invocation's pending
        # calls, and a checkpoint cut between its snapshot and the hold on it leaked the
        # snapshot. A send is never cancelled, so the Sandbox always finishes the transition.
        handle = task.ctx.object_send(sandbox.checkpoint, key=task.session_id,
                                      arg=CheckpointIn(checkpoint_id=checkpoint_id, mode=task.config.checkpoints))
        taken = await task.ctx.attach_invocation(await handle.invocation_id(), type_hint=CheckpointOut)
    except TerminalError as error:
        if is_cancellation(error):
            raise
        task.emit("sandbox", f"no checkpoint after step {number}: {error.message}", ref=f"step {number}")
        return
    if taken.snapshot_id is None:
        return
    # One-way, like every report: the Agent adds the history position when it records it.
    report.checkpoint(task.ctx, task.session_id, Checkpoint(
        checkpoint_id=checkpoint_id, session_id=task.session_id, task_id=task.task_id, step=number,
        title=step.title, history_seq=0, snapshot_id=taken.snapshot_id, time=await task.ctx.time()))


@task_workflow.handler(ingress_private=True)
async def steer(ctx: WorkflowSharedContext, message: SteerMessage) -> None:
    """Deliver steering number `index`; the loop reads it at its next model boundary."""
    await ctx.promise(f"steer:{message.index}", type_hint=str).resolve(message.text)


@task_workflow.handler(ingress_private=True)
async def decide(ctx: WorkflowSharedContext, decision: ApprovalDecision) -> None:
    """Deliver the user's answer to a pending approval."""
    await ctx.promise(f"approval:{decision.approval_id}", type_hint=ApprovalDecision).resolve(decision)


def step_context(conversation: str, steps: list[PlanStep], results: list[StepResult]) -> str:
    """What a step knows: the conversation, the plan (when it has more than this one step), and
    a summary of each finished step."""
    plan = "\n".join(f"{i}. {s.title}" for i, s in enumerate(steps, start=1))
    done = "\n".join(f"{i}. [{r.status}] {r.summary[:MAX_SUMMARY_CHARS]}" for i, r in enumerate(results, start=1))
    text = f"Conversation:\n{conversation}" + (f"\n\nPlan:\n{plan}" if len(steps) > 1 else "")
    return f"{text}\n\nResults so far:\n{done}" if done else text


def final_answer(plan: list[PlanItem], results: list[StepResult]) -> str:
    if len(results) == 1:
        return results[0].summary
    return "\n".join(f"{i}. {item.title} [{item.status}]: {r.summary}"
                     for i, (item, r) in enumerate(zip(plan, results), start=1))
