"""The SMS outbox, one for the whole service: verification's receipts and the buyer's one notice, delivery's
"your paper invoice was delivered". A row is written in the same transaction as what it reports; the worker
sends it (`send_sms`, one job per row) through the SMS channel on `ctx["sms"]`, retrying on `SmsSendFailed`,
and a cron sweep re-enqueues rows whose job was lost (Redis down, a killed worker). The row is the truth: a
job re-reads it and does nothing when it is sent or taken, so a job that runs twice sends once."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import asyncpg
from arq import Retry, cron

from invoicing.errors import SmsSendFailed

log = logging.getLogger("invoiceloop.sms")
Kind = Literal["receipt", "buyer_notice", "delivered"]  # the last two at most once per invoice
MAX_TRIES = 4  # then the row is marked failed
RETRY_DEFER_S = 1.0  # times the try number: 1 s, 2 s, 3 s
STALE_SENDING_S = 60.0  # a row in `sending` this long lost its worker; take it again
SWEEP_AFTER_S = 5.0  # pending rows older than this are re-enqueued by the sweep

INSERT_MANY = """
INSERT INTO sms_outbox (kind, invoice_id, phone, body)
SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::text[])
ON CONFLICT DO NOTHING RETURNING id"""

CLAIM = """
UPDATE sms_outbox SET status = 'sending', claimed_at = now(), attempts = attempts + 1
 WHERE id = $1 AND (status = 'pending' OR (status = 'sending' AND claimed_at < now() - make_interval(secs => $2)))
RETURNING phone, body, attempts"""

MARK_SENT = "UPDATE sms_outbox SET status = 'sent', provider_id = $2, sent_at = now(), last_error = NULL WHERE id = $1"

MARK_UNSENT = "UPDATE sms_outbox SET status = $2, last_error = $3 WHERE id = $1 AND status = 'sending'"

UNSENT = """
SELECT id, attempts FROM sms_outbox
 WHERE (status = 'pending' AND created_at < now() - make_interval(secs => $1))
    OR (status = 'sending' AND claimed_at < now() - make_interval(secs => $2))
 ORDER BY id LIMIT $3"""


async def add(conn: asyncpg.Connection, kind: Kind, texts: Sequence[tuple[uuid.UUID | None, str, str]]) -> list[int]:
    """Rows (invoice id or None, phone, text) of one kind; the ids of those written (a second notice or
    delivered text of an invoice is not)."""
    if not texts:
        return []
    invoice_ids, phones, bodies = (list(column) for column in zip(*texts, strict=True))
    return [int(row["id"]) for row in await conn.fetch(INSERT_MANY, kind, invoice_ids, phones, bodies)]


async def nudge(queue: Any, outbox_ids: Sequence[int]) -> None:
    """Ask the worker to send these rows now (`Queue.enqueue` never raises: the sweep is the safety net)."""
    for outbox_id in outbox_ids:
        await queue.enqueue("send_sms", outbox_id, job_id=f"sms:{outbox_id}:0")


async def send_sms(ctx: dict[str, Any], outbox_id: int) -> str:
    """Send one outbox message through the SMS channel; a refusal (`SmsSendFailed`, or any error of the
    channel) is retried with `Retry`, and after `MAX_TRIES` the row is marked failed."""
    pool = ctx["pool"]
    async with pool.acquire() as conn:
        row = await conn.fetchrow(CLAIM, outbox_id, STALE_SENDING_S)
    if row is None:
        return "nothing to do"
    try:
        provider_id = await ctx["sms"].send(row["phone"], row["body"])
    except Exception as exc:  # a channel's own bug too: a try spent, never an endless resend
        job_try = int(ctx.get("job_try", 1))
        final = job_try >= MAX_TRIES
        reason = exc.reason if isinstance(exc, SmsSendFailed) else type(exc).__name__
        async with pool.acquire() as conn:
            await conn.execute(MARK_UNSENT, outbox_id, "failed" if final else "pending", reason[:300])
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
        await conn.execute(MARK_SENT, outbox_id, str(provider_id))
    return "sent"


async def sweep_sms(ctx: dict[str, Any]) -> int:
    """Re-enqueue unsent rows older than a few seconds (a fresh job id each sweep: arq refuses a known one)."""
    async with ctx["pool"].acquire() as conn:
        rows = await conn.fetch(UNSENT, SWEEP_AFTER_S, STALE_SENDING_S, 500)
    stamp = int(time.time())
    for row in rows:
        await ctx["redis"].enqueue_job("send_sms", row["id"], _job_id=f"sms:{row['id']}:sweep{stamp}")
    return len(rows)


FUNCTIONS = [send_sms]
CRON_JOBS = [cron(sweep_sms, second={0, 15, 30, 45}, run_at_startup=False, unique=True, timeout=30)]
