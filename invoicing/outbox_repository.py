"""SQL of the SMS outbox (`invoicing.sms_outbox`). Named constants and small `async def f(conn, ...)` functions;
the caller owns the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

INSERT_MANY = """
INSERT INTO sms_outbox (kind, invoice_id, phone, body)
SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::text[])
ON CONFLICT DO NOTHING RETURNING id"""

# The buyer's texts of a record (one per record and kind, each holding a link of its own): the kinds of the partial
# unique index `sms_outbox_one_buyer_text` (migrations/0010).
BUYER_TEXT_KINDS = ("invoice", "void", "credit_note")
_BUYER_TEXT_KINDS_SQL = ", ".join(f"'{kind}'" for kind in BUYER_TEXT_KINDS)

# The kinds are spelled out so that every plan, a prepared statement's generic one too, reads the buyer-text index
# of the records asked for, not every unsent row (the backlog).
PENDING_OF = f"""
SELECT id FROM sms_outbox
 WHERE kind = $1 AND kind IN ({_BUYER_TEXT_KINDS_SQL}) AND invoice_id = ANY($2::uuid[]) AND status = 'pending'"""  # noqa: S608 - fixed SQL fragments, no input

# A row is taken when pending, or when it has been `sending` so long that its worker must be gone; `was` says which
# (a row taken from a lost worker may have been sent: `sms_outbox.send` asks the channel first).
CLAIM = """
UPDATE sms_outbox o SET status = 'sending', claimed_at = now(), attempts = o.attempts + 1
  FROM (SELECT id, status FROM sms_outbox WHERE id = $1 FOR UPDATE) AS before
 WHERE o.id = before.id
   AND (o.status = 'pending' OR (o.status = 'sending' AND o.claimed_at < now() - make_interval(secs => $2)))
RETURNING o.phone, o.body, o.attempts, o.kind, before.status AS was"""

MARK_SENT = "UPDATE sms_outbox SET status = 'sent', provider_id = $2, sent_at = now(), last_error = NULL WHERE id = $1"

MARK_UNSENT = "UPDATE sms_outbox SET status = $2, last_error = $3 WHERE id = $1 AND status = 'sending'"

UNSENT = """
SELECT id, attempts FROM sms_outbox
 WHERE (status = 'pending' AND created_at < now() - make_interval(secs => $1))
    OR (status = 'sending' AND claimed_at < now() - make_interval(secs => $2))
 ORDER BY id LIMIT $3"""


async def insert(conn: asyncpg.Connection, kind: str, texts: Sequence[tuple[uuid.UUID | None, str, str]]) -> list[int]:
    """Rows (invoice id or None, phone, text) of one kind; the ids of those written (the unique indexes refuse
    a second buyer notice or delivered text of an invoice)."""
    invoice_ids, phones, bodies = (list(column) for column in zip(*texts, strict=True))
    return [int(row["id"]) for row in await conn.fetch(INSERT_MANY, kind, invoice_ids, phones, bodies)]


async def claim(conn: asyncpg.Connection, outbox_id: int, stale_s: float) -> asyncpg.Record | None:
    """Take the row for sending (phone, body, attempts, kind, the status it `was` in), or None when it is sent,
    failed or taken."""
    return await conn.fetchrow(CLAIM, outbox_id, stale_s)


async def mark_sent(conn: asyncpg.Connection, outbox_id: int, provider_id: str) -> None:
    """The channel took the text."""
    await conn.execute(MARK_SENT, outbox_id, provider_id)


async def mark_unsent(conn: asyncpg.Connection, outbox_id: int, status: str, reason: str) -> None:
    """Back to `pending` for another try, or `failed` for good, with the reason (never the text or phone)."""
    await conn.execute(MARK_UNSENT, outbox_id, status, reason)


async def unsent(conn: asyncpg.Connection, older_than_s: float, stale_s: float, limit: int) -> list[int]:
    """Rows whose job was lost: pending for longer than `older_than_s`, or taken and stale."""
    return [int(row["id"]) for row in await conn.fetch(UNSENT, older_than_s, stale_s, limit)]


async def pending_of(conn: asyncpg.Connection, kind: str, invoice_ids: Sequence[uuid.UUID]) -> list[int]:
    """The pending rows of this kind about these records."""
    return [int(row["id"]) for row in await conn.fetch(PENDING_OF, kind, list(invoice_ids))]
