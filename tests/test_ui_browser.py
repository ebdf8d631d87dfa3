"""The web UI in a real headless Chromium (Debian's /usr/bin/chromium, driven by playwright).

Each test starts a stack with the UI server and the scripted LLM, and uses the page the way a
person would: send a message, watch the plan and the answer, interrupt, reload mid-task,
approve a command, rewind to a step and fork from one, unfold an answer's checks. The first one
also saves a screenshot of the page mid-task. The verdict's rendering is also tested without a
stack, over a canned ingress (tests/ui_helpers.py), from an event log and history given as such.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

playwright = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' installs playwright")
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

from app.models import CheckRun, Verdict  # noqa: E402
from stack.processes import REPO_ROOT  # noqa: E402
from tests.ui_helpers import FROM_THE_WORKER, WITH_DELTAS, CannedSession, ui_over_canned_ingress  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCRIPTS = "tests.fakes.ui_scripts"
THREE_FILES = "tests.fakes.rewind_scripts:three_files"  # one file per step: a.txt, b.txt, c.txt
REWOUND = re.compile(r"\brewound\b")
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
# The README's screenshot: written when missing, or refreshed with UPDATE_SCREENSHOT=1, so a
# test run does not rewrite a committed file every time.
SCREENSHOT = REPO_ROOT / "docs" / "screenshot.png"

expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium package")
    with sync_playwright() as p:
        # Never a downloaded browser: the system's Chromium, offline.
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def open_session(page: Page, stack, session: str) -> None:
    page.goto(f"{stack.ui_url}/#{session}")
    expect(page.locator("#session-title")).to_have_text(session)
    expect(page.locator("#connection")).to_have_text("live")


def send(page: Page, text: str) -> None:
    page.fill("#message-input", text)
    page.click("#send")
    expect(page.locator("#chat .msg.user .body").last).to_have_text(text)


def step(page: Page, number: int):
    return page.locator(f'#plan li[data-step="{number}"]')


def finished(page: Page, number: int):
    """Step `number`'s step_finished line in the timeline, where its rewind and fork buttons are."""
    return page.locator(f'#timeline [data-kind="step_finished"][data-ref="step {number}"]')


def expect_text_files(page: Page, names: list[str]) -> None:
    """The files panel, refreshed, lists exactly these .txt files. On failure the message
    shows what the panel says instead (an error, or "The workspace is empty.")."""
    page.click("#refresh-files")
    try:
        expect(page.locator('#files a[data-path$=".txt"]')).to_have_text(names)
    except AssertionError as error:
        raise AssertionError(f"the files panel says {page.locator('#files').inner_text()!r}") from error


def run_three_steps(page: Page) -> None:
    send(page, "write three files")
    expect(page.locator("#state")).to_have_text("idle")
    expect(page.locator("#timeline .step-actions button.rewind")).to_have_count(3)  # every step's checkpoint
    expect_text_files(page, ["a.txt", "b.txt", "c.txt"])


def timeline_seqs(page: Page) -> list[int]:
    return page.locator("#timeline [data-seq]").evaluate_all("els => els.map(e => Number(e.dataset.seq))")


def logged_seqs(stack, session: str) -> list[int]:
    code, body = stack.call("Events", session, "read", {"after": 0, "limit": 500})
    assert code == 200, (code, body)
    return [e["seq"] for e in body["events"]]


