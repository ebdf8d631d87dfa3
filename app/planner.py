"""Planning: one journaled model call that must return a valid `Plan`.

The model answers through a `make_plan` tool whose arguments are validated with pydantic.
An invalid answer is fed back and asked again (a new journaled round, bounded); if the model
never produces a valid plan the task still runs, as a single step that is the request itself.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from app import retry
from app.llm import model_client
from app.models import ModelTurn, Plan, PlanStep, Usage
from app.taskrun import TaskRun
from app.validation import describe_errors

PLAN_PROMPT = (
    "You are the PLAN stage of a coding agent that works in a Linux sandbox (/project, no network). "
    "Split the user's latest request into at most {max_steps} steps and call make_plan. Each step "
    "must be done with tools: write or edit files, run commands. No steps for opening, saving or "
    "reviewing files. Use one step for a simple request."
)
PLAN_ATTEMPTS = 3


def plan_tool(max_steps: int) -> dict[str, Any]:
    schema = Plan.model_json_schema()
    schema["properties"]["steps"]["maxItems"] = max_steps
    return {"type": "function", "function": {
        "name": "make_plan", "description": "Submit the plan.", "parameters": schema}}


async def make_plan(task: TaskRun, request: str) -> tuple[Plan, Usage]:
    max_steps = task.config.max_steps
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": PLAN_PROMPT.format(max_steps=max_steps)},
        {"role": "user", "content": request},
    ]
    usage = Usage()
    for attempt in range(1, PLAN_ATTEMPTS + 1):
        label = "plan" if attempt == 1 else f"plan, attempt {attempt}"
        turn = await task.ctx.run_typed(label, model_client().complete, retry.model_step(ModelTurn),
                                        messages, [plan_tool(max_steps)], f"{task.task_id}-plan-{attempt}",
                                        session_id=task.session_id, task_id=task.task_id, label=label)
        usage = usage.plus(turn.usage)
        plan, problem = _parse(turn, max_steps)
        if plan is not None:
            return plan, usage
        messages.append(turn.message)
        call_id = (turn.message.get("tool_calls") or [{}])[0].get("id")
        if call_id:
            messages.append({"role": "tool", "tool_call_id": call_id, "content": f"error: {problem}"})
        else:
            messages.append({"role": "user", "content": f"error: {problem}. Call make_plan."})
    return Plan(steps=[PlanStep(title=request.splitlines()[0][:120] or "Do the request", instructions=request)]), usage


def _parse(turn: ModelTurn, max_steps: int) -> tuple[Plan | None, str]:
    if turn.format_error:
        return None, turn.format_error
    calls = turn.message.get("tool_calls") or []
    if not calls or calls[0]["function"]["name"] != "make_plan":
        return None, "no make_plan call in the answer"
    try:
        plan = Plan.model_validate_json(calls[0]["function"]["arguments"] or "{}")
    except ValidationError as e:
        return None, f"invalid plan: {describe_errors(e)}"
    if len(plan.steps) > max_steps:
        return None, f"the plan has {len(plan.steps)} steps; the limit is {max_steps}"
    return plan, ""
