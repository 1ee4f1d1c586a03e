"""The abuse limits on real Redis, with short windows: counting, locks, the global ceiling, resets."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from invoiceloop.problems import problem_of
from invoicing.errors import RateLimited
from verification.limits import (
    MATCHED,
    MISMATCHED,
    NOT_FOUND,
    Admission,
    Attempt,
    Found,
    LimitFigures,
    Limits,
    LimitsUnavailable,
    day_ttl_s,
)

SHORT = LimitFigures(
    rate_per_window=3,
    rate_window_s=1,
    mismatches_to_lock=2,
    global_mismatches=4,
    lock_ttl_s=1,
    receipts_per_phone=2,
    receipts_per_client=3,
    inbound_per_sender=2,
)


@pytest.fixture
async def limits(redis_url: str) -> AsyncIterator[Limits]:
    client = aioredis.from_url(redis_url)
    yield Limits(client, SHORT)
    await client.aclose()


def test_figures_from_settings_extra_and_day_ttl() -> None:
    figures = LimitFigures.from_extra({"VERIFY_RATE_PER_WINDOW": "7", "OTHER": "x"})
    assert figures.rate_per_window == 7 and figures.mismatches_to_lock == 5
    assert day_ttl_s(datetime(2026, 11, 27, 15, 59, 0, tzinfo=UTC)) == 60  # 23:59 in Shanghai
    assert Limits(None).redis is None


async def settle(limits: Limits, invoice: str, client: str, *, found: Found, trusted: bool, rate: bool = True) -> int:
    """One item through `settle_many`; its `RateLimited` raised."""
    state = (await limits.settle_many([(Attempt(invoice, client, trusted, rate), found)]))[0]
    if isinstance(state, RateLimited):
        raise state
    return state


async def test_rate_limit_429_then_resets(limits: Limits) -> None:
    client = secrets.token_hex(8)
    await asyncio.sleep(1.01 - time.time() % 1)  # all in one fixed window
    for _ in range(3):
        await settle(limits, "x", client, found=MATCHED, trusted=True)
    with pytest.raises(RateLimited) as refused:
        await settle(limits, "x", client, found=MATCHED, trusted=True)
    assert refused.value.retry_after_s == 1
    await asyncio.sleep(1.05)
    assert await settle(limits, "x", client, found=MATCHED, trusted=True) == Admission.TRUSTED


async def guess(limits: Limits, invoice: str, client: str, found: Found = MISMATCHED, trusted: bool = False) -> int:
    return await settle(limits, invoice, client, found=found, trusted=trusted, rate=False)


async def test_pair_lock_and_global_ceiling(limits: Limits) -> None:
    invoice, guesser, holder = secrets.token_hex(8), "g" + secrets.token_hex(4), "h" + secrets.token_hex(4)
    assert await guess(limits, invoice, holder, MATCHED) == Admission.GO  # the holder succeeded today
    for _ in range(2):
        assert await guess(limits, invoice, guesser) == Admission.GO  # two mismatches answered...
    assert await guess(limits, invoice, guesser) == Admission.LOCKED  # ...then the pair is locked
    assert await guess(limits, invoice, guesser, MATCHED) == Admission.LOCKED  # even with the right details
    assert await guess(limits, invoice, holder, MATCHED) == Admission.GO
    results = [await guess(limits, invoice, f"o{i}") for i in range(3)]
    assert results == [Admission.GO, Admission.GO, Admission.LOCKED]  # 2 + 2 mismatches reach the ceiling of 4
    assert await guess(limits, invoice, holder, MATCHED) == Admission.GO  # succeeded today: still served
    assert await guess(limits, invoice, "o9", MATCHED) == Admission.LOCKED  # a newcomer is not, while it lasts
    assert await guess(limits, invoice, "qr-user", trusted=True) == Admission.TRUSTED  # a signed QR is no guess
    await asyncio.sleep(1.05)
    assert await guess(limits, invoice, guesser) == Admission.GO  # the lock has expired


async def test_matches_and_unknown_invoices_count_no_mismatch(limits: Limits) -> None:
    invoice, client = secrets.token_hex(8), secrets.token_hex(4)
    for _ in range(5):
        assert await guess(limits, invoice, client, NOT_FOUND) == Admission.GO
        assert await guess(limits, invoice, client, MATCHED) == Admission.GO
    assert [await guess(limits, invoice, client) for _ in range(3)] == [Admission.GO, Admission.GO, Admission.LOCKED]


async def test_a_burst_cannot_pass_the_lock(limits: Limits) -> None:
    invoice, guesser = secrets.token_hex(8), secrets.token_hex(4)
    one_by_one = await asyncio.gather(*(guess(limits, invoice, guesser) for _ in range(10)))
    assert one_by_one.count(Admission.GO) == 2
    ask = Attempt(secrets.token_hex(8), guesser, trusted=False, rate=False)
    assert await limits.settle_many([(ask, MISMATCHED)] * 10) == [Admission.GO, Admission.GO] + [Admission.LOCKED] * 8


async def test_sms_caps(limits: Limits) -> None:
    client, phone, sender = (secrets.token_hex(6) for _ in range(3))
    assert [await limits.receipt_refusal(client, phone) for _ in range(3)] == [None, None, "daily_limit_reached"]
    assert await limits.receipt_refusal(secrets.token_hex(6), secrets.token_hex(6)) is None
    assert [await limits.allow_inbound(sender) for _ in range(3)] == [True, True, False]


async def test_the_service_budget_counts_across_clients_and_phones(redis_url: str) -> None:
    """The budget is one counter for the whole service: 4 receipts to 4 phones asked by 4 clients, budget 3. A
    receipt refused by a client's cap spends none of the budget, and the budget's refusal none of the caps."""
    client = aioredis.from_url(redis_url)
    for key in await client.keys("vl:rb:*"):
        await client.delete(key)
    limits = Limits(client, SHORT, receipt_budget=3)
    capped = secrets.token_hex(6)
    assert [await limits.receipt_refusal(capped, secrets.token_hex(6)) for _ in range(4)][3] == "daily_limit_reached"
    (budget_key,) = await client.keys("vl:rb:*")
    assert int(await client.get(budget_key)) == 3  # the refused fourth spent nothing
    await client.delete(budget_key)
    asks = [(secrets.token_hex(6), secrets.token_hex(6)) for _ in range(4)]
    assert [await limits.receipt_refusal(c, p) for c, p in asks] == [None, None, None, "service_budget_reached"]
    assert await limits.receipt_refusal(*asks[3]) == "service_budget_reached"  # its own caps untouched
    await client.aclose()
    unreachable = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    assert await Limits(unreachable).receipt_refusal("c", "p") == "unavailable"  # the verification stands
    await unreachable.aclose()


async def test_redis_down_refuses_with_503() -> None:
    unreachable = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    with pytest.raises(LimitsUnavailable) as refused:
        await settle(Limits(unreachable), "x", "y", found=MATCHED, trusted=False)
    assert problem_of(refused.value).status == 503 and refused.value.retry_after_s > 0
    await unreachable.aclose()