def test_a_message_shows_the_plan_the_steps_turning_done_and_the_answer(stack_factory, page):
    stack = stack_factory(f"{SCRIPTS}:three_steps", ui=True, env=WITH_DELTAS)
    open_session(page, stack, "demo")
    send(page, "Write fib.py, run it, and write notes")
    expect(page.locator("#plan li.step")).to_have_count(3)
    expect(step(page, 1)).to_contain_text("Write fib.py")
    expect(step(page, 2)).to_have_attribute("data-status", "running")
    expect(step(page, 1)).to_have_attribute("data-status", "done")

    # Live text for the next round, posted exactly as the worker's model client posts it; the
    # round's journaled model_round event must replace it.
    task_id = httpx.get(f"{stack.ui_url}/api/sessions/demo/status", trust_env=False).json()["task_id"]
    delta = {"session": "demo", "task_id": task_id, "ref": "step 3: Write the notes, round 1",
             "attempt": "a1", "text": '→ write_file {"path": "NOTES.md", "content": "# Notes\\n\\nfib.py prints'}
    posted = httpx.post(f"{stack.ui_url}/internal/deltas", json=delta, headers=FROM_THE_WORKER, trust_env=False)
    assert posted.status_code == 204
    expect(page.locator("#live .live-round pre")).to_contain_text("NOTES.md")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-mid-task.png"))
    if not SCREENSHOT.exists() or os.environ.get("UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(ARTIFACTS / "ui-mid-task.png", SCREENSHOT)

    expect(page.locator("#chat .msg.agent")).to_contain_text("NOTES.md written")
    expect(page.locator('#plan li[data-status="done"]')).to_have_count(3)
    expect(page.locator("#live .live-round")).to_have_count(0)
    expect(page.locator("#state")).to_have_text("idle")

    # The workspace browser shows the files the agent wrote.
    page.click("#refresh-files")
    page.click('#files a[data-path="fib.py"]')
    expect(page.locator("#file-view")).to_contain_text("def fib(n):")
    assert page.get_attribute("#download", "href") == "/api/sessions/demo/download"
    # The timeline holds the model rounds and tool calls, with outputs to unfold.
    call = page.locator('#timeline [data-kind="tool_call"]').filter(has_text="python3 fib.py").first
    result = page.locator(f'#timeline details[data-kind="tool_result"][data-ref="{call.get_attribute("data-ref")}"]')
    result.locator("summary").click()
    expect(result.locator("pre").last).to_contain_text("[0, 1, 1, 2, 3, 5, 8, 13, 21, 34]")
    assert "/ui/" in (page.get_attribute("#restate-ui", "href") or "")


def test_a_reload_and_a_ui_server_restart_mid_task_lose_and_repeat_no_event(stack_factory, page):
    stack = stack_factory(f"{SCRIPTS}:three_steps", ui=True)
    open_session(page, stack, "reload")
    send(page, "Write fib.py, run it, and write notes")
    expect(step(page, 1)).to_have_attribute("data-status", "running")
    page.reload()
    expect(page.locator("#chat .msg.user")).to_have_count(1)  # the history is back
    expect(step(page, 2)).to_have_attribute("data-status", "running")
    # The server goes away mid-task; EventSource reconnects with its Last-Event-ID.
    stack.kill_ui()
    expect(page.locator("#connection")).to_have_text("reconnecting…")
    stack.start_ui()
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator("#chat .msg.agent")).to_contain_text("NOTES.md written")
    expect(page.locator("#chat .msg")).to_have_count(2)
    assert timeline_seqs(page) == logged_seqs(stack, "reload")


def test_interrupt_stops_the_running_task(stack_factory, page):
    stack = stack_factory(f"{SCRIPTS}:stuck", ui=True)
    open_session(page, stack, "stop")
    send(page, "think about it")
    expect(step(page, 1)).to_have_attribute("data-status", "running")
    expect(page.locator('#timeline [data-kind="tool_call"]')).to_have_count(1)  # in its 30 s command
    expect(page.locator("#state")).to_have_text("running")
    page.click("#interrupt")
    expect(page.locator("#chat .msg.event")).to_contain_text("task interrupted")
    expect(step(page, 1)).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#state")).to_have_text("idle")


