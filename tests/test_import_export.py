"""The user's own code, end to end on the real stack: import a git repository served on
loopback (`git daemon`) or an archive, let a scripted task change two files, read the diff,
export a branch and find exactly that change in a fresh clone of the remote. Worker SIGKILLs
land in the middle of the import and of the export."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.agent_helpers import history, send_message, status, wait_idle
from tests.client import free_port
from tests.harness import Stack

SCRIPT = "tests.fakes.repo_scripts:two_file_change"
A_PY = "def f():\n    return 1\n"


def sh(*argv: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def remote(tmp_path: Path):
    """A bare repository with one commit on main (tag v1), served read-write by `git daemon`
    on 127.0.0.1; yields (git:// URL, file:// URL, bare repository path)."""
    root = tmp_path / "served"
    bare = root / "repo.git"
    sh("git", "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    work = tmp_path / "seed"
    sh("git", "clone", "--quiet", str(bare), str(work))
    (work / "a.py").write_text(A_PY)
    (work / "b.py").write_text("X = 1\n")
    (work / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    sh("git", "add", ".", cwd=work)
    sh("git", "commit", "--quiet", "-m", "seed", cwd=work)
    sh("git", "tag", "v1", cwd=work)
    sh("git", "push", "--quiet", "origin", "HEAD:main", "v1", cwd=work)
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", f"--base-path={root}", "--export-all", "--enable=receive-pack",
         "--listen=127.0.0.1", f"--port={port}", str(root)],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "git daemon did not start"
                time.sleep(0.05)
        yield f"git://127.0.0.1:{port}/repo.git", f"file://{bare}", bare
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()


def files_of(stack: Stack, session: str) -> dict[str, int]:
    code, listing = stack.call("Sandbox", session, "list_files", {"path": "."})
    assert code == 200, listing
    return {e["path"]: e["size"] for e in listing["entries"] if e["kind"] == "file" and not e["path"].startswith(".git/")}


def read(stack: Stack, session: str, path: str) -> str:
    code, body = stack.call("Sandbox", session, "read_file", {"path": path})
    assert code == 200, body
    return body["content"]


def fresh_clone(url: str, branch: str, dest: Path) -> Path:
    sh("git", "clone", "--quiet", "--branch", branch, url, str(dest))
    return dest


def run_invocation_killing_worker(stack: Stack, session: str, handler: str, body, phase: str) -> dict:
    """Send `handler`, SIGKILL the worker once the invocation is running, start it again and
    return the invocation's answer."""
    code, sent = stack.send("Agent", session, handler, body)
    assert code == 202, sent
    invocation = sent["invocationId"]
    stack.wait_until(lambda: stack.query(
        f"SELECT id FROM sys_invocation WHERE id = '{invocation}' AND status = 'running'"),
        timeout=30, interval=0.01, message=f"the {phase} to run")
    stack.kill_worker()
    stack.start_worker()
    code, answer = stack.attach(invocation, timeout=120)
    assert code == 200, answer
    return answer


def test_import_a_ref_change_two_files_diff_and_push_a_branch(stack_factory, remote, tmp_path):
    git_url, _, bare = remote
    stack = stack_factory(SCRIPT)

    code, imported = stack.call("Agent", "repo", "import", {"git": git_url, "ref": "v1"}, timeout=120)
    assert code == 200, imported
    seed = sh("git", "rev-parse", "v1^{commit}", cwd=bare).strip()
    assert (imported["kind"], imported["commit"], imported["ref"]) == ("git", seed, "v1")
    assert files_of(stack, "repo") == {"a.py": len(A_PY), "b.py": 6, ".gitignore": 28}
    code, listing = stack.call("Sandbox", "repo", "list_files", {"path": ".git"})
    assert code == 200 and any(e["path"] == ".git/HEAD" for e in listing["entries"])  # .git is kept
    assert status(stack, "repo")["source"]["checkpoint"] == imported["checkpoint"]
    code, points = stack.call("Agent", "repo", "checkpoints")
    assert [p["checkpoint_id"] for p in points["checkpoints"]] == [imported["checkpoint"]]

    task_id = send_message(stack, "repo", "make f return 2 and add c.py")
    wait_idle(stack, "repo", timeout=90)

    code, diff = stack.call("Agent", "repo", "diff")
    assert code == 200, diff
    assert [(f["path"], f["status"], f["added"], f["removed"]) for f in diff["files"]] == [
        ("a.py", "modified", 1, 1), ("c.py", "added", 1, 0)]
    assert "-    return 1\n+    return 2\n" in diff["patch"] and '+print("c")\n' in diff["patch"]
    code, task_diff = stack.call("Agent", "repo", "diff", {"task": task_id})
    assert code == 200 and task_diff["files"] == diff["files"]
    # The patch applies to the imported tree and gives the workspace's files.
    applied = fresh_clone(git_url, "v1", tmp_path / "applied")
    (tmp_path / "change.patch").write_text(diff["patch"])
    sh("git", "apply", str(tmp_path / "change.patch"), cwd=applied)
    assert (applied / "a.py").read_text() == A_PY.replace("return 1", "return 2")

    code, exported = stack.call("Agent", "repo", "export",
                                {"branch": "agent/change", "message": "f returns 2", "push": True}, timeout=120)
    assert code == 200, exported
    assert exported["pushed"] and exported["base_commit"] == seed
    remote_head = sh("git", "rev-parse", "refs/heads/agent/change", cwd=bare).strip()
    assert remote_head == exported["commit"]
    clone = fresh_clone(git_url, "agent/change", tmp_path / "clone")
    changed = sh("git", "diff", "--name-status", f"{seed}..HEAD", cwd=clone).split("\n")
    assert [c for c in changed if c] == ["M\ta.py", "A\tc.py"]
    assert sh("git", "log", "--format=%s %P", "-1", cwd=clone).strip() == f"f returns 2 {seed}"
    # The same commit is on a branch of the workspace's own repository.
    code, ran = stack.call("Agent", "repo", "history")
    assert any("agent/change" in m["text"] and "in the workspace" in m["text"] for m in ran["messages"]), ran

    code, again = stack.call("Agent", "repo", "export", {"branch": "agent/change", "push": True})
    assert code == 200 and again["commit"] == exported["commit"]
    assert sh("git", "rev-parse", "refs/heads/agent/change", cwd=bare).strip() == exported["commit"]


def test_a_worker_killed_mid_import_and_mid_export_leaves_one_whole_import_and_one_commit(
        stack_factory, remote, tmp_path):
    git_url, file_url, bare = remote
    stack = stack_factory(SCRIPT)
    # An archive with something in it first: the killed git import must replace it whole.
    code, first = stack.call("Agent", "killed", "import", tar_gz({"old.txt": "old\n"}))
    assert code == 200, first

    imported = run_invocation_killing_worker(stack, "killed", "import", {"git": file_url}, "import")
    assert imported["kind"] == "git" and imported["ref"] == "main"
    assert files_of(stack, "killed") == {"a.py": len(A_PY), "b.py": 6, ".gitignore": 28}
    code, points = stack.call("Agent", "killed", "checkpoints")
    assert [p["checkpoint_id"] for p in points["checkpoints"]] == [first["checkpoint"], imported["checkpoint"]]
    assert sum("imported" in m["text"] for m in history(stack, "killed")) == 2

    send_message(stack, "killed", "make f return 2 and add c.py")
    wait_idle(stack, "killed", timeout=90)
    exported = run_invocation_killing_worker(stack, "killed", "export", {"branch": "agent/k", "push": True}, "export")
    assert exported["pushed"]
    assert sh("git", "rev-parse", "refs/heads/agent/k", cwd=bare).strip() == exported["commit"]
    log = sh("git", "log", "--format=%H", "main..agent/k", cwd=bare).split()
    assert log == [exported["commit"]]  # one commit on the branch, pushed once
    assert sum("agent/k" in m["text"] for m in history(stack, "killed")) == 1


def tar_gz(files: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_an_archive_import_gives_a_patch_and_a_tarball_and_refuses_export(stack_factory, tmp_path):
    stack = stack_factory(SCRIPT)
    code, imported = stack.call("Agent", "arch", "import",
                                tar_gz({"proj/a.py": A_PY, "proj/b.py": "X = 1\n"}))
    assert code == 200, imported
    assert (imported["kind"], imported["files"], imported["stripped"]) == ("archive", 2, "proj")
    assert files_of(stack, "arch") == {"a.py": len(A_PY), "b.py": 6}
    send_message(stack, "arch", "make f return 2 and add c.py")
    wait_idle(stack, "arch", timeout=90)
    code, diff = stack.call("Agent", "arch", "diff", {"binary": True})
    assert code == 200 and [f["path"] for f in diff["files"]] == ["a.py", "c.py"]
    code, refused = stack.call("Agent", "arch", "export", {"branch": "x"})
    assert code == 409 and ".patch" in refused["message"]

    from stack.processes import http_client
    response = http_client().post(stack.ingress.url("Agent", "arch", "archive"), timeout=60)
    assert response.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        names = {m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()}
        assert {"a.py", "b.py", "c.py"} <= names
        assert tar.extractfile("./a.py" if "./a.py" in tar.getnames() else "a.py").read().decode() == \
            A_PY.replace("return 1", "return 2")


def hostile_tar(kind: str) -> bytes:
    """A .tar.gz with one entry that must never be imported."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        ok = tarfile.TarInfo("ok.txt")
        tar.addfile(ok, io.BytesIO(b""))
        info = tarfile.TarInfo({"absolute": "/etc/cron.d/x", "climb": "a/../../x"}.get(kind, "evil"))
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc"
        elif kind == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
        elif kind == "device":
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        tar.addfile(info, io.BytesIO(b"") if info.isfile() else None)
    return out.getvalue()


def many_files(count: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for i in range(count):
            tar.addfile(tarfile.TarInfo(f"f/{i}.txt"), io.BytesIO(b""))
    return out.getvalue()


def zip_bomb(size: int) -> bytes:
    import zipfile
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("bomb.bin", "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            for _ in range(size >> 20):
                f.write(chunk)
    return out.getvalue()


def test_bad_imports_and_exports_get_a_4xx_and_change_nothing(stack_factory, remote):
    git_url, _, _ = remote
    stack = stack_factory(SCRIPT, env={"AGENT_IMPORT_MAX_FILES": "1000", "AGENT_IMPORT_MAX_BYTES": "50000000"})
    code, first = stack.call("Agent", "bad", "import", tar_gz({"keep.txt": "keep\n"}))
    assert code == 200, first
    bomb = zip_bomb(200 << 20)
    assert len(bomb) < 1_000_000
    for kind, name in (("climb", "a/../../x"), ("absolute", "/etc/cron.d/x"), ("symlink", "evil"),
                       ("hardlink", "evil"), ("device", "evil")):
        code, answer = stack.call("Agent", "bad", "import", hostile_tar(kind))
        assert code == 400 and name in answer["message"], (kind, code, answer)
    for body, cap in ((many_files(10_000), "1000"), (bomb, "50000000")):
        code, answer = stack.call("Agent", "bad", "import", body, timeout=120)
        assert code == 413 and cap in answer["message"].replace("_", "").replace(",", ""), (code, answer)
    cases = [
        (b"not an archive at all", 400),
        (tar_gz({"../x": "out"}), 400),
        ({"git": "ext::sh -c touch% /tmp/pwned"}, 400),
        ({"git": "https://user:secret@example.com/r.git"}, 400),
        ({"git": git_url, "ref": "no-such-branch"}, 404),
        ({"git": git_url, "ref": "--upload-pack=touch /tmp/x"}, 400),
        ({"git": git_url, "extra": 1}, 400),
    ]
    for body, expected in cases:
        code, answer = stack.call("Agent", "bad", "import", body, timeout=60)
        assert code == expected, (body, code, answer)
    assert files_of(stack, "bad") == {"keep.txt": 5}
    code, points = stack.call("Agent", "bad", "checkpoints")
    assert len(points["checkpoints"]) == 1
    assert stack.call("Agent", "bad", "diff", {"against": "nope"})[0] == 404
    assert stack.call("Agent", "bad", "diff", {"task": "nope"})[0] == 404
    assert stack.call("Agent", "nobody", "diff")[0] == 404
    assert stack.call("Agent", "bad", "export", {"branch": "x"})[0] == 409  # an archive import


def test_credentials_come_from_the_workers_helper_and_reach_no_workspace_journal_or_event(
        stack_factory, remote, tmp_path):
    from tests.fakes.git_http import GitHttp

    _, _, bare = remote
    secret = "s3cret-T0KEN-for-the-test"
    server = GitHttp(bare.parent, user="agent", password=secret).start()
    try:
        url = server.url("repo.git")
        helper = f"!f() {{ echo username=agent; echo password={secret}; }}; f"
        stack = stack_factory(SCRIPT, env={"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "credential.helper",
                                           "GIT_CONFIG_VALUE_0": helper})
        code, imported = stack.call("Agent", "cred", "import", {"git": url}, timeout=120)
        assert code == 200, imported
        send_message(stack, "cred", "make f return 2 and add c.py")
        wait_idle(stack, "cred", timeout=90)
        code, exported = stack.call("Agent", "cred", "export", {"branch": "agent/cred", "push": True}, timeout=120)
        assert code == 200 and exported["pushed"], exported
        assert sh("git", "rev-parse", "refs/heads/agent/cred", cwd=bare).strip() == exported["commit"]
        assert server.refused > 0  # git asked without credentials first: the server does require them

        from stack.processes import http_client
        tarball = http_client().post(stack.ingress.url("Agent", "cred", "archive"), timeout=60).content
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile():
                    assert secret.encode() not in tar.extractfile(member).read(), member.name
        rows = stack.query("SELECT id, name, entry_json FROM sys_journal")  # entry_json: each entry's values
        assert rows
        journal = json.dumps(rows)
        state = json.dumps(stack.query("SELECT * FROM state"))
        code, events = stack.call("Events", "cred", "read", {"after": 0, "limit": 1000})
        assert secret not in journal and secret not in state and secret not in json.dumps(events)
        assert url in journal or url in state  # the URL itself is recorded, and it carries nothing secret
    finally:
        server.close()
