"""The terminal client, `agent` (client/), run as the console script it is installed as, against
the real stack with a scripted model: what it prints and how it exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from tests.agent_helpers import approvals, history, read_file, status, wait_idle
from tests.client import free_port
from tests.fakes.client_scripts import PROJECT
from tests.fakes.trust_scripts import FIRST, SECOND
from tests.harness import Stack

AGENT = Path(sys.executable).with_name("agent")  # .venv/bin/agent, from [project.scripts]
SCRIPTS = "tests.fakes.client_scripts"


class Agent:
    """The `agent` command with its environment: the ingress URL(s) and a state dir of its own
    (where it remembers its sessions)."""

    def __init__(self, ingress: str, state: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if k not in ("AGENT_INGRESS", "AGENT_TOKEN")}
        self.env.update(AGENT_INGRESS=ingress, XDG_STATE_HOME=str(state), COLUMNS="120")

    def run(self, *args: str, input: str = "", timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(AGENT), *args], env=self.env, input=input, capture_output=True,
                              text=True, timeout=timeout)

    def start(self, *args: str) -> Running:
        # SIGINT as a terminal gives it: a suite started in the background (`make test &`, or CI
        # under nohup) inherits SIGINT ignored, and Ctrl-C would never reach the client.
        return Running(subprocess.Popen([str(AGENT), *args], env=self.env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)))


class Running:
    """An `agent` process in the background, its output collected as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        self._reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.proc.poll() is None, f"agent exited ({self.proc.returncode}) before {text!r}:\n{self.output}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{self.output}"
            time.sleep(0.1)

    def end(self, timeout: float = 120) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(5)
        return code, self.output


@pytest.fixture
def agent_for(tmp_path: Path):
    """`agent_for(stack or URL)`: the client, pointed at that stack's ingress."""
    def make(target: Stack | str) -> Agent:
        return Agent(target if isinstance(target, str) else target.ingress.base_url, tmp_path / "state")
    return make


def test_chat_follows_the_task_to_its_answer_verdict_and_exit_code(stack_factory, agent_for):
    stack = stack_factory("tests.fakes.trust_scripts:two_tasks", env={"AGENT_CHECK_FAILURES": "2"})
    # Two ingress URLs, as for a cluster: the first has nothing behind it and is skipped.
    agent = agent_for(f"http://127.0.0.1:{free_port()},{stack.ingress.base_url}")

    first = agent.run("chat", "s1", FIRST)
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    for line in (f"you: {FIRST}", "plan: 1 step(s)", "▶ step 1: Write calc.py and its tests",
                 '  → write_file({"path": "calc.py"', "✔ step 1 done", "✔ 1. Write calc.py and its tests",
                 "All tests pass.", "verdict: verified"):
        assert line in out, (line, out)
    assert out.index("plan:") < out.index("→ write_file") < out.index("answer") < out.index("verdict:")
    assert "Traceback" not in first.stderr

    # The second task breaks what the first wrote: its checks fail, and so does the command.
    second = agent.run("chat", "s1", SECOND)
    assert second.returncode == 1, second.stdout + second.stderr
    assert "verdict: failed" in second.stdout
    assert "Failed: the agent's own checks show it:" in second.stdout
    assert status(stack, "s1")["last_verdict"]["verdict"] == "failed"