def test_a_command_waits_for_approval_and_runs_once_approved(stack_factory, page):
    stack = stack_factory("tests.fakes.spine_scripts:risky", ui=True, env={"AGENT_APPROVAL": "commands"})
    open_session(page, stack, "ok")
    send(page, "deploy it")
    approval = page.locator("#approvals .approval")
    expect(approval).to_have_count(1)
    expect(approval).to_contain_text("echo pushed >> pushes.txt")
    approval.locator(".reason").fill("looks fine")
    approval.locator("button.approve").click()
    expect(page.locator("#approvals-panel")).to_be_hidden()
    expect(page.locator("#chat .msg.event").filter(has_text="approved: run_command")).to_contain_text("looks fine")
    expect(page.locator("#chat .msg.agent")).to_contain_text("tool said: exit code: 0")
    page.click("#refresh-files")
    expect(page.locator('#files a[data-path="pushes.txt"]')).to_have_count(1)


def test_rewind_to_a_step_puts_its_workspace_back_and_dims_what_came_after(stack_factory, page):
    stack = stack_factory(THREE_FILES, ui=True)
    open_session(page, stack, "back")
    run_three_steps(page)

    finished(page, 2).locator("button.rewind").click()
    expect(page.locator('#timeline [data-kind="rewound"]')).to_contain_text("rewound to step 2 (Write b)")
    expect(page.locator("#chat .msg.event").last).to_contain_text("rewound to step 2")
    expect_text_files(page, ["a.txt", "b.txt"])
    expect(page.locator("#chat .msg.agent")).to_have_class(REWOUND)  # the answer is undone, and kept
    expect(page.locator("#chat .msg.user")).not_to_have_class(REWOUND)
    expect(finished(page, 3)).to_have_class(REWOUND)
    expect(finished(page, 3).locator("button")).to_have_count(0)  # its checkpoint was rewound too
    expect(finished(page, 2).locator("button.rewind")).to_have_count(1)
    expect(step(page, 3)).to_have_attribute("data-status", "rewound")

    page.reload()  # the page rebuilt from the event log looks the same
    expect(page.locator("#chat .msg.agent")).to_have_class(REWOUND)
    expect(page.locator("#chat .msg.user")).not_to_have_class(REWOUND)
    expect(finished(page, 3).locator("button")).to_have_count(0)
    expect(finished(page, 1).locator("button.fork")).to_have_count(1)


def test_fork_from_a_step_opens_a_new_session_with_that_steps_workspace(stack_factory, page):
    stack = stack_factory(THREE_FILES, ui=True)
    open_session(page, stack, "orig")
    run_three_steps(page)

    finished(page, 1).locator("button.fork").click()
    expect(page.locator("#session-title")).to_have_text(re.compile(r"^orig-fork-"))
    fork = page.locator("#session-title").inner_text()
    assert page.url.endswith(f"#{fork}")
    expect(page.locator(f'#sessions li.current[data-session="{fork}"]')).to_have_count(1)
    expect(page.locator("#chat .msg.event")).to_contain_text("forked from session orig at step 1 (Write a)")
    expect(page.locator("#chat .msg.user.inherited .body")).to_have_text("write three files")
    expect_text_files(page, ["a.txt"])

    page.click('#sessions li[data-session="orig"] a')  # the original is as it was
    expect(page.locator("#session-title")).to_have_text("orig")
    expect(page.locator("#chat .msg.agent")).not_to_have_class(REWOUND)
    expect_text_files(page, ["a.txt", "b.txt", "c.txt"])


def test_the_files_panel_recovers_by_itself_when_restate_comes_back(stack_factory, page):
    stack = stack_factory(THREE_FILES, ui=True)
    open_session(page, stack, "away")
    run_three_steps(page)

    stack.kill_restate()
    page.click("#refresh-files")
    expect(page.locator("#files")).to_contain_text("unreachable")  # the 502 is shown, not hidden
    stack.start_restate()
    # No click: a failed refresh asks again until it is answered.
    expect(page.locator('#files a[data-path$=".txt"]')).to_have_text(["a.txt", "b.txt", "c.txt"])


# --- verdicts ----------------------------------------------------------------------------------


def verdict_of(page: Page, task_text: str):
    """The verdict under the chat's answer (or failure) that says `task_text`."""
    return page.locator("#chat .msg").filter(has_text=task_text).locator(".verdict")


