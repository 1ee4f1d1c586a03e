"""SQL of verification: the invoice looked up by code and number, the verification log, the counts, the
buyer's notice (into the shared `invoicing.sms_outbox`) and the inbound de-duplication. The caller owns the
transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from invoicing.rollup_repository import ROLL_VERIFIED

# What a verification reads of its invoices: the stored content and what proves it (the public view, the
# match and the integrity check are all worked out from these), the status and whether chained records must
# agree with it (a void, credit notes: usually none, two index probes that find nothing; they are read in a
# second query when there are some), the leaf of the public log that holds the record, and whether the buyer
# has had their one notice (then no notice row is attempted); not the counts, which the log statement returns.
# Exactly the pairs asked for, one probe of the (code, number) index each, joined from the arrays (of the columns'
# own type, char(n): a text[] would make PostgreSQL cast the column and scan the whole table). Codes and numbers
# as two `= ANY` lists matched every code with every number: 64 asked pairs were 4,096 index probes, and the more
# invoices a series holds the more of those pairs exist and were read (rows, log leaves, chained records) for
# nothing: 6,600 buffers per batch of 64 at 15 thousand invoices, 31,000 at a million (docs/scale-data.md).
# The notice, the void and the credit notes are each one probe per invoice found (a LATERAL with LIMIT), never an
# EXISTS: PostgreSQL may answer an EXISTS with a hashed subplan that reads every row of the table once per
# statement, and a prepared statement keeps that plan when it was made while the table looked small. At 10 M
# invoices a plan made just after the outbox was emptied read every buyer's notice, about 1,300 to 2,000 rows, for
# each lookup, and the rows grew with every notice (docs/scale-data.md).
FIND_INVOICES = """
SELECT i.id, i.issuer_id, i.status, i.content, i.record_hash, i.signature, i.key_id, i.invoice_code,
       i.invoice_number, l.leaf_index, n.found IS NOT NULL AS buyer_notified, v.found IS NOT NULL AS voided,
       c.found IS NOT NULL AS credited
  FROM (SELECT DISTINCT code, number FROM unnest($1::char(12)[], $2::char(8)[]) AS q(code, number)) AS q
  JOIN invoices i ON i.invoice_code = q.code AND i.invoice_number = q.number
  LEFT JOIN log_leaves l ON l.record_hash = i.record_hash
  LEFT JOIN LATERAL (SELECT true AS found FROM sms_outbox o WHERE o.invoice_id = i.id AND o.kind = 'buyer_notice'
                      LIMIT 1) n ON true
  LEFT JOIN LATERAL (SELECT true AS found FROM voids v WHERE v.invoice_id = i.id LIMIT 1) v ON true
  LEFT JOIN LATERAL (SELECT true AS found FROM invoices c WHERE c.original_invoice_id = i.id LIMIT 1) c ON true"""

# One statement (one round trip, one commit) logs a batch of verifications, counts those of existing
# invoices (or their mismatches) in `invoice_counts`, and writes each buyer's one notice when asked. The
# counts are upserted in invoice id order, and notices are written only for invoices whose counts row this
# statement holds, so two batches touching the same invoices queue instead of deadlocking. Each verification
# gets the count as it stood after itself (the invoice's new count less the counted ones after it). A first
# verification and each mismatch are added to the closed-loop rollup (`ROLL_VERIFIED`, after the counts rows; its
# `moved.first` is the one rule of "verified for the first time by this statement"). The issuer's webhook events
# ride along: `invoice.first_verified` for those same invoices, `invoice.locked` once a China day per invoice when a
# try was answered `locked` (the limits, in Redis, locked a guesser out of it), each only when the issuer has an
# endpoint that wants it.
RECORD = f"""
WITH v AS MATERIALIZED (
  SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bool[], $6::bool[], $7::text[],
                       $8::text[], $9::bool[], $10::text[], $11::text[])
    WITH ORDINALITY AS v(invoice_id, issuer_id, channel, outcome, counted, via_qr, client_hash, phone_hash,
                         mismatch, notice_phone, notice_text, ord)
), counted AS (
  INSERT INTO invoice_counts AS k (invoice_id, times_verified, mismatches, first_verified_at)
  SELECT invoice_id, count(*) FILTER (WHERE counted), count(*) FILTER (WHERE mismatch),
         CASE WHEN bool_or(counted) THEN now() END
    FROM v WHERE counted OR mismatch GROUP BY invoice_id ORDER BY invoice_id
  ON CONFLICT (invoice_id) DO UPDATE SET times_verified = k.times_verified + excluded.times_verified,
     mismatches = k.mismatches + excluded.mismatches,
     first_verified_at = coalesce(k.first_verified_at, excluded.first_verified_at)
  RETURNING k.invoice_id, k.times_verified, k.first_verified_at
{ROLL_VERIFIED}
), logged AS (
  INSERT INTO verifications (invoice_id, issuer_id, channel, outcome, counted, via_qr, client_hash, phone_hash)
  SELECT invoice_id, issuer_id, channel, outcome, counted, via_qr, client_hash, phone_hash FROM v ORDER BY ord
), notice AS (
  INSERT INTO sms_outbox (kind, invoice_id, phone, body)
  SELECT DISTINCT ON (v.invoice_id) 'buyer_notice', v.invoice_id, v.notice_phone, v.notice_text
    FROM v JOIN counted c ON c.invoice_id = v.invoice_id WHERE v.notice_phone IS NOT NULL ORDER BY v.invoice_id, v.ord
  ON CONFLICT (invoice_id) WHERE kind = 'buyer_notice' DO NOTHING RETURNING id, invoice_id
), hooks AS (
  INSERT INTO webhook_events (issuer_id, type, data, dedup_key)
  SELECT DISTINCT ON (e.invoice_id, e.type) e.issuer_id, e.type,
         jsonb_build_object('invoice_id', e.invoice_id, 'invoice_code', i.invoice_code,
                            'invoice_number', i.invoice_number, 'at', now()),
         e.type || ':' || e.invoice_id || e.once_per
    FROM (SELECT v.issuer_id, v.invoice_id, 'invoice.first_verified' AS type, '' AS once_per
            FROM v JOIN moved m ON m.invoice_id = v.invoice_id
           WHERE v.counted AND m.first
          UNION ALL
          SELECT v.issuer_id, v.invoice_id, 'invoice.locked', ':' || (now() AT TIME ZONE 'Asia/Shanghai')::date
            FROM v WHERE v.outcome = 'locked' AND v.invoice_id IS NOT NULL) e
    JOIN invoices i ON i.id = e.invoice_id
   WHERE EXISTS (SELECT 1 FROM webhook_endpoints w
                  WHERE w.issuer_id = e.issuer_id AND w.disabled_at IS NULL AND e.type = ANY (w.events))
   ORDER BY e.invoice_id, e.type
  ON CONFLICT (dedup_key) DO NOTHING
)
SELECT v.ord, c.times_verified - coalesce(sum(v.counted::int) OVER (PARTITION BY v.invoice_id ORDER BY v.ord
         ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING), 0) AS times_verified,
       c.first_verified_at, n.id AS notice_id
  FROM v LEFT JOIN counted c ON c.invoice_id = v.invoice_id LEFT JOIN notice n ON n.invoice_id = v.invoice_id
 ORDER BY v.ord"""  # noqa: S608 - fixed SQL fragments, no input


# Taken inside the transaction that will also store the reply, so nobody ever sees a MessageSid without its
# reply: a second delivery's INSERT waits on the first's uncommitted row, then finds it answered (committed) or
# takes it (rolled back). A row left without a reply by code before issue 12 is taken again too.
CLAIM_INBOUND = """
INSERT INTO sms_inbound (message_sid) VALUES ($1)
ON CONFLICT (message_sid) DO UPDATE SET received_at = now() WHERE sms_inbound.reply IS NULL
RETURNING message_sid"""

INBOUND_REPLY = "SELECT reply FROM sms_inbound WHERE message_sid = $1"

SET_INBOUND_REPLY = "UPDATE sms_inbound SET reply = $2 WHERE message_sid = $1"


async def find_invoices(conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """The invoice rows (`FIND_INVOICES`) by (code, number)."""
    rows = await conn.fetch(FIND_INVOICES, [code for code, _ in keys], [number for _, number in keys])
    return {(row["invoice_code"], row["invoice_number"]): row for row in rows}


@dataclass(frozen=True)
class LogEntry:
    """One row of the verification log (hashes only, never raw addresses or phones), with whether it
    counts as a mismatch and the buyer notice (phone, text) to write if the buyer has none yet."""

    invoice_id: uuid.UUID | None
    issuer_id: uuid.UUID | None
    channel: str
    outcome: str
    counted: bool
    via_qr: bool
    client_hash: str | None
    phone_hash: str | None
    mismatch: bool = False
    notice: tuple[str, str] | None = None


@dataclass(frozen=True)
class Counts:
    """An invoice's counts as they stood after one verification, and the buyer notice written (if any)."""

    times_verified: int | None
    first_verified_at: datetime | None
    notice_id: int | None


