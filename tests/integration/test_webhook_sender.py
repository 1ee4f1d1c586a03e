"""One delivery try against a real HTTP receiver on a local port: the host is resolved once, checked, and the
connection goes to the checked address (no second lookup for DNS rebinding to answer differently), with `Host`
kept; nothing is sent where the check refuses; an answer is read only up to its cap; old rows are pruned."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import pytest

from invoicing import webhook_repository as repo
from invoicing.webhook_sender import BODY_CAP, HookConfig, new_client, post, prune
from tests.conftest import free_port, new_issuer
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


async def test_old_events_messages_and_log_lines_are_pruned(pool: asyncpg.Pool) -> None:
    """WEBHOOK_LOG_DAYS: an event older than it goes with its settled messages and their log; a message still being
    sent, and everything recent, stays."""
    issuer, _ = await new_issuer(pool)
    async with pool.acquire() as conn:
        endpoint = await repo.insert_endpoint(conn, issuer.id, "https://h.example/in", ["invoice.issued"], "", "s", 20)
        assert endpoint is not None
        ids = {}
        for name, age_days, status in (("old", 40, "delivered"), ("busy", 40, "sending"), ("new", 1, "delivered")):
            event = await conn.fetchval(
                "INSERT INTO webhook_events (issuer_id, type, data, created_at, fanned_out) "
                "VALUES ($1, 'invoice.issued', '{}', now() - make_interval(days => $2), true) RETURNING id",
                uuid.UUID(issuer.id),
                age_days,
            )
            message = await conn.fetchval(
                "INSERT INTO webhook_messages (event_id, endpoint_id, status, claimed_at) VALUES ($1, $2, $3, now()) "
                "RETURNING id",
                event,
                endpoint["id"],
                status,
            )
            await conn.execute(
                "INSERT INTO webhook_attempts (endpoint_id, message_id, event_type, attempted_at) "
                "VALUES ($1, $2, 'invoice.issued', now() - make_interval(days => $3))",
                endpoint["id"],
                message,
                age_days,
            )
            ids[name] = event
    assert await prune(pool, HookConfig(log_days=30)) >= 3
    async with pool.acquire() as conn:
        left = {
            r["id"]
            for r in await conn.fetch("SELECT id FROM webhook_events WHERE issuer_id = $1", uuid.UUID(issuer.id))
        }
        lines = await conn.fetchval("SELECT count(*) FROM webhook_attempts WHERE endpoint_id = $1", endpoint["id"])
    assert left == {ids["busy"], ids["new"]} and lines == 1  # the recent try's line
