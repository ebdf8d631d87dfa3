"""The code's shape: layers never import upward, the Task reaches the Agent only through
app/report.py, and cancellation is recognised only from Restate's own words."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from restate import TerminalError

from app import agent, report
from app.errors import bad_request, conflict, is_cancellation, not_found

ROOT = Path(__file__).resolve().parent.parent


def imports_of(module_file: Path) -> set[str]:
    tree = ast.parse(module_file.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_only_the_deployment_imports_the_agent_so_there_is_no_import_loop():
    importers = sorted(p.name for p in (ROOT / "app").glob("*.py")
                       if "app.agent" in imports_of(p) and p.name != "agent.py")
    assert importers == ["main.py"]


@pytest.mark.parametrize("layer,forbidden", [("sandbox", ("app", "ui", "stack")), ("app", ("ui", "stack", "tests"))])
def test_layers_never_import_upward(layer, forbidden):
    for path in (ROOT / layer).glob("*.py"):
        upward = {m for m in imports_of(path) if m.split(".")[0] in forbidden}
        assert not upward, (path.name, upward)


def test_the_brain_knows_no_restate_and_no_service():
    """app/brain/ is prompting, parsing and policies: tested in-process, so it imports neither
    the SDK nor anything that does (only models, context and its own modules)."""
    allowed = {"app.models", "app.context", "app.brain"}
    for path in (ROOT / "app" / "brain").glob("*.py"):
        ours = {m for m in imports_of(path) if m.split(".")[0] in ("app", "restate", "sandbox")}
        assert all(any(m == a or m.startswith(a + ".") for a in allowed) for m in ours), (path.name, ours)


def test_every_report_names_an_agent_handler_with_the_type_it_sends():
    handlers = {"task_progress": agent.task_progress, "task_finished": agent.task_finished,
                "approval_requested": agent.approval_requested, "approval_closed": agent.approval_closed,
                "checkpoint_recorded": agent.checkpoint_recorded}
    sent = {report.PROGRESS: report.progress, report.FINISHED: report.finished,
            report.APPROVAL_REQUESTED: report.approval_requested, report.APPROVAL_CLOSED: report.approval_closed,
            report.CHECKPOINT: report.checkpoint}
    assert set(sent) == set(handlers)
    for name, send in sent.items():
        handler_input = list(inspect.signature(handlers[name]).parameters.values())[1].annotation
        sent_type = list(inspect.signature(send).parameters.values())[2].annotation
        assert handler_input == sent_type, name
    assert report.AGENT == agent.agent_object.name


def test_only_restates_own_cancellation_counts_as_one():
    assert is_cancellation(TerminalError("cancelled", 409))  # the SDK, at the cancelled invocation
    assert is_cancellation(TerminalError("canceled", 409))  # a call whose callee was cancelled
    assert is_cancellation(TerminalError("killed", 409))
    assert not is_cancellation(conflict("the sandbox is busy"))
    assert not is_cancellation(TerminalError("cancelled", 500))
    assert not any(is_cancellation(e("cancelled")) for e in (bad_request, not_found))
