"""`POST /v1/verifications` end to end: every outcome, masking, counts, locks and the rate limit."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from invoiceloop.cli import main
from invoiceloop.settings import Settings
from invoicing import formats
from tests.conftest import ServerProcess
from tests.verification_fixtures import keyed_hash, query_of, random_mobile, wrong_last6


async def verify(consumer: Any, invoice: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    response = await consumer.post("/v1/verifications", json=query_of(invoice, **overrides))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_valid_shows_masked_invoice_and_counts(consumer: Any, seller: Any) -> None:
    invoice = await seller.issue()
    first = await verify(consumer, invoice)
    assert first["result"] == "valid"
    assert first["times_verified"] == 1 and first["first_verified_at"].endswith("Z")
    shown = first["invoice"]
    assert shown["buyer"] == {"name": "张*", "phone": "+86 138****8000"}
    assert shown["seller"]["tax_id"] == invoice["seller"]["tax_id"]
    assert shown["total"] == invoice["total"] and len(shown["lines"]) == 1
    assert "check_code" not in str(shown) and invoice["check_code"] not in str(first)
    second = await verify(consumer, invoice, check_code_last6=None, total_amount=invoice["total_amount"])
    assert second["result"] == "valid" and second["times_verified"] == 2
    assert second["first_verified_at"] == first["first_verified_at"]


async def test_metrics_count_verifications_by_channel_and_outcome(consumer: Any, seller: Any) -> None:
    def count(text: str, outcome: str) -> float:
        found = re.search(rf'^invoiceloop_verifications_total{{channel="json",outcome="{outcome}"}} (\S+)$', text, re.M)
        return float(found[1]) if found else 0.0

    invoice = await seller.issue()
    before = (await consumer.get("/metrics")).text
    await verify(consumer, invoice)
    await verify(consumer, invoice, check_code_last6=wrong_last6(invoice))
    await verify(consumer, invoice, check_code_last6=wrong_last6(invoice))
    after = (await consumer.get("/metrics")).text
    assert count(after, "valid") - count(before, "valid") == 1
    assert count(after, "mismatch") - count(before, "mismatch") == 2


async def test_mismatch_not_found_and_bad_fields(consumer: Any, seller: Any) -> None:
    invoice = await seller.issue()
    wrong = await verify(consumer, invoice, check_code_last6=wrong_last6(invoice))
    assert wrong["result"] == "mismatch" and wrong["invoice"] is None and wrong["times_verified"] == 0
    wrong_date = await verify(consumer, invoice, issue_date="2001-01-01")
    assert wrong_date["result"] == "mismatch"
    missing = await verify(consumer, invoice, invoice_number="99999999")
    assert missing["result"] == "not_found" and missing["invoice"] is None
    bad = await consumer.post("/v1/verifications", json=query_of(invoice, invoice_code="12", extra="x"))
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert {e["field"] for e in bad.json()["errors"]} >= {"extra"}
    number = await consumer.post("/v1/verifications", json=query_of(invoice, invoice_code=440126000001))
    assert number.status_code == 422 and number.json()["errors"][0]["field"] == "invoice_code"
    malformed = await consumer.post(
        "/v1/verifications", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert 400 <= malformed.status_code < 500 and malformed.headers["content-type"].startswith(
        "application/problem+json"
    )


async def test_voided_reversed_partially_credited(consumer: Any, seller: Any) -> None:
    voided, reversed_, partial = (await seller.issue(), await seller.issue(), await seller.issue())
    assert (await seller.post(f"/v1/invoices/{voided['id']}/void", json={"reason": "开错了"})).status_code == 200
    assert (
        await seller.post(f"/v1/invoices/{reversed_['id']}/credit-notes", json={"reason": "退货"})
    ).status_code == 201
    credit = {"reason": "部分退货", "lines": [{"line_no": 1, "quantity": "1"}]}
    assert (await seller.post(f"/v1/invoices/{partial['id']}/credit-notes", json=credit)).status_code == 201
    assert (await verify(consumer, voided))["result"] == "voided"
    assert (await verify(consumer, reversed_))["result"] == "reversed"
    answer = await verify(consumer, partial)
    assert answer["result"] == "partially_credited" and answer["invoice"]["buyer"]["name"] == "张*"


async def test_tampered_record(consumer: Any, seller: Any, pool: asyncpg.Pool) -> None:
    invoice = await seller.issue()
    async with pool.acquire() as conn:
        await conn.execute(
            """UPDATE invoices SET content = jsonb_set(content, '{remarks}', '"改过"')
                               WHERE id = $1""",
            uuid.UUID(invoice["id"]),
        )
    answer = await verify(consumer, invoice)
    assert answer["result"] == "tampered" and answer["invoice"] is None
    assert (await verify(consumer, invoice, check_code_last6=wrong_last6(invoice)))["result"] == "mismatch"


async def test_unreadable_stored_content_is_a_mismatch_not_a_failed_batch(
    consumer: Any, seller: Any, pool: asyncpg.Pool
) -> None:
    broken, sound = await seller.issue(), await seller.issue()
    async with pool.acquire() as conn:
        await conn.execute(
            """UPDATE invoices SET content = jsonb_set(content, '{total_amount}', '"lots"')
                               WHERE id = $1""",
            uuid.UUID(broken["id"]),
        )
    answers = await asyncio.gather(verify(consumer, broken), verify(consumer, sound))  # one batch, likely
    assert [a["result"] for a in answers] == ["mismatch", "valid"]


async def test_a_rehashed_or_swapped_signature_record_is_tampered_after_a_good_check(
    consumer: Any, seller: Any, pool: asyncpg.Pool
) -> None:
    """Good signatures are remembered after a check: a record changed and rehashed without our key, or given
    another record's signature, must still fail."""
    rehashed, swapped, donor = (await seller.issue(), await seller.issue(), await seller.issue())
    for invoice in (rehashed, swapped, donor):
        assert (await verify(consumer, invoice))["result"] == "valid"
    async with pool.acquire() as conn:
        content = await conn.fetchval("SELECT content FROM invoices WHERE id = $1", uuid.UUID(rehashed["id"]))
        content = json.loads(content) if isinstance(content, str) else content
        content["remarks"] = "改过"  # and the record hash recomputed to match: only the signature can tell
        await conn.execute(
            "UPDATE invoices SET content = $2::text::jsonb, record_hash = $3 WHERE id = $1",
            uuid.UUID(rehashed["id"]),
            json.dumps(content),
            formats.record_hash(content),
        )
        await conn.execute(
            "UPDATE invoices SET signature = (SELECT signature FROM invoices WHERE id = $2) WHERE id = $1",
            uuid.UUID(swapped["id"]),
            uuid.UUID(donor["id"]),
        )
    for invoice in (rehashed, swapped):
        answer = await verify(consumer, invoice)
        assert answer["result"] == "tampered" and answer["invoice"] is None
    assert (await verify(consumer, donor))["result"] == "valid"


