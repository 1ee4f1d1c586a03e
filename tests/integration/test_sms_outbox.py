"""The shared SMS outbox on real PostgreSQL: send once, retry with Retry, give up, the sweep, and one
notice or delivered text per invoice."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from arq import Retry

from invoicing import numbering, services, sms_outbox
from invoicing.errors import SmsSendFailed
from invoicing.model import DEFAULT_TAX_RATES
from invoicing.numbering import Issuing
from invoicing.repository import Issuer
from invoicing.validation import invoice_request
from tests.samples import invoice_body


class FlakySms:
    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures, self.sent = failures, []
        self.error = error or SmsSendFailed("Twilio refused the message (HTTP 500)")

    async def send(self, to: str, body: str) -> str:
        if self.failures:
            self.failures -= 1
            raise self.error
        self.sent.append((to, body))
        return f"SM{len(self.sent)}"

    async def find(self, to: str, body: str) -> str | None:
        self.asked = getattr(self, "asked", 0) + 1
        return next((f"SM{i + 1}" for i, sent in enumerate(self.sent) if sent == (to, body)), None)


class FakeArq:
    def __init__(self) -> None:
        self.jobs: list[tuple[Any, ...]] = []

    async def enqueue_job(self, *args: Any, _job_id: str | None = None) -> None:
        self.jobs.append((*args, _job_id))


async def outbox_row(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        [outbox_id] = await sms_outbox.add(
            conn, "receipt", [(None, "+8613912345678", "【发票查验】查验一致。Genuine.")]
        )
    assert outbox_id is not None
    return outbox_id


async def status_of(pool: asyncpg.Pool, outbox_id: int) -> asyncpg.Record:
    async with pool.acquire() as conn:
        return await conn.fetchrow(
            "SELECT status, attempts, provider_id, last_error FROM sms_outbox WHERE id = $1", outbox_id
        )


async def test_sent_once_then_nothing_to_do(pool: asyncpg.Pool) -> None:
    outbox_id, sms = await outbox_row(pool), FlakySms(0)
    assert await sms_outbox.send(pool, sms, outbox_id, job_try=1) == "sent"
    assert await sms_outbox.send(pool, sms, outbox_id, job_try=1) == "nothing to do"
    row = await status_of(pool, outbox_id)
    assert row["status"] == "sent" and row["provider_id"] == "SM1" and len(sms.sent) == 1


@pytest.mark.parametrize("error", [SmsSendFailed("Twilio refused the message (HTTP 500)"), KeyError("HTTP 500")])
async def test_retries_then_gives_up(pool: asyncpg.Pool, error: Exception) -> None:
    """A refusal, or a channel's own bug, spends a try each time; the row is never resent without end."""
    outbox_id, sms = await outbox_row(pool), FlakySms(10, error)
    for job_try in range(1, sms_outbox.MAX_TRIES):
        with pytest.raises(Retry):
            await sms_outbox.send(pool, sms, outbox_id, job_try=job_try)
        assert (await status_of(pool, outbox_id))["status"] == "pending"
    assert await sms_outbox.send(pool, sms, outbox_id, job_try=sms_outbox.MAX_TRIES) == "failed"
    row = await status_of(pool, outbox_id)
    assert row["status"] == "failed" and row["attempts"] == sms_outbox.MAX_TRIES
    assert row["last_error"] == (error.reason if isinstance(error, SmsSendFailed) else "KeyError")


async def test_sweep_re_enqueues_lost_rows(pool: asyncpg.Pool) -> None:
    outbox_id = await outbox_row(pool)
    async with pool.acquire() as conn:
        await conn.execute("UPDATE sms_outbox SET created_at = now() - interval '1 minute' WHERE id = $1", outbox_id)
    arq = FakeArq()
    assert await sms_outbox.sweep(pool, arq) >= 1
    mine = [job for job in arq.jobs if job[1] == outbox_id]
    assert mine and mine[0][0] == "send_sms" and "sweep" in mine[0][2]
    assert await sms_outbox.send(pool, FlakySms(0), outbox_id, job_try=1) == "sent"


