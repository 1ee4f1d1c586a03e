"""An inbound text is never left unanswered (issue 12, item 13): the MessageSid is recorded with its reply in one
transaction, so a delivery that failed (Redis unreachable: 503) records nothing and Twilio's retry gets the real
answer; later retries replay it without verifying again."""

from __future__ import annotations

import asyncio
import secrets
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from invoiceloop.settings import Settings
from tests.conftest import ServerProcess, server_log
from tests.e2e.test_verify_sms import message_of, sms_text, text_in
from tests.fake_twilio import FakeTwilio
from tests.verification_fixtures import TWILIO_FROM, random_mobile


@pytest.fixture
def redisless_server(
    settings: Settings, session_twilio: FakeTwilio, output_dir: Path, request: pytest.FixtureRequest
) -> Iterator[ServerProcess]:
    """A server on the module's database whose Redis is a port nobody listens on."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    srv = ServerProcess(
        settings,
        server_log(output_dir, request, "no-redis-server"),
        REDIS_URL=f"redis://127.0.0.1:{closed.getsockname()[1]}/0",
        **session_twilio.server_env(TWILIO_FROM),
    )
    try:
        yield srv
    finally:
        srv.stop()
        closed.close()


async def sms_verifications(pool: asyncpg.Pool, invoice: dict[str, Any]) -> tuple[int, int]:
    """How many SMS verifications of the invoice were logged, and its times_verified."""
    async with pool.acquire() as conn:
        logged = await conn.fetchval(
            "SELECT count(*) FROM verifications WHERE invoice_id = $1 AND channel = 'sms'", uuid.UUID(invoice["id"])
        )
        counted = await conn.fetchval(
            "SELECT times_verified FROM invoice_counts WHERE invoice_id = $1", uuid.UUID(invoice["id"])
        )
    return int(logged), int(counted or 0)


async def test_a_retry_after_a_failed_delivery_gets_the_real_reply_once(
    redisless_server: ServerProcess,
    verify_server: ServerProcess,
    seller: Any,
    session_twilio: FakeTwilio,
    pool: asyncpg.Pool,
) -> None:
    invoice, sender, sid = await seller.issue(), random_mobile(), "SM" + secrets.token_hex(16)
    token, body = session_twilio.auth_token, sms_text(invoice)
    failed = await text_in(redisless_server, token, body, sender=sender, sid=sid)
    assert failed.status_code == 503  # Redis unreachable: the first delivery is not answered
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM sms_inbound WHERE message_sid = $1", sid) == 0
    retried = await text_in(verify_server, token, body, sender=sender, sid=sid)  # Twilio's retry, Redis back
    reply = message_of(retried)
    assert invoice["invoice_number"] in reply and "查验一致" in reply and "第1次" in reply
    again = await text_in(verify_server, token, body, sender=sender, sid=sid)  # a second retry: replayed
    assert again.status_code == 200 and again.text == retried.text
    assert await sms_verifications(pool, invoice) == (1, 1)  # verified and counted once


async def test_concurrent_deliveries_of_one_message_are_answered_alike_and_counted_once(
    verify_server: ServerProcess, seller: Any, session_twilio: FakeTwilio, pool: asyncpg.Pool
) -> None:
    invoice, sender, sid = await seller.issue(), random_mobile(), "SM" + secrets.token_hex(16)
    deliveries = await asyncio.gather(
        *(
            text_in(verify_server, session_twilio.auth_token, sms_text(invoice), sender=sender, sid=sid)
            for _ in range(4)
        )
    )
    assert {d.status_code for d in deliveries} == {200} and len({d.text for d in deliveries}) == 1
    assert "查验一致" in message_of(deliveries[0])
    assert await sms_verifications(pool, invoice) == (1, 1)


@pytest.fixture
def small_pool_server(
    settings: Settings, session_twilio: FakeTwilio, output_dir: Path, request: pytest.FixtureRequest
) -> Iterator[ServerProcess]:
    """A server with a pool of 2 connections."""
    srv = ServerProcess(
        settings,
        server_log(output_dir, request, "small-pool-server"),
        INVOICELOOP_DB_POOL_MAX="2",
        TWILIO_AUTH_TOKEN=session_twilio.auth_token,
    )
    try:
        yield srv
    finally:
        srv.stop()


async def test_a_burst_of_texts_cannot_starve_the_pool(
    small_pool_server: ServerProcess, seller: Any, session_twilio: FakeTwilio
) -> None:
    """Each text holds a connection while it verifies, and verifying takes another: with 2 connections, 8 texts
    at once would hold both and wait for a third for ever, were the texts in flight not bounded."""
    invoices = [await seller.issue() for _ in range(8)]
    token = session_twilio.auth_token
    replies = await asyncio.wait_for(
        asyncio.gather(*(text_in(small_pool_server, token, sms_text(invoice)) for invoice in invoices)), timeout=60
    )
    assert all("查验一致" in message_of(reply) for reply in replies)
