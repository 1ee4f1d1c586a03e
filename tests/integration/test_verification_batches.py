"""Concurrent verifications on real PostgreSQL and Redis, batched by the coalescer: each is answered as
it would be alone (counts without gaps or repeats, wrong guesses counted in order so the lock falls at
the same try, one log row each, one buyer notice), and two processes' batches over the same invoices in
opposite orders neither deadlock nor lose a count."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from invoiceloop.settings import Settings
from invoicing import db, numbering, services
from invoicing.keyring import KeyringWatcher
from invoicing.model import Invoice
from invoicing.validation import invoice_request
from tests.samples import invoice_body
from verification.limits import LimitFigures, Limits
from verification.model import VerificationQuery
from verification.services import Verifier, verify


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Any]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def invoices(pool: asyncpg.Pool, issuing: Any, issuer: Any, settings: Settings) -> list[Invoice]:
    drafts = [numbering.draft_of(invoice_request(invoice_body(), settings.tax_rates)) for _ in range(3)]
    async with pool.acquire() as conn:
        return (await services.issue(conn, issuing, issuer[0], drafts)).invoices


def query(inv: Invoice, *, wrong: bool = False) -> VerificationQuery:
    tail = inv.check_code[-6:]
    return VerificationQuery(
        inv.invoice_code,
        inv.invoice_number,
        inv.issue_date,
        check_code_last6=f"{(int(tail) + 1) % 10**6:06d}" if wrong else tail,
    )


def verifier(pool: asyncpg.Pool, redis_client: Any, settings: Settings, **figures: int) -> Verifier:
    """A verifier on the test settings' keyring (the one the `issuing` fixture signs with)."""
    ring = KeyringWatcher(settings.keyring)
    return Verifier(pool, Limits(redis_client, LimitFigures(**figures)), b"batch-test-secret", ring)


async def counts(pool: asyncpg.Pool, invoices: list[Invoice]) -> dict[str, tuple[int, int, int, int]]:
    """Per invoice id: times_verified, mismatches, log rows, buyer notices."""
    rows = await pool.fetch(
        """
        SELECT i.id::text, coalesce(k.times_verified, 0), coalesce(k.mismatches, 0),
               (SELECT count(*) FROM verifications v WHERE v.invoice_id = i.id),
               (SELECT count(*) FROM sms_outbox o WHERE o.invoice_id = i.id AND o.kind = 'buyer_notice')
          FROM invoices i LEFT JOIN invoice_counts k ON k.invoice_id = i.id
         WHERE i.id = ANY($1::uuid[])""",
        [inv.id for inv in invoices],
    )
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


async def test_concurrent_verifications_count_as_one_by_one(
    pool: asyncpg.Pool, redis_client: Any, invoices: list[Invoice], settings: Settings
) -> None:
    v = verifier(pool, redis_client, settings)
    asks = [inv for inv in invoices for _ in range(20)]
    random.shuffle(asks)
    results = await asyncio.gather(
        *(verify(v, query(inv), v.requester("json", f"10.9.{n}.1")) for n, inv in enumerate(asks))
    )
    assert {r.outcome for r in results} == {"valid"}
    for inv in invoices:
        mine = [r for r, asked in zip(results, asks, strict=True) if asked is inv]
        assert sorted(r.times_verified for r in mine) == list(range(1, 21))  # no gap, no repeat
        assert len({r.first_verified_at for r in mine}) == 1
    assert await counts(pool, invoices) == {inv.id: (20, 0, 20, 1) for inv in invoices}


async def test_a_burst_of_wrong_guesses_locks_at_the_same_try(
    pool: asyncpg.Pool, redis_client: Any, invoices: list[Invoice], settings: Settings
) -> None:
    v = verifier(pool, redis_client, settings, mismatches_to_lock=5)
    target = invoices[0]
    requester = v.requester("json", "10.9.200.7")
    results = await asyncio.gather(*(verify(v, query(target, wrong=True), requester) for _ in range(12)))
    assert sorted(r.outcome for r in results) == ["locked"] * 7 + ["mismatch"] * 5
    assert all(r.invoice is None and r.times_verified == 0 for r in results)
    assert (await verify(v, query(target), requester)).outcome == "locked"  # even the right details, today
    assert (await counts(pool, [target]))[target.id] == (0, 5, 13, 0)


async def test_two_processes_batching_the_same_invoices_neither_deadlock_nor_lose_counts(
    pool: asyncpg.Pool, redis_client: Any, invoices: list[Invoice], settings: Settings
) -> None:
    other_pool = await db.create_pool(settings.require_database_url(), max_size=4)  # as another process would
    try:
        first, second = verifier(pool, redis_client, settings), verifier(other_pool, redis_client, settings)
        forwards = [inv for _ in range(15) for inv in invoices]
        backwards = forwards[::-1]

        async def burst(v: Verifier, order: list[Invoice], tag: int) -> list[Any]:
            return await asyncio.gather(
                *(verify(v, query(inv), v.requester("web", f"10.{tag}.{n}.1")) for n, inv in enumerate(order))
            )

        a, b = await asyncio.wait_for(asyncio.gather(burst(first, forwards, 7), burst(second, backwards, 8)), 60)
    finally:
        await other_pool.close()
    for inv in invoices:
        seen = [
            r.times_verified
            for r, asked in [*zip(a, forwards, strict=True), *zip(b, backwards, strict=True)]
            if asked is inv
        ]
        assert sorted(seen) == list(range(1, 31))
    assert await counts(pool, invoices) == {inv.id: (30, 0, 30, 1) for inv in invoices}
