"""Bringing a project in through the web UI and reading what a task changed, in a real headless
Chromium (the fixtures and helpers of tests/test_ui_browser.py).

Upload a project's .tar.gz with the file picker; a task edits two of its files; under the answer,
"Changes" lists exactly those two with their +/- counts and unfolds each to its coloured diff;
the .patch it offers `git apply`s onto the project as uploaded, and the .tar.gz holds the
workspace as the task left it. Dropping an archive on the page imports it too, and a refused
one says which entry was refused. A git import goes back out from the Export form as a branch
pushed to its origin.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' installs playwright")
from playwright.sync_api import Page, expect  # noqa: E402

from tests.fakes.import_scripts import SUB, TOP, TREE, project_archive  # noqa: E402
from tests.test_ui_browser import ARTIFACTS, browser, open_session, page, send  # noqa: E402, F401  (fixtures)

SCRIPT = "tests.fakes.import_scripts:edits_two_files"
GREEN, RED = "rgb(230, 255, 236)", "rgb(255, 235, 233)"  # style.css: pre.diff .add / .del


def upload(page: Page, archive: Path) -> None:
    """Choose `archive` in the file picker that "Upload archive…" opens."""
    with page.expect_file_chooser() as chooser:
        page.click("#import-button")
    chooser.value.set_files(str(archive))


def drop(page: Page, name: str, data: bytes) -> None:
    """Drag a file called `name` over the page and drop it, as a file manager would."""
    transfer = page.evaluate_handle("""([name, bytes]) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], name));
        return transfer;
    }""", [name, list(data)])
    page.dispatch_event("#chat", "dragenter", {"dataTransfer": transfer})
    expect(page.locator("#drop-overlay")).to_be_visible()
    page.dispatch_event("#chat", "drop", {"dataTransfer": transfer})
    expect(page.locator("#drop-overlay")).to_be_hidden()


def unpacked(archive: bytes, into: Path) -> Path:
    """The archive extracted into `into`; the project's own folder in it."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / TOP


def test_an_uploaded_project_shows_what_a_task_changed_and_its_patch_applies(stack_factory, page, tmp_path):
    stack = stack_factory(SCRIPT, ui=True)
    archive = tmp_path / "calc.tar.gz"
    archive.write_bytes(project_archive())
    open_session(page, stack, "calc")
    expect(page.locator("#source")).to_have_text(re.compile("Nothing imported"))

    upload(page, archive)
    result = page.locator("#import-result")
    expect(result).to_contain_text(f"Imported {len(TREE)} files")
    expect(result).to_contain_text(f"from calc.tar.gz, its top folder {TOP}/ left out")
    expect(page.locator("#source")).to_contain_text(f"Baseline: {len(TREE)} files")
    expect(page.locator("#chat .msg.event").filter(has_text="imported")).to_have_count(1)
    expect(page.locator('#files a[data-path="src/calc.py"]')).to_have_count(1)
    expect(page.locator("#state")).to_have_text("idle")  # the import made the session

    send(page, "add sub(a, b) to the calculator")
    answer = page.locator("#chat .msg.agent")
    expect(answer).to_contain_text("sub(a, b) added")
    expect(page.locator("#state")).to_have_text("idle")
    task = answer.get_attribute("data-task")
    assert task

    # The task's changes: exactly the two files it edited, with their counts.
    changes = answer.locator(".changes")
    changes.locator(":scope > summary").click()
    files = changes.locator(".diff-file")
    expect(files.locator(".diff-path")).to_have_text(["README.md", "src/calc.py"])
    expect(files.locator(".diff-added")).to_have_text(["+1", "+4"])
    expect(files.locator(".diff-removed")).to_have_text(["−1", "−0"])
    expect(changes.locator(".changes-stat")).to_contain_text("2 files, +5 −1")

    # Each unfolds to its diff: the removed line red, the added green, the hunk header dim.
    readme = files.filter(has_text="README.md")
    readme.locator("summary").click()
    expect(readme.locator(".line.del")).to_have_text(["-Adds numbers."])
    expect(readme.locator(".line.add")).to_have_text(["+Adds and subtracts numbers."])
    expect(readme.locator(".line.hunk")).to_have_count(1)
    expect(readme.locator(".line.ctx").first).to_have_text("# Calc")
    assert readme.locator(".line.add").evaluate("e => getComputedStyle(e).backgroundColor") == GREEN
    assert readme.locator(".line.del").evaluate("e => getComputedStyle(e).backgroundColor") == RED
    calc = files.filter(has_text="src/calc.py")
    calc.locator("summary").click()
    expect(calc.locator(".line.add")).to_have_text(["+" + line for line in SUB.split("\n")[:-1]])
    expect(calc.locator(".line.del")).to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-changes.png"))

    # The .patch applies to the project as it was uploaded, and makes the task's files.
    with page.expect_download() as patch_download:
        changes.locator("a.download-patch").click()
    assert patch_download.value.suggested_filename == f"calc-{task}.patch"
    patch = Path(patch_download.value.path())
    original = unpacked(project_archive(), tmp_path / "original")
    check = subprocess.run(["git", "apply", "--check", str(patch)], cwd=original, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    subprocess.run(["git", "apply", str(patch)], cwd=original, check=True)
    assert (original / "README.md").read_text() == "# Calc\n\nAdds and subtracts numbers.\n"
    assert (original / "src/calc.py").read_text() == TREE["src/calc.py"] + SUB

    # The .tar.gz is the whole workspace as the task left it, the binary file intact.
    with page.expect_download() as tar_download:
        page.click("#download-archive")
    assert tar_download.value.suggested_filename == "calc.tar.gz"
    with tarfile.open(tar_download.value.path()) as tar:
        names = {m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()}
        assert set(TREE) <= names, names
        assert tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("logo.bin"))).read() \
            == TREE["data/logo.bin"]
        assert tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("README.md"))).read() \
            == b"# Calc\n\nAdds and subtracts numbers.\n"

    page.reload()  # rebuilt from the event log, the Changes section is back
    changes = page.locator("#chat .msg.agent .changes")
    changes.locator(":scope > summary").click()
    expect(changes.locator(".diff-path")).to_have_text(["README.md", "src/calc.py"])


