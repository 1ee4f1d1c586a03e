"""One delivery try against a real HTTP receiver on a local port: the host is resolved once, checked, and the
connection goes to the checked address (no second lookup for DNS rebinding to answer differently), with `Host`
kept; nothing is sent where the check refuses; an answer is read only up to its cap."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from invoicing.webhook_sender import BODY_CAP, HookConfig, new_client, post
from tests.conftest import free_port
from tests.webhook_receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.stop()


class Resolver:
    """The event loop's DNS for one made-up name: the first answer is `first`, any later lookup `then` (a name
    rebound to another address between the check and the connection)."""

    def __init__(self, name: str, first: str, then: str) -> None:
        self.name, self.answers, self.calls = name, [first, then], 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        loop = asyncio.get_running_loop()
        real = loop.getaddrinfo

        async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host != self.name:
                return await real(host, port, *args, **kwargs)
            answer = self.answers[min(self.calls, 1)]
            self.calls += 1
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, port))]

        monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


async def test_the_connection_goes_to_the_checked_address(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """`rebind.test` answers 127.0.0.1 first and an unroutable address after: the try reaches the receiver (so the
    client connected to the first, checked answer) and the name was looked up once."""
    resolver = Resolver("rebind.test", "127.0.0.1", "192.0.2.1")
    resolver.install(monkeypatch)
    config = HookConfig(allow_private=True, timeout_s=5)
    async with new_client(config) as client:
        code, error = await post(client, receiver.url("/in", host="rebind.test"), {"x-try": "1"}, "{}", config)
    assert (code, error) == (204, None)
    [got] = receiver.at("/in")
    assert got.headers["host"] == f"rebind.test:{receiver.port}" and resolver.calls == 1


async def test_a_name_that_resolves_inward_is_not_connected_to(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    Resolver("inward.test", "127.0.0.1", "127.0.0.1").install(monkeypatch)
    config = HookConfig(allow_private=False, timeout_s=5)
    async with new_client(config) as client:
        for host in ("inward.test", "localhost", "[::ffff:127.0.0.1]", "127.0.0.1"):
            code, error = await post(client, receiver.url("/in", host=host, scheme="https"), {}, "{}", config)
            assert code is None and error is not None and error.startswith("refused:"), (host, error)
    assert receiver.connections == 0


class _Endless(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(500)
        self.end_headers()  # no length: the body runs until the connection closes
        sent = 0
        try:
            while sent < 50 * 1024 * 1024:
                self.wfile.write(b"x" * 65536)
                sent += 65536
        except OSError:
            pass
        self.server.sent = sent  # type: ignore[attr-defined]


async def test_an_endless_answer_is_read_only_up_to_its_cap() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Endless)
    server.sent = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = HookConfig(allow_private=True, timeout_s=10)
        async with new_client(config) as client:
            url = f"http://127.0.0.1:{server.server_address[1]}/in"
            code, error = await post(client, url, {}, "{}", config)
        assert code == 500 and error is not None and error.startswith("answered 500: xxx")
        assert len(error) < 300 and BODY_CAP <= 1024
        await asyncio.sleep(0.5)
        assert server.sent < 50 * 1024 * 1024  # the client hung up long before the end of the body
    finally:
        server.shutdown()
        server.server_close()


async def test_a_slow_receiver_costs_at_most_the_timeout(receiver: Receiver) -> None:
    receiver.plan["/slow"] = ["hang"]
    config = HookConfig(allow_private=True, timeout_s=1)
    async with new_client(config) as client:
        code, error = await post(client, receiver.url("/slow"), {}, "{}", config)
    assert code is None and error == "no answer within 1 s"
