"""Shared fixtures: each test starts its own stack (or just the scripted LLM) and gets it torn down.

    def test_hello(stack_factory):
        stack = stack_factory("hello_world", env={"AGENT_MAX_STEPS": "2"})
        status, body = stack.call("Agent", "s1", "message", {"text": "write hello.py"})

Teardown stops every process even when the test fails, and a failed test's report shows the
tail of each process log.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ScriptedLLM, Stack
from tests.supervised import Supervised


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    # Remember each phase's outcome on the test item, so fixtures can tell whether it failed.
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = (getattr(request.node, f"report_{when}", None) for when in ("setup", "call"))
    return any(report is not None and report.failed for report in reports)


def _temp_dir(test_name: str) -> Path:
    """A fresh private (0700) directory named after the test, kept when the test fails."""
    prefix = "stack-" + re.sub(r"[^A-Za-z0-9_.-]", "_", test_name)[:50] + "-"
    return Path(tempfile.mkdtemp(prefix=prefix))


@pytest.fixture
def stack_factory(request: pytest.FixtureRequest) -> Iterator[Callable[..., Stack]]:
    """`stack_factory(script, env=None, **options) -> Stack`: a started stack for this test.

    `script` names a script in tests.fakes.scripts, or is `module:NAME`; `env` is extra worker
    environment; `options` go to `Stack` (e.g. `restate_env`). A passing test's directory is
    removed; a failing test's is kept, and its path and log tails are printed.
    """
    root = _temp_dir(request.node.name)
    stacks: list[Stack] = []

    def start(script: str = "echo", env: Mapping[str, str] | None = None, **options: Any) -> Stack:
        stack = Stack(root / f"stack{len(stacks)}", script, env, **options)
        stacks.append(stack)  # before starting, so a stack that fails to start is still stopped
        return stack.start()

    yield start
    failed = _failed(request)
    for stack in stacks:
        stack.close()
        if failed:
            print(stack.log_tails())
    if failed:
        print(f"kept {root} for inspection")
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def llm_factory(tmp_path: Path) -> Iterator[Callable[[str], ScriptedLLM]]:
    """`llm_factory(script) -> ScriptedLLM`: just the scripted LLM, started, for this test."""
    llms: list[ScriptedLLM] = []

    def start(script: str) -> ScriptedLLM:
        llm = ScriptedLLM(script, tmp_path / f"llm{len(llms)}")
        llms.append(llm)
        llm.start()
        return llm

    yield start
    for llm in llms:
        llm.kill()


@pytest.fixture
def supervised(llm_factory: Callable[[str], ScriptedLLM]) -> Iterator[Callable[..., Supervised]]:
    """`supervised(script, env=None, args=()) -> Supervised`: `python -m stack run *args`,
    started, on free ports and its own data dir, with the scripted model; stopped at the end of
    the test."""
    made: list[Supervised] = []

    def make(script: str, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()) -> Supervised:
        sup = Supervised(Path(tempfile.mkdtemp(prefix="supervised-")), llm_factory(script), env, args)
        made.append(sup)
        sup.start()
        return sup

    yield make
    for sup in made:
        sup.close()
