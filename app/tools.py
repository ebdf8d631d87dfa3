"""The tools the model can call: description, input schema, validation, durable behaviour and
the projection of the result into text, kept together per tool.

Each tool call is a durable call to the `Sandbox` object, so a completed call is in the
Task's journal and a replay returns the recorded result instead of running it again. Bad
calls (unknown tool, malformed or invalid arguments, unsafe paths) come back to the model as
a tool error: they cost a round, never the task.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from pydantic import BaseModel, Field, ValidationError, model_validator
from restate import TerminalError

from app import sandbox_service as sandbox
from app.brain import checks
from app.errors import is_tool_input_error
from app.models import EditFileIn, ExecIn, ExecOut, PathIn, SandboxNotice, WriteFileIn
from app.taskrun import TaskRun
from app.validation import describe_errors

MAX_RESULT_CHARS = 12_000
_MISSING_PROGRAM = re.compile(r"(?:^|\n)(?:/bin/)?sh: \d+: ([^:\n]+): not found")  # dash's words
_MISSING_FILE = re.compile(r"No such file or directory|can't open file|ModuleNotFoundError")


class RunCommandArgs(BaseModel):
    command: str = Field(min_length=1, max_length=20_000, description="Shell command, run with sh -c in /project")
    timeout_s: int = Field(default=60, ge=1, le=3600, description="Wall-clock limit in seconds")


class WriteFileArgs(BaseModel):
    path: str = Field(min_length=1, description="Path relative to /project")
    content: str | None = Field(default=None, max_length=1_000_000,
                                description="The whole file; omit it to be asked for the file as plain text")
    change: str = Field(default="", max_length=2_000, description="What to write or change in it, briefly")


class WriteAsTextArgs(BaseModel):
    """write_file for a model that answers in JSON: the content comes as text, in a round of
    its own (app/loop.py), never through the JSON grammar. Only the path: given a free-text
    argument, the 1.5B wrote the whole file into it, until its answer was cut off."""

    path: str = Field(min_length=1, max_length=200, description="Path relative to /project")


class ReadFileArgs(BaseModel):
    path: str = Field(min_length=1, description="Path relative to /project")


class ListFilesArgs(BaseModel):
    path: str = Field(default=".", description="Directory relative to /project")


class EditFileArgs(BaseModel):
    path: str = Field(min_length=1, description="Path relative to /project")
    old: str = Field(min_length=1, description="Exact text to replace")
    new: str = Field(description="Replacement text")
    replace_all: bool = Field(default=False, description="Replace every occurrence")

    @model_validator(mode="after")
    def _changes_something(self) -> EditFileArgs:
        if self.old == self.new:
            # A small model "edits" a file into itself, over and over; say so at once.
            raise ValueError("old and new are the same text, so the edit would change nothing")
        return self


class FinishArgs(BaseModel):
    result: str = Field(min_length=1, description="What this step achieved, briefly")


@dataclass(frozen=True)
class ToolOutcome:
    """What the model sees of one call. `error`: the call failed and changed nothing it meant
    to; `finished`: the step is over."""

    text: str
    finished: bool = False
    error: bool = False
    exit_code: int | None = None  # run_command's, when the command ran


@dataclass(frozen=True)
class Call:
    task: TaskRun
    op_id: str  # deterministic: task, step, round and call index


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args: type[BaseModel]
    run: Callable[[Call, Any], Awaitable[ToolOutcome]]

    def schema(self) -> dict[str, Any]:
        params = self.args.model_json_schema()
        params.pop("title", None)
        for prop in params.get("properties", {}).values():
            prop.pop("title", None)
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": params}}


def _outcome(out: SandboxNotice, text: str, error: bool = False, exit_code: int | None = None) -> ToolOutcome:
    """The tool's text, after the sandbox's notice (a rollback) if there is one: the model must
    not go on believing in files that are gone."""
    if out.notice:
        text = f"{sandbox.sandbox_says(out.notice)}\n\n{text}"
    return ToolOutcome(text, error=error, exit_code=exit_code)


async def _run_command(c: Call, a: RunCommandArgs) -> ToolOutcome:
    timeout = min(a.timeout_s, c.task.config.command_timeout_s)
    out: ExecOut = await c.task.ctx.object_call(sandbox.exec, key=c.task.session_id,
                                                arg=ExecIn(op_id=c.op_id, command=a.command, timeout_s=timeout))
    if out.outcome_unknown:
        return _outcome(out, f"error: {out.stderr}", error=True)
    parts = [f"exit code: {out.exit_code}" + (" (timed out)" if out.timed_out else "")]
    if out.stdout:
        parts.append(f"stdout:\n{out.stdout}")
    if out.stderr:
        parts.append(f"stderr:\n{out.stderr}")
    if out.truncated and out.full_output_path:
        parts.append(f"(output was truncated; the full output is in {out.full_output_path})")
    if out.exit_code == 127 and (missing := _MISSING_PROGRAM.search(out.stderr or "")):
        parts.append(f"hint: {missing.group(1)} is not installed in this sandbox, and there is no network to "
                     "install it. Use what is there: python3 and its standard library (python3 -m unittest "
                     "runs tests, as does pytest), git and the usual shell tools.")
    elif out.exit_code != 0 and _MISSING_FILE.search(out.stderr or ""):
        parts.append("hint: a file this command needs does not exist. list_files shows what exists; "
                     "write_file creates a file.")
    return _outcome(out, "\n".join(parts), exit_code=out.exit_code)


async def _write_file(c: Call, a: WriteFileArgs) -> ToolOutcome:
    if a.content is None:  # the loop asks for the content as text before it gets here
        return ToolOutcome("error: write_file needs the file's content", error=True)
    out = await c.task.ctx.object_call(sandbox.write_file, key=c.task.session_id,
                                       arg=WriteFileIn(op_id=c.op_id, path=a.path, content=a.content))
    notes = python_notes(a.path, a.content) if out.ok else []
    return _outcome(out, "\n".join([out.detail, *notes]), error=not out.ok)


def python_notes(path: str, code: str) -> list[str]:
    """What is plainly wrong with a Python file just written, said at once rather than found
    by running it: it does not parse, or a function is a stub (a docstring, `pass` or `...`
    and nothing else; a small model often writes the request's signature back and stops).
    A pure function of the call's arguments, so a replay says the same."""
    if not path.endswith(".py"):
        return []
    try:
        tree = ast.parse(code)
    except SyntaxError as error:
        return [_not_valid(path, error)]
    except (ValueError, RecursionError):  # a NUL byte (3.11 says ValueError), nesting too deep
        return []  # nothing to say at once; running it will tell
    stubs = checks.stubs_in(tree)
    if not stubs:
        return []
    which = f"{stubs[0]} has" if len(stubs) == 1 else f"{', '.join(stubs)} have"
    return [f"note: in {path}, {which} no code yet (only a docstring, pass or ...). Write the code."]


def syntax_error(path: str, code: str) -> str | None:
    """The note saying that the Python file `path` does not parse, or None if it does (or is
    no Python file, or is one the parser gives up on for other reasons)."""
    if not path.endswith(".py"):
        return None
    try:
        ast.parse(code)
    except SyntaxError as error:
        return _not_valid(path, error)
    except (ValueError, RecursionError):
        return None
    return None


def _not_valid(path: str, error: SyntaxError) -> str:
    where = f"line {error.lineno}: " if error.lineno else ""
    return f"note: {path} is not valid Python: {where}{error.msg}. Fix it."


async def _read_file(c: Call, a: ReadFileArgs) -> ToolOutcome:
    out = await c.task.ctx.object_call(sandbox.read_for_task, key=c.task.session_id, arg=PathIn(path=a.path))
    return _outcome(out, out.content)


async def _list_files(c: Call, a: ListFilesArgs) -> ToolOutcome:
    out = await c.task.ctx.object_call(sandbox.list_for_task, key=c.task.session_id, arg=PathIn(path=a.path))
    lines = [f"{e.path}{'/' if e.kind == 'dir' else ''}" + (f"  ({e.size} bytes)" if e.kind == "file" else "")
             for e in out.entries]
    return _outcome(out, "\n".join(lines) or "(empty)")


async def _edit_file(c: Call, a: EditFileArgs) -> ToolOutcome:
    out = await c.task.ctx.object_call(sandbox.edit_file, key=c.task.session_id,
                                       arg=EditFileIn(op_id=c.op_id, path=a.path, old=a.old, new=a.new,
                                                      replace_all=a.replace_all))
    return _outcome(out, out.detail if out.ok else f"error: {out.detail}", error=not out.ok)


async def _finish(c: Call, a: FinishArgs) -> ToolOutcome:
    return ToolOutcome(a.result, finished=True)


FINISH = "finish"

# The order is the order the model sees them in: a small model leans to the first one listed
# (the 0.5B, shown run_command first, ran a file that did not exist yet in 40 of 40 requests to
# write one), and writing is what a coding step most often starts with.
TOOLS: dict[str, Tool] = {t.name: t for t in [
    Tool("write_file", "Create or overwrite a text file.", WriteFileArgs, _write_file),
    Tool("edit_file", "Replace exact text in a file.", EditFileArgs, _edit_file),
    Tool("run_command", "Run a shell command in /project (no network). Returns exit code and output.",
         RunCommandArgs, _run_command),
    Tool("read_file", "Read a text file.", ReadFileArgs, _read_file),
    Tool("list_files", "List files under a directory.", ListFilesArgs, _list_files),
    Tool(FINISH, "Finish the current step with a short result.", FinishArgs, _finish),
]}

SCHEMAS: list[dict[str, Any]] = [t.schema() for t in TOOLS.values()]
# For a model that answers in JSON: a write names the file and the content comes as text;
# there is no edit_file (its old and new texts would be code inside JSON strings).
AS_TEXT: dict[str, Tool] = {**{n: t for n, t in TOOLS.items() if n != "edit_file"},
                            "write_file": Tool("write_file", "Write a file: you are then asked for its content as "
                                               "text, with its current content in view.", WriteAsTextArgs,
                                               _write_file)}
AS_TEXT_SCHEMAS: list[dict[str, Any]] = [t.schema() for t in AS_TEXT.values()]


def schemas(tool_mode: str) -> list[dict[str, Any]]:
    """The tools as the model is shown them: in structured mode, writes as text."""
    return AS_TEXT_SCHEMAS if tool_mode == "structured" else SCHEMAS


def validate(call: dict[str, Any]) -> tuple[Tool, BaseModel] | ToolOutcome:
    """Check a model's tool call. A problem becomes a ToolOutcome the model can act on."""
    name = call.get("function", {}).get("name", "")
    tool = TOOLS.get(name)
    if tool is None:
        return ToolOutcome(f"error: unknown tool {name!r}. Available tools: {', '.join(TOOLS)}", error=True)
    raw = call.get("function", {}).get("arguments") or "{}"
    try:
        args = tool.args.model_validate_json(raw) if isinstance(raw, str) else tool.args.model_validate(raw)
    except ValidationError as e:
        return ToolOutcome(f"error: invalid arguments for {name}: {describe_errors(e)}", error=True)
    return tool, args


async def dispatch(task: TaskRun, op_id: str, call: dict[str, Any]) -> ToolOutcome:
    """Validate, get approval if the policy says so, and run one tool call durably."""
    checked = validate(call)
    if isinstance(checked, ToolOutcome):
        return checked
    tool, args = checked
    denial = await task.controls.approve_tool(op_id, tool.name, args, describe_call(call, limit=400))
    if denial is not None:
        return ToolOutcome(denial, error=True)
    try:
        outcome = await tool.run(Call(task, op_id), args)
    except TerminalError as error:
        if not is_tool_input_error(error):
            raise  # cancellation or a real failure: not the model's business
        return ToolOutcome(f"error: {error.message}{_RECOVERY.get(error.status_code, '')}", error=True)
    return ToolOutcome(_clip(outcome.text), finished=outcome.finished, error=outcome.error,
                       exit_code=outcome.exit_code)


def emit_result(task: TaskRun, ref: str, text: str) -> None:
    """The tool_result event: the first line as its text, the whole result as its detail."""
    task.emit("tool_result", text.splitlines()[0][:200] if text else "", detail=text, ref=ref)


# What to do next, after a tool error of this status (a small model needs telling).
_RECOVERY = {
    404: " (call list_files to see which files exist; write_file creates a new file)",
    413: " (read a part of it with run_command, e.g. head -n 100 FILE or grep -n TEXT FILE)",
}


def _clip(text: str) -> str:
    if len(text) <= MAX_RESULT_CHARS:
        return text
    half = MAX_RESULT_CHARS // 2
    return f"{text[:half]}\n... [{len(text) - 2 * half} characters omitted] ...\n{text[-half:]}"


def describe_call(call: dict[str, Any], limit: int = 80) -> str:
    """A short label for journals, logs and approval requests."""
    fn = call.get("function", {})
    args = fn.get("arguments", "")
    try:
        args = json.dumps(json.loads(args))[:limit]
    except (TypeError, ValueError):
        args = str(args)[:limit]
    return f"{fn.get('name', '?')}({args})"