async def record(conn: asyncpg.Connection, entries: Sequence[LogEntry]) -> list[Counts]:
    """Log verifications, count them, and write buyer notices: one statement; one `Counts` per entry."""
    columns = list(
        zip(
            *(
                (
                    e.invoice_id,
                    e.issuer_id,
                    e.channel,
                    e.outcome,
                    e.counted,
                    e.via_qr,
                    e.client_hash,
                    e.phone_hash,
                    e.mismatch,
                    *(e.notice or (None, None)),
                )
                for e in entries
            ),
            strict=True,
        )
    )
    rows = await conn.fetch(RECORD, *columns)
    return [Counts(row["times_verified"], row["first_verified_at"], row["notice_id"]) for row in rows]


async def claim_inbound(conn: asyncpg.Connection, message_sid: str) -> bool:
    """True when this MessageSid has no reply yet: the caller answers it and stores the reply (`set_inbound_reply`)
    in the same transaction. Waits while another transaction holds the same MessageSid."""
    return await conn.fetchval(CLAIM_INBOUND, message_sid) is not None


async def inbound_reply(conn: asyncpg.Connection, message_sid: str) -> str | None:
    """The reply given to this MessageSid (None when there is none)."""
    value: Any = await conn.fetchval(INBOUND_REPLY, message_sid)
    return str(value) if value is not None else None


async def set_inbound_reply(conn: asyncpg.Connection, message_sid: str, reply: str) -> None:
    """Remember the reply so a repeated delivery gets the same one."""
    await conn.execute(SET_INBOUND_REPLY, message_sid, reply)