def test_nothing_listening_is_one_clear_line_and_exit_code_2(agent_for):
    closed = [f"http://127.0.0.1:{port}" for port in (free_port(), free_port())]
    agent = agent_for(",".join(closed))
    for args in (("status", "s1"), ("chat", "s1", "hello")):
        result = agent.run(*args)
        assert result.returncode == 2, result
        assert result.stderr.startswith(f"error: cannot reach the agent at {closed[0]}, {closed[1]}"), result.stderr
        assert "make run" in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_session_commands_show_state_and_a_refusal_exits_1_with_the_servers_message(stack_factory, agent_for):
    stack = stack_factory("two_steps")
    agent = agent_for(stack)
    sent = agent.run("chat", "s1", "write greet.py and test it", "--no-follow")
    assert sent.returncode == 0 and "started; `agent follow s1` watches it" in sent.stdout, sent
    wait_idle(stack, "s1")

    shown = agent.run("status", "s1").stdout
    assert "session s1: idle" in shown and "✔ 1. Write the module" in shown and "✔ 2. Test it" in shown, shown
    assert "source: none (the workspace started empty)" in shown
    said = agent.run("history", "s1").stdout
    assert "#1 you: write greet.py and test it" in said and "agent: " in said, said
    points = agent.run("checkpoints", "s1").stdout.splitlines()
    assert [line.split()[1:3] for line in points] == [["step", "1"], ["step", "2"]], points
    first = points[0].split()[0]

    # The server's refusals: its message on stderr, exit code 1.
    unknown = agent.run("rewind", "s1", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: session 's1' has no checkpoint 'nope' (HTTP 404)", unknown.stderr
    nothing = agent.run("approve", "s1")
    assert nothing.returncode == 1 and "no approval is waiting in session s1" in nothing.stderr, nothing

    forked = agent.run("fork", "s1", first, "--into", "s1-try")
    assert forked.returncode == 0 and "into s1-try" in forked.stdout, forked
    assert read_file(stack, "s1-try", "greet.py").startswith("def greet")
    rewound = agent.run("rewind", "s1", first)
    assert rewound.returncode == 0 and f"rewound to {first}" in rewound.stdout, rewound
    assert "(rewound)" in agent.run("history", "s1").stdout
    assert agent.run("interrupt", "s1").stdout.strip() == "nothing was running in session s1"
    idle = agent.run("follow", "s1")
    assert idle.returncode == 0 and "session s1 is idle" in idle.stdout

    # The sessions this client used, newest first, each with its state.
    listed = agent.run("sessions").stdout.splitlines()
    assert [line.split()[:2] for line in listed] == [["s1", "idle"], ["s1-try", "idle"]], listed


def test_ctrl_c_detaches_and_the_task_finishes_anyway(stack_factory, agent_for):
    stack = stack_factory(f"{SCRIPTS}:slow_finish")
    following = agent_for(stack).start("chat", "s1", "write a note")
    following.wait_for("← wrote 5 bytes to note.txt")  # the finishing round is still up to 8 s away
    following.proc.send_signal(signal.SIGINT)
    code, out = following.end(30)
    assert code == 130, out
    assert "detached; the task keeps running. `agent interrupt s1` stops it" in out
    assert "Traceback" not in out
    assert stack.call("Agent", "s1", "status")[1]["state"] == "running"  # it detached mid-task
    # Detaching never cancels: the task goes on to its answer.
    wait_idle(stack, "s1", timeout=90)
    assert history(stack, "s1")[-1]["text"].startswith("note.txt written")
    assert read_file(stack, "s1", "note.txt") == "slow\n"


def test_approvals_are_asked_inline_and_answered_from_the_command_line(stack_factory, agent_for):
    stack = stack_factory("tests.fakes.spine_scripts:risky", env={"AGENT_APPROVAL": "commands"})
    agent = agent_for(stack)

    asked = agent.run("chat", "s1", "deploy it", input="y\n")
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert '? approval needed: run_command({"command": "echo pushed >> pushes.txt"})' in asked.stdout
    assert "approve? [y/n] y" in asked.stdout
    assert "approved: run_command" in asked.stdout and "tool said: exit code: 0" in asked.stdout
    assert read_file(stack, "s1", "pushes.txt") == "pushed\n"

    # With no terminal to ask, the client says how to answer; `agent deny` does.
    following = agent.start("chat", "s2", "deploy it")
    following.wait_for("no answer from the terminal; answer with `agent approve s2 ")
    waiting = approvals(stack, "s2")
    denied = agent.run("deny", "s2", waiting[0]["approval_id"], "--reason", "not today")
    assert denied.returncode == 0 and "denied: run_command" in denied.stdout, denied
    code, out = following.end(60)
    assert code == 0, out
    assert "the user denied this call: not today" in out
    assert stack.call("Sandbox", "s2", "read_file", {"path": "pushes.txt"})[0] == 404


def test_the_worker_killed_while_the_client_follows_loses_nothing(stack_factory, agent_for):
    stack = stack_factory(f"{SCRIPTS}:slow_note")
    following = agent_for(stack).start("chat", "s1", "write a note")
    following.wait_for("▶ step 1: Write a note")
    stack.kill_worker()  # during the slow model round
    time.sleep(2)
    stack.start_worker()
    code, out = following.end(120)
    assert code == 0, out
    assert "note.txt written" in out and "verdict: unverified" in out
    assert "Traceback" not in out
    # Every event shown once: the client went on from the last one it had.
    assert out.count("▶ step 1: Write a note") == 1 and out.count("→ write_file({") == 1, out
    assert read_file(stack, "s1", "note.txt") == "slow\n"


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout


def _repository(root: Path) -> tuple[Path, Path]:
    """A project with one commit on main, and a bare clone of it to import from and push to."""
    project = root / "greet"
    project.mkdir()
    for name, content in PROJECT.items():
        (project / name).write_text(content)
    _git("init", "-q", "-b", "main", cwd=project)
    _git("add", ".", cwd=project)
    _git("commit", "-q", "-m", "greet", cwd=project)
    remote = root / "greet.git"
    _git("clone", "-q", "--bare", str(project), str(remote), cwd=root)
    return project, remote


def test_import_a_repository_chat_diff_and_export_it(stack_factory, agent_for, tmp_path):
    stack = stack_factory(f"{SCRIPTS}:greets_better")
    agent = agent_for(stack)
    project, remote = _repository(tmp_path)

    imported = agent.run("import", "g1", f"file://{remote}", "--ref", "main")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert f"from file://{remote} at main (commit " in imported.stdout
    assert f"source: file://{remote} at main" in agent.run("status", "g1").stdout

    chat = agent.run("chat", "g1", "greet with hello")
    assert chat.returncode == 0, chat.stdout + chat.stderr
    assert "2 file(s), +2 -1" in chat.stdout, chat.stdout  # the task's diff stat
    diff = agent.run("diff", "g1").stdout
    assert "-    return f'hi {name}'\n+    return f'hello {name}'" in diff, diff
    assert "+greet says hello now" in diff and ".git/" not in diff
    stat = agent.run("diff", "g1", "--stat").stdout
    assert "greet.py" in stat and "NOTES.md" in stat and "@@" not in stat

    # The patch applies to a fresh clone of the imported commit.
    patch = tmp_path / "change.patch"
    assert agent.run("diff", "g1", "--patch", str(patch)).returncode == 0
    clone = tmp_path / "clone"
    _git("clone", "-q", str(remote), str(clone), cwd=tmp_path)
    _git("apply", str(patch), cwd=clone)
    assert (clone / "greet.py").read_text() == "def greet(name):\n    return f'hello {name}'\n"

    exported = agent.run("export", "g1", "--branch", "agent/hello", "--message", "greet with hello", "--push")
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert f"on branch agent/hello on top of {_git('rev-parse', 'main', cwd=project)[:12]}" in exported.stdout
    pushed = tmp_path / "pushed"
    _git("clone", "-q", "-b", "agent/hello", str(remote), str(pushed), cwd=tmp_path)
    assert (pushed / "NOTES.md").read_text() == "greet says hello now\n"

    out = tmp_path / "workspace.tar.gz"
    assert agent.run("archive", "g1", "-o", str(out)).returncode == 0
    with tarfile.open(out) as archive:
        names = {n.removeprefix("./") for n in archive.getnames()}
    assert {"greet.py", "NOTES.md"} <= names and any(n.startswith(".git/") for n in names), names


def test_import_a_directory_and_an_archive(stack_factory, agent_for, tmp_path):
    stack = stack_factory("echo")
    agent = agent_for(stack)
    project, _ = _repository(tmp_path)

    from_dir = agent.run("import", "d1", str(project))
    assert from_dir.returncode == 0, from_dir.stdout + from_dir.stderr
    assert "sending" in from_dir.stderr and "as a .tar.gz" in from_dir.stderr
    assert read_file(stack, "d1", "greet.py") == PROJECT["greet.py"]
    assert read_file(stack, "d1", ".git/HEAD").startswith("ref: refs/heads/main")

    archive = tmp_path / "project.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(project / "README.md", arcname="greet-main/README.md")
    from_file = agent.run("import", "a1", str(archive))
    assert from_file.returncode == 0, from_file.stdout + from_file.stderr
    assert read_file(stack, "a1", "README.md") == PROJECT["README.md"]
    assert agent.run("import", "a1", str(tmp_path / "missing")).returncode == 2  # a usage error
