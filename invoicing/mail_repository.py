"""SQL of the mail outbox (`invoicing.mail_outbox`). Rows are keyed by (invoice id, kind); the rows themselves
are written by `chain_repository` in the issuing and voiding statements. The caller owns the transaction."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

# A row may be taken when it is pending and due, or `sending` under a lease that has run out (its worker died).
_TAKEABLE = """((status = 'pending' AND next_attempt_at <= now())
       OR (status = 'sending' AND claimed_at < now() - make_interval(secs => $3)))"""

PEEK = "SELECT email FROM mail_outbox WHERE invoice_id = $1 AND kind = $2 AND " + _TAKEABLE  # noqa: S608 - constants

CLAIM = (
    """
UPDATE mail_outbox SET status = 'sending', claimed_at = now(), attempts = attempts + 1
 WHERE invoice_id = $1 AND kind = $2 AND """
    + _TAKEABLE
    + " RETURNING id, email, attempts, claimed_at"
)

MARK_SENT = "UPDATE mail_outbox SET status = 'sent', sent_at = now(), last_error = NULL WHERE id = $1"

# Only the lease holder puts a row back: a worker whose lease ran out and was taken over changes nothing.
MARK_UNSENT = """
UPDATE mail_outbox SET status = $3, last_error = $4, next_attempt_at = now() + make_interval(secs => $5)
 WHERE id = $1 AND status = 'sending' AND claimed_at = $2"""

DUE = """
SELECT invoice_id, kind FROM mail_outbox
 WHERE (status = 'pending' AND next_attempt_at < now() - make_interval(secs => $1))
    OR (status = 'sending' AND claimed_at < now() - make_interval(secs => $2))
 ORDER BY next_attempt_at LIMIT $3"""


async def peek(conn: asyncpg.Connection, invoice_id: uuid.UUID, kind: str, lease_s: float) -> str | None:
    """The address of a row that could be taken now, else None (sent, failed, taken or not due)."""
    email: str | None = await conn.fetchval(PEEK, invoice_id, kind, lease_s)
    return email


async def claim(conn: asyncpg.Connection, invoice_id: uuid.UUID, kind: str, lease_s: float) -> asyncpg.Record | None:
    """Take the row under a lease of `lease_s` (id, email, attempts, claimed_at), or None."""
    return await conn.fetchrow(CLAIM, invoice_id, kind, lease_s)


async def mark_sent(conn: asyncpg.Connection, outbox_id: int) -> None:
    """The SMTP server accepted the mail."""
    await conn.execute(MARK_SENT, outbox_id)


async def mark_unsent(
    conn: asyncpg.Connection, outbox_id: int, claimed_at: datetime, status: str, reason: str, retry_in_s: float
) -> None:
    """Back to `pending` (taken again after `retry_in_s`) or `failed` for good, with the reason (never the
    address)."""
    await conn.execute(MARK_UNSENT, outbox_id, claimed_at, status, reason, retry_in_s)


async def due(conn: asyncpg.Connection, grace_s: float, lease_s: float, limit: int) -> list[tuple[uuid.UUID, str]]:
    """(invoice id, kind) of rows whose job was lost: due for `grace_s` already, or taken under a lost lease."""
    return [(row["invoice_id"], row["kind"]) for row in await conn.fetch(DUE, grace_s, lease_s, limit)]
