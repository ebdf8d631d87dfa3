"""Planning: one journaled model call that must return a valid `Plan`, or none at all.

With `planning = "auto"` the request is split by rule, without asking the model: one step per
part of it (app/brain/planning.py). On the offline model the planning round cost more time than
the work, and its split plans made the result worse. The rule reads only the request, so a
replay takes the same path.
Otherwise the model answers through a `make_plan` tool whose arguments are validated with
pydantic. An invalid answer is fed back and asked again (a new journaled round, bounded); if
the model never produces a valid plan the task still runs, as a single step.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import ValidationError

from app import retry
from app.brain import planning
from app.llm import model_client
from app.models import ModelTurn, Plan, PlanStep, Usage
from app.taskrun import TaskRun
from app.validation import describe_errors

PLAN_PROMPT = (
    "You are the PLAN stage of a coding agent that works in a Linux sandbox (/project, no network). "
    "Split the user's latest request into at most {max_steps} steps and call make_plan. A step is "
    "work done with tools (write or edit files, run commands) and has a short title; add instructions "
    "only when the title is not enough. Writing code and checking it is one step. Use one step "
    "unless the request has clearly separate parts."
)
PLAN_ATTEMPTS = 3


@functools.cache  # building the schema was ~10% of a busy worker's samples at 500 sessions
def plan_tool(max_steps: int) -> dict[str, Any]:
    """The make_plan tool (shared: never modified by its users)."""
    schema = Plan.model_json_schema()
    schema["properties"]["steps"]["maxItems"] = max_steps
    return {"type": "function", "function": {
        "name": "make_plan", "description": "Submit the plan.", "parameters": schema}}


def single_step(request: str) -> Plan:
    """The request as one step, titled by its first line; the step sees the whole conversation."""
    return Plan(steps=[PlanStep(title=planning.title_of(request))])


async def make_plan(task: TaskRun, request: str, latest: str | None = None) -> tuple[Plan, Usage]:
    """The plan for `request` (the conversation); `latest` is the user's newest message."""
    if task.config.planning == "auto" and latest is not None:
        return planning.split(latest, task.config.max_steps), Usage()
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
    return single_step(latest or request), usage


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
