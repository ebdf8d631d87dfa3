"""A serverless platform scaled to zero, in miniature: a loopback proxy in front of the worker.

Restate is registered at the proxy's port. No worker runs until a request arrives; the proxy then
starts one on a port of its own, forwards the request, returns the answer, and SIGKILLs that
worker's whole process group. Concurrent requests get a worker each, as a function platform
starts one instance per concurrent request, and no worker ever serves a second request. So every
request Restate sends meets a cold worker, and no state can survive in a worker process from one
request to the next.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from stack import processes
from stack.processes import HOST, Process
from tests.client import free_port

# Headers that belong to one hop, not to the request: the client sets its own.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "te",
               "trailer", "upgrade", "proxy-connection"}


@dataclass(frozen=True)
class Forwarded:
    """One request the proxy forwarded: where to, what came back, and which worker answered."""

    method: str
    path: str
    status: int
    worker_pid: int


class OnDemandWorker:
    """Listens on 127.0.0.1:`port`; `start_worker(port)` starts a worker serving on `port`."""

    def __init__(self, port: int, start_worker: Callable[[int], Process]) -> None:
        self.port = port
        self._start_worker = start_worker
        self._lock = threading.Lock()  # guards the three fields below
        self._running: dict[int, Process] = {}  # by port
        self._closed = False
        self.forwarded: list[Forwarded] = []
        self._client = httpx.Client(timeout=120.0, trust_env=False)
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Restate's HTTP/1.1 client expects

            def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
                proxy._handle(self)

            def do_POST(self) -> None:  # noqa: N802
                proxy._handle(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer((HOST, self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="on-demand-proxy", daemon=True).start()

    def close(self) -> None:
        """Stop serving and kill every worker still running. A connection that is already open
        may still bring a request: it is refused, so no worker can start after this."""
        with self._lock:
            self._closed = True
            workers = list(self._running.values())
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for worker in workers:
            processes.kill_group(worker)
        self._client.close()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        body = _read_body(request)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP]
        started = self._cold_start()
        if started is None:
            request.send_error(503, "shutting down")
            return
        port, worker = started
        try:
            processes.wait_port(port, 60.0, worker)
            response = self._client.request(request.command, f"http://{HOST}:{port}{request.path}",
                                            headers=headers, content=body)
        finally:
            processes.kill_group(worker)  # this instance is gone: the next request starts another
            with self._lock:
                del self._running[port]
        with self._lock:
            self.forwarded.append(Forwarded(request.command, request.path, response.status_code, worker.pid))
        request.send_response(response.status_code)
        for key, value in response.headers.items():
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-encoding":
                request.send_header(key, value)
        request.send_header("content-length", str(len(response.content)))
        request.end_headers()
        request.wfile.write(response.content)

    def _cold_start(self) -> tuple[int, Process] | None:
        """A new worker and its port, or None once the proxy is closed."""
        with self._lock:  # so that two concurrent starts never pick the same port, nor one after close
            if self._closed:
                return None
            port = free_port()
            while port in self._running:
                port = free_port()
            self._running[port] = worker = self._start_worker(port)
        return port, worker


def _read_body(request: BaseHTTPRequestHandler) -> bytes:
    """The whole request body, sent with a content-length or chunked."""
    if request.headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while size := int(request.rfile.readline().split(b";")[0].strip(), 16):
            chunks.append(request.rfile.read(size))
            request.rfile.readline()  # the CRLF after each chunk
        while request.rfile.readline() not in (b"\r\n", b""):  # trailers, then the blank line
            pass
        return b"".join(chunks)
    return request.rfile.read(int(request.headers.get("content-length", 0)))