def judged_session() -> CannedSession:
    """A finished task whose two checks passed; its tool calls sit far up a long timeline."""
    log = CannedSession()
    log.add("user_message", "write words.py and test it")
    log.add("plan", "1. Write words.py and its tests", "t1")
    log.add("step_started", "step 1: Write words.py and its tests", "t1")
    log.add("tool_call", "run_command: python3 -m py_compile words.py", "t1", ref="t1/s1/check1")
    log.add("tool_result", "exit code: 0", "t1", detail="(no output)", ref="t1/s1/check1")
    log.add("tool_call", "run_command: python3 -m unittest -v test_words", "t1", ref="t1/s1/r3/c0")
    log.add("tool_result", "exit code: 0", "t1", detail="Ran 3 tests in 0.001s\n\nOK", ref="t1/s1/r3/c0")
    log.add("check", "3 tests, 3 passed", "t1", detail="Ran 3 tests in 0.001s\n\nOK", ref="t1/s1/r3/c0")
    for n in range(40):
        log.add("model_round", f"round {n}: thinking", "t1", ref=f"step 1: Write words.py, round {n}")
    verdict = Verdict(verdict="verified", checks=[
        CheckRun(kind="command", command="python3 -m py_compile words.py", exit_code=0, summary="parses",
                 ref="t1/s1/check1", step=1),
        CheckRun(kind="tests", command="python3 -m unittest -v test_words", exit_code=0,
                 summary="3 tests, 3 passed", ref="t1/s1/r3/c0", step=1)])
    log.add("final_answer", "words.py counts words; its 3 tests pass", "t1", detail=verdict.model_dump_json())
    log.history = [{"seq": 1, "role": "user", "text": "write words.py and test it"},
                   {"seq": 2, "role": "agent", "text": "words.py counts words; its 3 tests pass", "task_id": "t1",
                    "verdict": verdict.model_dump()}]
    return log