async def test_one_notice_and_one_delivered_text_per_invoice(
    pool: asyncpg.Pool, issuing: Issuing, issuer: tuple[Issuer, str]
) -> None:
    draft = numbering.draft_of(invoice_request(invoice_body(), DEFAULT_TAX_RATES))
    async with pool.acquire() as conn:
        [invoice] = (await services.issue(conn, issuing, issuer[0], [draft])).invoices
    invoice_id = uuid.UUID(invoice.id)
    async with pool.acquire() as conn:
        for kind in ("buyer_notice", "delivered"):
            first = await sms_outbox.add(conn, kind, [(invoice_id, "+8613912345678", "一")])
            assert len(first) == 1 and await sms_outbox.add(conn, kind, [(invoice_id, "+8613912345678", "二")]) == []
        receipts = [(None, "+8613912345678", "回执")] * 2
        assert len(await sms_outbox.add(conn, "receipt", receipts)) == 2  # receipts are not once per invoice


async def lost_mid_send(pool: asyncpg.Pool, outbox_id: int) -> None:
    """The row as a worker killed mid-send leaves it: `sending`, claimed longer ago than the lease."""
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE sms_outbox SET status = 'sending', attempts = 1, claimed_at = now() - make_interval(secs => $2) "
            "WHERE id = $1",
            outbox_id,
            sms_outbox.STALE_SENDING_S + 1,
        )


async def test_a_buyer_text_the_channel_took_before_the_kill_is_not_sent_again(
    pool: asyncpg.Pool, issuing: Issuing, issuer: tuple[Issuer, str]
) -> None:
    """Written by issuing (one row, kind invoice, with the link); a worker took it, the channel sent it, the worker
    died before marking it: the next take finds the text at the channel and marks the row, sending nothing."""
    draft = numbering.draft_of(invoice_request(invoice_body(), DEFAULT_TAX_RATES))
    async with pool.acquire() as conn:
        [invoice] = (await services.issue(conn, issuing, issuer[0], [draft])).invoices
        rows = await conn.fetch(
            "SELECT id, kind, phone, body FROM sms_outbox WHERE invoice_id = $1", uuid.UUID(invoice.id)
        )
    [row] = rows
    assert row["kind"] == "invoice" and row["phone"] == invoice.buyer.phone and "/d/" in row["body"]
    sms = FlakySms(0)
    sms.sent.append((row["phone"], row["body"]))  # the channel took it; the worker was killed before mark_sent
    await lost_mid_send(pool, row["id"])
    assert await sms_outbox.send(pool, sms, row["id"], job_try=1) == "sent before"
    done = await status_of(pool, row["id"])
    assert len(sms.sent) == 1 and done["status"] == "sent" and done["provider_id"] == "SM1"


async def test_a_lost_buyer_text_the_channel_never_took_is_sent(
    pool: asyncpg.Pool, issuing: Issuing, issuer: tuple[Issuer, str]
) -> None:
    draft = numbering.draft_of(invoice_request(invoice_body(), DEFAULT_TAX_RATES))
    async with pool.acquire() as conn:
        [invoice] = (await services.issue(conn, issuing, issuer[0], [draft])).invoices
        outbox_id = await conn.fetchval("SELECT id FROM sms_outbox WHERE invoice_id = $1", uuid.UUID(invoice.id))
    await lost_mid_send(pool, outbox_id)
    sms = FlakySms(0)
    assert await sms_outbox.send(pool, sms, outbox_id, job_try=1) == "sent" and len(sms.sent) == 1


async def test_a_fresh_row_and_a_lost_receipt_are_sent_without_asking(pool: asyncpg.Pool) -> None:
    """Only a buyer's text, whose every text is unique, is looked up; a receipt's text may repeat."""
    fresh, lost = await outbox_row(pool), await outbox_row(pool)
    await lost_mid_send(pool, lost)
    sms = FlakySms(0)
    sms.sent.append(("+8613912345678", "【发票查验】查验一致。Genuine."))
    assert await sms_outbox.send(pool, sms, fresh, job_try=1) == "sent"
    assert await sms_outbox.send(pool, sms, lost, job_try=1) == "sent"
    assert len(sms.sent) == 3 and getattr(sms, "asked", 0) == 0


async def test_one_buyer_text_per_record_and_kind(
    pool: asyncpg.Pool, issuing: Issuing, issuer: tuple[Issuer, str]
) -> None:
    draft = numbering.draft_of(invoice_request(invoice_body(), DEFAULT_TAX_RATES))
    async with pool.acquire() as conn:
        [invoice] = (await services.issue(conn, issuing, issuer[0], [draft])).invoices
        key = uuid.UUID(invoice.id)
        assert await sms_outbox.add(conn, "invoice", [(key, "+8613912345678", "again")]) == []
        assert len(await sms_outbox.add(conn, "void", [(key, "+8613912345678", "void")])) == 1
        assert await sms_outbox.add(conn, "void", [(key, "+8613912345678", "void again")]) == []
