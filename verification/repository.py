"""SQL of verification: the invoice looked up by code and number, the verification log, the counts,
the SMS outbox and the inbound de-duplication. The caller owns the transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from invoicing.repository import INVOICE_SELECT

FIND_INVOICE = INVOICE_SELECT + " WHERE i.invoice_code = $1 AND i.invoice_number = $2"

INSERT_VERIFICATION = """
INSERT INTO verifications (invoice_id, issuer_id, channel, outcome, counted, via_qr, client_hash, phone_hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"""

# One statement (one round trip, one commit) logs a verification of an existing invoice, counts it
# (or its mismatch), and writes the buyer's one notice when asked ($10 phone, $11 text).
RECORD = """
WITH counted AS (
  UPDATE invoices SET times_verified = times_verified + $5::int, mismatches = mismatches + $9::int,
         first_verified_at = CASE WHEN $5::int = 1 THEN coalesce(first_verified_at, now()) ELSE first_verified_at END
   WHERE id = $1 RETURNING times_verified, first_verified_at
), logged AS (
  INSERT INTO verifications (invoice_id, issuer_id, channel, outcome, counted, via_qr, client_hash, phone_hash)
  VALUES ($1, $2, $3, $4, $5::int = 1, $6, $7, $8)
), notice AS (
  INSERT INTO sms_outbox (kind, invoice_id, phone, body) SELECT 'buyer_notice', $1, $10, $11 WHERE $10::text IS NOT NULL
  ON CONFLICT (invoice_id) WHERE kind = 'buyer_notice' DO NOTHING RETURNING id
)
SELECT c.times_verified, c.first_verified_at, (SELECT id FROM notice) AS notice_id FROM counted c"""

INSERT_OUTBOX = """
INSERT INTO sms_outbox (kind, invoice_id, phone, body) VALUES ($1, $2, $3, $4)
ON CONFLICT (invoice_id) WHERE kind = 'buyer_notice' DO NOTHING RETURNING id"""

CLAIM_OUTBOX = """
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

CLAIM_INBOUND = "INSERT INTO sms_inbound (message_sid) VALUES ($1) ON CONFLICT DO NOTHING RETURNING message_sid"

INBOUND_REPLY = "SELECT reply FROM sms_inbound WHERE message_sid = $1"

SET_INBOUND_REPLY = "UPDATE sms_inbound SET reply = $2 WHERE message_sid = $1"


@dataclass(frozen=True)
class LogEntry:
    """One row of the verification log (hashes only, never raw addresses or phones)."""

    invoice_id: str | None
    issuer_id: str | None
    channel: str
    outcome: str
    counted: bool
    via_qr: bool
    client_hash: str | None
    phone_hash: str | None


def _uuid(text: str | None) -> uuid.UUID | None:
    return uuid.UUID(text) if text else None


async def find_invoice(conn: asyncpg.Connection, code: str, number: str) -> asyncpg.Record | None:
    """The invoice row (as `invoicing.repository.to_invoice` reads it) with this code and number."""
    return await conn.fetchrow(FIND_INVOICE, code, number)


async def log_verification(conn: asyncpg.Connection, e: LogEntry) -> None:
    """Append one verification to the log."""
    await conn.execute(INSERT_VERIFICATION, _uuid(e.invoice_id), _uuid(e.issuer_id), e.channel, e.outcome,
                       e.counted, e.via_qr, e.client_hash, e.phone_hash)  # fmt: skip


@dataclass(frozen=True)
class Counts:
    """The invoice's counts after a verification, and the buyer notice written (if any)."""

    times_verified: int
    first_verified_at: datetime | None
    notice_id: int | None


async def record(conn: asyncpg.Connection, e: LogEntry, *, mismatch: bool, notice: tuple[str, str] | None) -> Counts:
    """Log a verification of an existing invoice, count it, and write the buyer notice (phone, text)."""
    phone, text = notice or (None, None)
    row = await conn.fetchrow(RECORD, _uuid(e.invoice_id), _uuid(e.issuer_id), e.channel, e.outcome, int(e.counted),
                              e.via_qr, e.client_hash, e.phone_hash, int(mismatch), phone, text)  # fmt: skip
    return Counts(int(row["times_verified"]), row["first_verified_at"], row["notice_id"])


async def add_sms(conn: asyncpg.Connection, kind: str, invoice_id: str | None, phone: str, body: str) -> int | None:
    """An outbox row; None when a buyer notice for this invoice exists already."""
    value: Any = await conn.fetchval(INSERT_OUTBOX, kind, _uuid(invoice_id), phone, body)
    return int(value) if value is not None else None


async def claim_sms(conn: asyncpg.Connection, outbox_id: int, stale_s: float) -> asyncpg.Record | None:
    """Take an unsent row for sending (or one whose sender vanished `stale_s` ago); None if sent or taken."""
    return await conn.fetchrow(CLAIM_OUTBOX, outbox_id, stale_s)


async def mark_sent(conn: asyncpg.Connection, outbox_id: int, provider_id: str) -> None:
    """The provider took the message."""
    await conn.execute(MARK_SENT, outbox_id, provider_id)


async def mark_unsent(conn: asyncpg.Connection, outbox_id: int, status: str, reason: str) -> None:
    """Back to `pending` (to retry) or `failed` (given up), with the provider's short reason."""
    await conn.execute(MARK_UNSENT, outbox_id, status, reason[:300])


async def unsent(conn: asyncpg.Connection, older_s: float, stale_s: float, limit: int = 500) -> list[asyncpg.Record]:
    """Rows the queue lost: pending for `older_s`, or stuck in sending for `stale_s`."""
    return list(await conn.fetch(UNSENT, older_s, stale_s, limit))


async def claim_inbound(conn: asyncpg.Connection, message_sid: str) -> bool:
    """True the first time this MessageSid is seen."""
    return await conn.fetchval(CLAIM_INBOUND, message_sid) is not None


async def inbound_reply(conn: asyncpg.Connection, message_sid: str) -> str | None:
    """The reply given to this MessageSid (None while it is being answered)."""
    value: Any = await conn.fetchval(INBOUND_REPLY, message_sid)
    return str(value) if value is not None else None


async def set_inbound_reply(conn: asyncpg.Connection, message_sid: str, reply: str) -> None:
    """Remember the reply so a repeated delivery gets the same one."""
    await conn.execute(SET_INBOUND_REPLY, message_sid, reply)