def test_an_answers_verdict_badge_unfolds_its_checks_live_and_after_a_reload(browser):
    """Runs without the backend: the page over a canned event log and history (tests/ui_helpers.py)."""
    log = judged_session()
    with ui_over_canned_ingress({"judged": log}) as url:
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{url}/#judged")
        expect(page.locator("#connection")).to_have_text("live")

        # From the log: a green badge, the checks folded until asked for.
        verified = verdict_of(page, "its 3 tests pass")
        expect(verified.locator(".verdict-badge")).to_have_text("verified")
        expect(verified.locator(".verdict-badge")).to_have_class(re.compile(r"\bverdict-verified\b"))
        expect(verified.locator(".check")).to_have_count(2)
        expect(verified.locator(".checks")).to_be_hidden()
        expect(verified.locator(".verdict-note")).to_have_count(0)
        verified.locator(".checks-toggle").click()
        tests = verified.locator(".check").nth(1)
        expect(tests).to_be_visible()
        expect(tests.locator(".check-kind")).to_have_text("tests")
        expect(tests.locator(".check-command")).to_have_text("python3 -m unittest -v test_words")
        expect(tests.locator(".check-exit")).to_have_text("exit code 0")
        expect(tests.locator(".check-summary")).to_have_text("3 tests, 3 passed")
        # Its link scrolls the timeline back to the tool call, and unfolds the call's output.
        call = page.locator('#timeline [data-kind="tool_call"][data-ref="t1/s1/r3/c0"]')
        expect(call).not_to_be_in_viewport()
        tests.locator(".check-link").click()
        expect(call).to_be_in_viewport()
        expect(call).to_have_class(re.compile(r"\btargeted\b"))
        expect(page.locator('#timeline details[data-kind="tool_result"][data-ref="t1/s1/r3/c0"] pre')).to_be_visible()
        expect(page.locator('#timeline [data-kind="final_answer"] .verdict-badge')).to_have_text("verified")

        # Live: a failed task whose texts hold markup (shown as text, never run), ...
        log.add("user_message", "now make it faster")
        log.add("tool_call", "run_command: python3 -m unittest <img src=x onerror=window.pwned=1>", "t2",
                ref="t2/s1/r1/c0")
        note = "The answer says the tests pass; the last run of them failed. <b>not bold</b>"
        failed = Verdict(verdict="failed", note=note, checks=[
            CheckRun(kind="tests", command="python3 -m unittest <img src=x onerror=window.pwned=1>", exit_code=1,
                     summary="3 tests, 1 failed", ref="t2/s1/r1/c0", step=1)])
        log.add("final_answer", "faster now, and the tests pass", "t2", detail=failed.model_dump_json())
        # ... one with no verdict (from before there were any): no badge, ...
        log.add("final_answer", "an answer from before verdicts", "t3")
        # ... and one whose verdict the log cut (its detail is bounded): the history has it whole.
        unverified = Verdict(verdict="unverified", note="nothing here could be run")
        log.add("error", "step 1 failed", "t4", detail=unverified.model_dump_json()[:30] + "\n... [90 more characters]")
        log.history.append({"seq": 3, "role": "event", "text": "step 1 failed", "task_id": "t4",
                            "verdict": unverified.model_dump()})

        red = verdict_of(page, "faster now")
        expect(red.locator(".verdict-badge")).to_have_text("failed")
        expect(red.locator(".verdict-badge")).to_have_class(re.compile(r"\bverdict-failed\b"))
        expect(red.locator(".verdict-note")).to_have_text(note)
        red.locator(".checks-toggle").click()
        expect(red.locator(".check-command")).to_have_text("python3 -m unittest <img src=x onerror=window.pwned=1>")
        expect(red.locator(".check-exit")).to_have_text("exit code 1")
        amber = verdict_of(page, "step 1 failed")
        expect(amber.locator(".verdict-badge")).to_have_text("unverified")
        expect(amber.locator(".checks-none")).to_have_text("nothing was run")
        expect(amber.locator(".verdict-note")).to_have_text("nothing here could be run")
        expect(page.locator("#connection")).to_have_text("live")  # the log's `error` event is no dropped stream
        expect(page.locator("#chat .msg").filter(has_text="from before verdicts")).to_have_count(1)
        expect(verdict_of(page, "from before verdicts")).to_have_count(0)
        assert page.locator("#chat img, #chat b, #timeline img").count() == 0
        assert page.evaluate("window.pwned") is None

        # A reload rebuilds the same badges from the log (and the history).
        page.reload()
        expect(page.locator("#chat .verdict .verdict-badge")).to_have_text(["verified", "failed", "unverified"])
        expect(verdict_of(page, "from before verdicts")).to_have_count(0)
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_a_tested_answer_shows_a_verified_badge_whose_checks_lead_to_their_tool_calls(stack_factory, page):
    stack = stack_factory(f"{SCRIPTS}:checked", ui=True)
    open_session(page, stack, "checked")
    send(page, "Write words.py with count_words(text) and unittest tests for it, and run them")
    expect(page.locator("#chat .msg.agent")).to_contain_text("its 3 tests pass")
    history = httpx.get(f"{stack.ui_url}/api/sessions/checked/history", trust_env=False).json()["messages"]
    assert history[-1].get("verdict"), "the task has no verdict"

    verdict = page.locator("#chat .msg.agent .verdict")
    expect(verdict.locator(".verdict-badge")).to_have_text("verified")
    verdict.locator(".checks-toggle").click()
    tests = verdict.locator(".check").filter(has=page.locator(".check-kind", has_text="tests")).first
    expect(tests.locator(".check-command")).to_contain_text("test")
    expect(tests.locator(".check-exit")).to_have_text("exit code 0")
    expect(tests.locator(".check-summary")).to_contain_text("3 passed")
    ref = tests.get_attribute("data-ref")
    tests.locator(".check-link").click()
    expect(page.locator(f'#timeline [data-ref="{ref}"].targeted')).to_be_in_viewport()

    page.reload()  # the same badge, rebuilt from the event log
    expect(page.locator("#chat .msg.agent .verdict .verdict-badge")).to_have_text("verified")
