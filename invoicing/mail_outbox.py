"""The buyer's mail outbox: the invoice, its void and its credit notes e-mailed to the buyer with the PDF.

A row (`mail_outbox`, one per record and kind) is written in the statement that writes the record (see
`chain_repository.INSERT_RECORDS` and `INSERT_VOID`); after commit the API nudges the worker (`send_mail`, one
job per row, or `fan_out_mail` for a batch) and a sweep re-enqueues rows whose job was lost.

At most once, and what is left of "twice". A job takes the row under a lease (`sending`, `claimed_at`) before it
speaks SMTP, and the whole SMTP exchange is bounded well inside the lease, so two workers never send one row at
the same time, and a worker killed before it has sent the message's final `.` leaves a row that is taken again
once the lease runs out: the server never took that mail (a server drops a message whose DATA did not end), so
nothing is sent twice. SMTP cannot be made exactly-once (RFC 1047): a worker killed between the final `.` and the
commit of `mark_sent` (the server's `250` and one UPDATE: milliseconds) leaves the row `sending`, and it is sent
again after the lease. That
resend carries the same Message-ID (`mail_message.message_id`, from the record and kind), so the mailbox or the
reader sees it is the same mail. Rendering the PDF happens before the lease is taken, so the lease bounds only
the SMTP exchange."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from arq import ArqRedis, Retry

from invoicing import formats, mail_message, repository
from invoicing import mail_repository as repo
from invoicing.mail_message import MailKind
from invoicing.model import Invoice
from invoicing.pdf import render_invoice_pdf
from invoicing.queue import FAN_OUT_MAIL, SEND_MAIL, Queue
from invoicing.smtp import SmtpRefused, SmtpTarget

log = logging.getLogger("invoiceloop.mail")
MAX_ATTEMPTS = 12  # then the row is marked failed: about 9 hours of tries with the backoff below
RETRY_FIRST_S = 10.0  # doubling after each failed try, up to RETRY_MAX_S
RETRY_MAX_S = 3600.0
DEFAULT_LEASE_S = 120.0  # MAIL_LEASE_S: a row `sending` this long lost its worker and is taken again
SWEEP_GRACE_S = 5.0  # a due row is left this long to its own job before the sweep re-enqueues it
SWEEP_LIMIT = 500
NUDGE_ONE_BY_ONE = 10  # more records than this (a batch): one fan-out job instead of a job each


@dataclass(frozen=True)
class Mailer:
    """What sending needs: the SMTP server, the From address, the public base URL (the verify link) and the lease."""

    smtp: SmtpTarget
    sender: str
    public_base_url: str
    lease_s: float = DEFAULT_LEASE_S

    @property
    def smtp_timeout_s(self) -> float:
        """Each SMTP step's bound: a third of the lease, so the exchange ends (or is dropped) well inside it."""
        return self.lease_s / 3


def backoff_s(attempts: int) -> float:
    """How long to wait after the `attempts`-th failed try: 10 s, 20 s, 40 s, ... at most an hour."""
    return float(min(RETRY_FIRST_S * 2 ** max(attempts - 1, 0), RETRY_MAX_S))


def job_id(kind: str, invoice_id: str, suffix: str = "0") -> str:
    """The arq job id of a row's send (arq refuses a known id: the sweep gives a fresh suffix)."""
    return f"mail:{kind}:{invoice_id}:{suffix}"


async def nudge(queue: Queue, kind: MailKind, invoices: Sequence[Invoice]) -> None:
    """After commit: ask the worker to send the mails of these records (those with a buyer e-mail). Never
    raises: when Redis is away, the sweep finds the rows."""
    ids = [inv.id for inv in invoices if inv.buyer.email]
    if len(ids) > NUDGE_ONE_BY_ONE:
        await queue.enqueue(FAN_OUT_MAIL, kind, ids, job_id=f"mail-fan:{kind}:{ids[0]}")
        return
    for invoice_id in ids:
        await queue.enqueue(SEND_MAIL, kind, invoice_id, job_id=job_id(kind, invoice_id))


async def fan_out(redis: ArqRedis, kind: str, invoice_ids: Sequence[str]) -> int:
    """One `send_mail` job for each record of a batch."""
    for invoice_id in invoice_ids:
        await redis.enqueue_job(SEND_MAIL, kind, invoice_id, _job_id=job_id(kind, invoice_id))
    return len(invoice_ids)


async def _load(pool: asyncpg.Pool, key: uuid.UUID, kind: str, lease_s: float) -> tuple[str, Invoice] | None:
    async with pool.acquire() as conn:
        email = await repo.peek(conn, key, kind, lease_s)
        if email is None:
            return None
        row = await repository.get_invoice_row_by_id(conn, key)
    return (email, repository.to_invoice(row)) if row is not None else None


async def send(pool: asyncpg.Pool, mailer: Mailer, kind: MailKind, invoice_id: str) -> str:
    """Send one row (the `send_mail` job): render the PDF, take the lease, speak SMTP, mark it sent. A refusal
    puts the row back with a backoff (and `Retry` asks arq to come back then); after `MAX_ATTEMPTS` it is failed."""
    key = uuid.UUID(invoice_id)
    loaded = await _load(pool, key, kind, mailer.lease_s)
    if loaded is None:
        return "nothing to do"
    email, inv = loaded
    verify_url = formats.verify_url(mailer.public_base_url, inv)
    pdf = await asyncio.to_thread(render_invoice_pdf, inv, verify_url)
    async with pool.acquire() as conn:
        row = await repo.claim(conn, key, kind, mailer.lease_s)
    if row is None:
        return "nothing to do"  # another job took it meanwhile
    try:
        message = mail_message.build(kind, inv, to=email, sender=mailer.sender, verify_url=verify_url, pdf=pdf)
    except ValueError:  # no address a server could take: no try will do better
        return await _unsent(pool, row, "failed", "not a usable e-mail address", kind, invoice_id)
    try:
        await mailer.smtp.send(message, mailer.smtp_timeout_s)
    except SmtpRefused as exc:
        final = row["attempts"] >= MAX_ATTEMPTS
        result = await _unsent(pool, row, "failed" if final else "pending", exc.reason, kind, invoice_id)
        if final:
            return result
        raise Retry(defer=backoff_s(row["attempts"])) from None
    async with pool.acquire() as conn:
        await repo.mark_sent(conn, row["id"])
    return "sent"


async def _unsent(pool: asyncpg.Pool, row: asyncpg.Record, status: str, reason: str, kind: str, invoice_id: str) -> str:
    async with pool.acquire() as conn:
        await repo.mark_unsent(conn, row["id"], row["claimed_at"], status, reason[:300], backoff_s(row["attempts"]))
    log.warning("mail %s of %s not sent (try %s, now %s): %s", kind, invoice_id, row["attempts"], status, reason)
    return status


async def sweep(pool: asyncpg.Pool, redis: ArqRedis, lease_s: float) -> int:
    """Re-enqueue rows whose job was lost (Redis down at the nudge, arq's tries used up, a killed worker)."""
    async with pool.acquire() as conn:
        rows = await repo.due(conn, SWEEP_GRACE_S, lease_s, SWEEP_LIMIT)
    stamp = f"sweep{int(time.time())}"
    for key, kind in rows:
        await redis.enqueue_job(SEND_MAIL, kind, str(key), _job_id=job_id(kind, str(key), stamp))
    return len(rows)
