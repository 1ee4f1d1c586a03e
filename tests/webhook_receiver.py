"""A real HTTP receiver of webhooks on a local port (a stdlib server in a thread), for the webhook tests. Each path
answers as told (`plan`): `ok` 204, `fail` 500, `hang` (holds the request until `release` or the test ends), or
`redirect:<url>` 307. What arrives is recorded whole (path, headers, body), and every TCP connection is counted,
so a test can tell that nothing at all reached it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.conftest import free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self.receiver.lock:
            self.receiver.connections += 1
        return True


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        mode = receiver.record(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if mode == "hang":
            with receiver.lock:
                receiver.hanging += 1
                receiver.max_hanging = max(receiver.max_hanging, receiver.hanging)
            receiver.release.wait(120)
            with receiver.lock:
                receiver.hanging -= 1
            mode = "ok"
        if mode.startswith("redirect:"):
            self.send_response(307)
            self.send_header("Location", mode.removeprefix("redirect:"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(204 if mode == "ok" else 500)
        self.send_header("Content-Length", "0")
        self.end_headers()


class Receiver:
    """The server; `url(path)` is where an endpoint points; `plan[path]` a list of modes, one per request, the last
    one kept (default `ok`)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.plan: dict[str, list[str]] = {}
        self.requests: list[Received] = []
        self.connections = 0
        self.hanging = 0
        self.max_hanging = 0
        self.server = _Server(("127.0.0.1", self.port), _Handler)
        self.server.receiver = self
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def record(self, received: Received) -> str:
        with self.lock:
            self.requests.append(received)
            modes = self.plan.get(received.path) or ["ok"]
            return modes.pop(0) if len(modes) > 1 else modes[0]

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