def test_an_archive_dropped_on_the_page_is_imported_and_a_hostile_one_refused(stack_factory, page):
    stack = stack_factory(SCRIPT, ui=True)
    open_session(page, stack, "dropped")

    hostile = io.BytesIO()
    with tarfile.open(fileobj=hostile, mode="w:gz") as tar:
        entry = tarfile.TarInfo("../escape.txt")
        entry.size = 3
        tar.addfile(entry, io.BytesIO(b"hi\n"))
    drop(page, "evil.tar.gz", hostile.getvalue())
    result = page.locator("#import-result")
    expect(result).to_contain_text("Import refused (400)")
    expect(result).to_contain_text("../escape.txt")
    expect(result).to_have_class(re.compile(r"\bresult-bad\b"))
    expect(page.locator("#source")).to_contain_text("Nothing imported")

    drop(page, "calc.tar.gz", project_archive())
    expect(result).to_contain_text(f"Imported {len(TREE)} files")
    expect(result).to_have_class(re.compile(r"\bresult-ok\b"))
    expect(page.locator('#files a[data-path="README.md"]')).to_have_count(1)
    # The import is the baseline checkpoint: the timeline offers to go back to it.
    expect(page.locator('#timeline [data-kind="imported"] button.rewind')).to_have_count(1)
    assert page.locator("#export-form").is_hidden()  # an archive has no origin to push to


def git_remote(tmp_path: Path) -> Path:
    """A bare repository holding the project on `main`, to import from and push to (file://)."""
    work, remote = tmp_path / "work", tmp_path / "remote.git"
    for path, content in TREE.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_bytes(content.encode() if isinstance(content, str) else content)
    who = {"GIT_AUTHOR_NAME": "Tester", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "Tester", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for command in (["init", "-q", "-b", "main"], ["add", "--all"], ["commit", "-q", "-m", "calc"]):
        subprocess.run(["git", *command], cwd=work, env={**os.environ, **who}, check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(remote)], check=True)
    return remote


def remote_git(remote: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(remote), *args], capture_output=True, text=True,
                          check=True).stdout


def test_a_git_import_goes_back_out_as_a_pushed_branch_from_the_export_form(stack_factory, page, tmp_path):
    remote = git_remote(tmp_path)
    stack = stack_factory(SCRIPT, ui=True)
    open_session(page, stack, "repo")
    expect(page.locator("#export-form")).to_be_hidden()

    page.fill("#git-url", f"file://{remote}")
    page.fill("#git-ref", "main")
    page.click("#git-import")
    result = page.locator("#import-result")
    expect(result).to_contain_text(f"from file://{remote} at main ({remote_git(remote, 'rev-parse', 'main')[:7]})")
    expect(page.locator("#export-form")).to_be_visible()  # a git import has somewhere to go back to

    send(page, "add sub(a, b) to the calculator")
    expect(page.locator("#chat .msg.agent")).to_contain_text("sub(a, b) added")
    expect(page.locator("#state")).to_have_text("idle")

    page.fill("#export-branch", "agent/sub")
    page.fill("#export-message", "Add sub(a, b)")
    page.check("#export-push")
    page.click("#export")
    said = page.locator("#export-result")
    expect(said).to_contain_text("pushed to")
    commit = remote_git(remote, "rev-parse", "refs/heads/agent/sub").strip()
    expect(said).to_contain_text(f"agent/sub at {commit[:12]} (2 files)")
    expect(page.locator("#chat .msg.event").filter(has_text="exported")).to_have_count(1)
    # The remote's branch is the imported commit plus exactly the task's change.
    assert remote_git(remote, "diff", "--name-only", "main", "agent/sub").split() == ["README.md", "src/calc.py"]
    assert remote_git(remote, "show", "agent/sub:src/calc.py") == TREE["src/calc.py"] + SUB
    assert remote_git(remote, "log", "-1", "--format=%s", "agent/sub").strip() == "Add sub(a, b)"
