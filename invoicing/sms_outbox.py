"""The SMS outbox, one for the whole service: verification's receipts and the buyer's one notice, delivery's
"your paper invoice was delivered". A row is written in the same transaction as what it reports; the worker
sends it (one `send_sms` job per row) through the SMS channel, retrying with `Retry`, and a sweep re-enqueues
rows whose job was lost (Redis down, a killed worker). The row is the truth: a job re-reads it and does
nothing when it is sent or taken, so a job that runs twice sends once."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Literal, Protocol

import asyncpg
from arq import ArqRedis, Retry

from invoicing import outbox_repository as repo
from invoicing.errors import SmsSendFailed
from invoicing.model import Invoice
from invoicing.queue import FAN_OUT_SMS, SEND_SMS, Queue

log = logging.getLogger("invoiceloop.sms")
# the buyer's notice, the delivered text and a lottery win at most once per invoice; the buyer's texts of a record
# (`buyer_texts`: invoice, void, credit_note) once per record and kind
Kind = Literal["receipt", "buyer_notice", "delivered", "lottery_win", "invoice", "void", "credit_note"]
UNIQUE_TEXT_KINDS = frozenset(repo.BUYER_TEXT_KINDS)  # texts holding a link of their own
MAX_TRIES = 4  # then the row is marked failed
RETRY_DEFER_S = 1.0  # times the try number: 1 s, 2 s, 3 s
STALE_SENDING_S = 60.0  # SMS_LEASE_S's default: a row in `sending` this long lost its worker; take it again
SWEEP_AFTER_S = 5.0  # pending rows older than this are re-enqueued by the sweep
SWEEP_LIMIT = 500


class SmsChannel(Protocol):
    """Where outgoing texts go (`verification.sms` has the console and Twilio channels)."""

    async def send(self, to: str, body: str) -> str:
        """Send `body` to the E.164 number `to`; return the message id or raise `SmsSendFailed`."""
        ...

    async def find(self, to: str, body: str) -> str | None:
        """The id of a message with this text already sent to `to`, or None (`SmsSendFailed` when unsure)."""
        ...


async def add(conn: asyncpg.Connection, kind: Kind, texts: Sequence[tuple[uuid.UUID | None, str, str]]) -> list[int]:
    """Rows (invoice id or None, phone, text) of one kind; the ids of those written (a second notice or
    delivered text of an invoice is not)."""
    if not texts:
        return []
    return await repo.insert(conn, kind, texts)


async def nudge(queue: Queue, outbox_ids: Sequence[int]) -> None:
    """Ask the worker to send these rows now (`Queue.enqueue` never raises: the sweep is the safety net)."""
    for outbox_id in outbox_ids:
        await queue.enqueue(SEND_SMS, outbox_id, job_id=f"sms:{outbox_id}:0")


async def nudge_buyer(queue: Queue, kind: Kind, invoices: Sequence[Invoice]) -> None:
    """After commit: ask the worker to send the buyer's texts of these records (`chain_repository` wrote one for
    each electronic record with a phone we may text). One job looks the rows up, so issuing pays no query for it;
    never raises: when Redis is away, the sweep finds the rows."""
    ids = [inv.id for inv in invoices if inv.buyer.phone and inv.delivery_method == "electronic"]
    if ids:
        await queue.enqueue(FAN_OUT_SMS, kind, ids, job_id=f"sms-fan:{kind}:{ids[0]}")


async def fan_out(pool: asyncpg.Pool, redis: ArqRedis, kind: str, invoice_ids: Sequence[str]) -> int:
    """One `send_sms` job for each pending buyer's text of these records (the `fan_out_sms` job)."""
    async with pool.acquire() as conn:
        ids = await repo.pending_of(conn, kind, [uuid.UUID(i) for i in invoice_ids])
    for outbox_id in ids:
        await redis.enqueue_job(SEND_SMS, outbox_id, _job_id=f"sms:{outbox_id}:0")
    return len(ids)


async def send(
    pool: asyncpg.Pool, channel: SmsChannel, outbox_id: int, job_try: int, lease_s: float = STALE_SENDING_S
) -> str:
    """Send one outbox message through `channel` (the `send_sms` job); a refusal (`SmsSendFailed`, or any error
    of the channel) is retried with `Retry`, and after `MAX_TRIES` the row is marked failed."""
    async with pool.acquire() as conn:
        row = await repo.claim(conn, outbox_id, lease_s)
    if row is None:
        return "nothing to do"
    try:
        provider_id = await _already_sent(channel, row)
        if provider_id is not None:
            async with pool.acquire() as conn:
                await repo.mark_sent(conn, outbox_id, provider_id)
            return "sent before"
        provider_id = await channel.send(row["phone"], row["body"])
    except Exception as exc:  # a channel's own bug too: a try spent, never an endless resend
        final = job_try >= MAX_TRIES
        reason = exc.reason if isinstance(exc, SmsSendFailed) else type(exc).__name__
        async with pool.acquire() as conn:
            await repo.mark_unsent(conn, outbox_id, "failed" if final else "pending", reason[:300])
        log.warning(
            "SMS %s not sent (try %s): %s",
            outbox_id,
            job_try,
            reason,
            exc_info=None if isinstance(exc, SmsSendFailed) else exc,
        )
        if final:
            return "failed"
        raise Retry(defer=RETRY_DEFER_S * job_try) from None
    async with pool.acquire() as conn:
        await repo.mark_sent(conn, outbox_id, str(provider_id))
    return "sent"


async def _already_sent(channel: SmsChannel, row: asyncpg.Record) -> str | None:
    """For a row taken from a worker that was lost mid-send (killed after the channel took the text, before the
    row was marked), the id of the text the channel already has. Asked only for kinds whose every text is unique
    (a buyer's text holds its own signed link), so a match is this row's text and no other."""
    if row["was"] != "sending" or row["kind"] not in UNIQUE_TEXT_KINDS:
        return None
    return await channel.find(row["phone"], row["body"])


async def sweep(pool: asyncpg.Pool, redis: ArqRedis, lease_s: float = STALE_SENDING_S) -> int:
    """Re-enqueue unsent rows older than a few seconds (a fresh job id each sweep: arq refuses a known one)."""
    async with pool.acquire() as conn:
        ids = await repo.unsent(conn, SWEEP_AFTER_S, lease_s, SWEEP_LIMIT)
    stamp = int(time.time())
    for outbox_id in ids:
        await redis.enqueue_job(SEND_SMS, outbox_id, _job_id=f"sms:{outbox_id}:sweep{stamp}")
    return len(ids)