async def test_five_mismatches_lock_the_pair_until_reset(
    consumer: Any, seller: Any, settings: Settings, redis_url: str
) -> None:
    invoice = await seller.issue()
    for _ in range(5):
        assert (await verify(consumer, invoice, check_code_last6=wrong_last6(invoice)))["result"] == "mismatch"
    locked = await verify(consumer, invoice)
    assert locked["result"] == "locked" and locked["invoice"] is None
    other = await consumer.post("/v1/verifications", json=query_of(invoice), headers={"X-Forwarded-For": "10.9.9.9"})
    assert other.json()["result"] == "valid"  # another client is not locked out
    redis = aioredis.from_url(redis_url)
    keys = [k async for k in redis.scan_iter(f"vl:miss:{invoice['invoice_code']}{invoice['invoice_number']}:*")]
    assert keys and await redis.delete(*keys)
    await redis.aclose()
    assert (await verify(consumer, invoice))["result"] == "valid"


async def test_global_ceiling_spares_who_succeeded_and_the_qr(
    consumer: Any, seller: Any, redis_url: str, settings: Settings
) -> None:
    invoice = await seller.issue()
    assert (await verify(consumer, invoice))["result"] == "valid"  # the holder succeeded today
    redis = aioredis.from_url(redis_url)
    key = invoice["invoice_code"] + invoice["invoice_number"]
    day_keys = [k async for k in redis.scan_iter(f"vl:ok:{key}:*")]
    day = day_keys[0].decode().rsplit(":", 1)[1]
    await redis.set(f"vl:gmiss:{key}:{day}", 50)  # many guessers from many addresses
    stranger = await consumer.post("/v1/verifications", json=query_of(invoice), headers={"X-Forwarded-For": "10.8.8.8"})
    assert stranger.json()["result"] == "locked"
    assert (await verify(consumer, invoice))["result"] == "valid"
    qr = await consumer.get(invoice["verify_url"], headers={"X-Forwarded-For": "10.8.8.8"})  # QR: not a guess
    assert 'data-result="valid"' in qr.text
    await redis.delete(f"vl:gmiss:{key}:{day}")
    await redis.aclose()


