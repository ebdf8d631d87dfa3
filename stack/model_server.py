"""The offline model: llama.cpp's OpenAI-compatible server (from xllamacpp) as a child process.

`xllamacpp.Server(params)` loads the model, starts listening and has no stop method, so it runs
in its own process (`python -m stack.model_server serve ...`) and is stopped by its PID.

    start(settings, log_path) -> Popen   # weights via stack.model.ensure, then spawn
    wait_ready(port, timeout)            # until /health says the model is loaded
    stop(proc)                           # SIGTERM the process group, SIGKILL if it lingers
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from app.config import REPO_ROOT, Settings
from stack import model
from stack.processes import log_tail


class ModelServerError(RuntimeError):
    """The model server died or did not become ready; the message carries its log tail."""


def command(model_path: Path, *, port: int, threads: int, ctx: int, alias: str, draft: str = "none") -> list[str]:
    """The exact command line that serves `model_path` on 127.0.0.1:`port`."""
    return [sys.executable, "-m", "stack.model_server", "serve", "--model", str(model_path),
            "--port", str(port), "--threads", str(threads), "--ctx", str(ctx), "--alias", alias,
            "--draft", draft]


def start(settings: Settings, log_path: Path) -> subprocess.Popen:
    """Make sure the weights are verified, then spawn the server; returns once it is spawned."""
    port = settings.local_model_port
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            # Otherwise wait_ready could mistake whatever answers there for our server.
            raise ModelServerError(f"port {port} is already in use; stop that process or set LOCAL_MODEL_PORT")
    model_path = model.ensure(settings.local_model)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        # Own session: a Ctrl-C meant for the supervisor does not reach the model directly;
        # the supervisor decides when it stops, and stop() takes the whole group down.
        return subprocess.Popen(
            command(model_path, port=port, threads=settings.local_model_threads,
                    ctx=settings.local_model_ctx, alias=f"qwen2.5-coder-{settings.local_model}",
                    draft=settings.local_model_draft),
            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ready(port: int, timeout: float, *, proc: subprocess.Popen | None = None,
               log_path: Path | None = None) -> None:
    """Poll /health until the model is loaded; raise ModelServerError with the log tail if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ModelServerError(f"model server exited with code {proc.returncode}\n{log_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if json.load(response).get("status") == "ok":
                    return
        except (OSError, ValueError):
            pass  # not listening yet, or 503 while the model loads
        time.sleep(0.25)
    raise ModelServerError(f"model server on port {port} not ready after {timeout:.0f}s\n{log_tail(log_path)}")


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop the server and anything it spawned: SIGTERM its process group, then SIGKILL."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


# n-gram drafting (LOCAL_MODEL_DRAFT=ngram): look up the last NGRAM_KEY tokens earlier in the
# context and propose up to NGRAM_DRAFT tokens that followed them; the model checks them in one batch.
NGRAM_KEY = 4
NGRAM_DRAFT = 16


def server_params(model_path: Path, *, port: int, threads: int, ctx: int, alias: str, draft: str = "none"):
    """llama.cpp's server parameters for `serve` (an `xllamacpp.CommonParams`)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model_path)
    params.model_alias = {alias}
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = ctx
    params.n_parallel = 1  # two CPU threads gain nothing from parallel slots; requests queue
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    # The agent resends a growing history each round: reuse the cached prefix instead of
    # paying ~60 tokens/s for it again. The RAM cache keeps other tasks' prefixes warm.
    params.cache_prompt = True
    params.cache_ram_mib = 1024
    if draft == "ngram":
        params.speculative.types = [xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE]
        params.speculative.ngram_simple.size_n = NGRAM_KEY
        params.speculative.ngram_simple.size_m = NGRAM_DRAFT
    params.ui = False
    params.cors_origins = ""  # only local processes call it; no web page in a browser may
    return params


def serve(model_path: Path, *, port: int, threads: int, ctx: int, alias: str, draft: str = "none") -> None:
    """Load the model and serve it until this process is signalled or its parent goes away."""
    import xllamacpp

    params = server_params(model_path, port=port, threads=threads, ctx=ctx, alias=alias, draft=draft)
    # A supervisor killed with SIGKILL cannot stop us; do not hold 2 GB of RAM as an orphan.
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    server = xllamacpp.Server(params)  # returns once the model is loaded and the port listens
    print(f"model server: serving {model_path} on {server.listening_address}", flush=True)
    threading.Event().wait()  # `server` stays referenced, and serving, until we are stopped


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.model_server")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=8192)
    parser.add_argument("--alias", default="local")
    parser.add_argument("--draft", choices=["none", "ngram"], default="none")
    args = parser.parse_args(argv)
    serve(args.model, port=args.port, threads=args.threads, ctx=args.ctx, alias=args.alias, draft=args.draft)
    return 0


if __name__ == "__main__":
    sys.exit(main())