async def test_rate_limit_429_with_retry_after_and_reset(
    consumer: Any, seller: Any, settings: Settings, redis_url: str
) -> None:
    invoice = await seller.issue()
    answered = 0  # 30 a minute; a loaded machine may cross into the next minute's window on the way (then <= 60)
    while (limited := await consumer.post("/v1/verifications", json=query_of(invoice))).status_code == 200:
        answered += 1
        assert answered <= 60
    assert 30 <= answered <= 60
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60, limited.text
    assert limited.json()["status"] == 429
    page = await consumer.post("/verify", data=query_of(invoice))
    assert page.status_code == 429 and page.headers["retry-after"] and "查验过于频繁" in page.text
    redis = aioredis.from_url(redis_url)
    keys = [k async for k in redis.scan_iter(f"vl:rate:{keyed_hash(settings, 'client', consumer.address)}:*")]
    assert keys and await redis.delete(*keys)
    await redis.aclose()
    assert (await consumer.post("/v1/verifications", json=query_of(invoice))).status_code == 200


async def test_stats_count_verified_share_and_mismatches(consumer: Any, seller: Any) -> None:
    invoice = await seller.issue()
    await seller.issue()
    await verify(consumer, invoice)
    await verify(consumer, invoice, check_code_last6=wrong_last6(invoice))
    months = (await seller.get("/v1/stats")).json()["months"]
    assert months[0]["verified_share"] == 0.5 and months[0]["mismatches"] == 1


async def test_log_holds_keyed_hashes_only(
    consumer: Any, seller: Any, settings: Settings, pool: asyncpg.Pool, verify_server: ServerProcess
) -> None:
    invoice = await seller.issue()
    phone = random_mobile()
    answer = await verify(consumer, invoice, phone=phone)
    assert answer["sms_receipt"] == "queued"
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM verifications WHERE invoice_id = $1", uuid.UUID(invoice["id"]))
    assert row["channel"] == "json" and row["outcome"] == "valid" and row["counted"]
    assert row["client_hash"] == keyed_hash(settings, "client", consumer.address)
    assert row["phone_hash"] == keyed_hash(settings, "phone", phone)
    assert consumer.address not in str(dict(row)) and phone not in str(dict(row))
    server_log = verify_server.log_path.read_text()
    assert invoice["check_code"] not in server_log and phone not in server_log


async def test_stats_command_shows_mismatches(
    settings: Any, seller: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await seller.issue()
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    assert await asyncio.to_thread(main, ["stats", "--json"]) == 0
    months = json.loads(capsys.readouterr().out)["months"]
    assert months and all("mismatches" in m and "verified_share" in m for m in months)
    assert await asyncio.to_thread(main, ["stats"]) == 0
    assert "mismatches" in capsys.readouterr().out.splitlines()[0]
