"""SQL of the chains: series (the gapless counters and chain heads), appending invoices, credit notes and
voids, and reading a chain back for the audit. Named constants and small `async def f(conn, ...)`
functions; the caller owns the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from invoicing import formats
from invoicing.model import Invoice, money_str
from invoicing.repository import Issuer
from invoicing.rollup_repository import ROLL_ISSUED, ROLL_VOIDED
from invoicing.webhook_repository import DELIVERY_STATUS_EVENTS

# ---------------------------------------------------------------- series and numbering

# The heads of the series an issue writes to, as they are now (READ_HEADS: a guess, which INSERT_RECORDS checks)
# or locked until commit (LOCK_HEADS). Always in id order: every path that numbers (a group of single issues, a
# batch, a credit note, INSERT_RECORDS itself) takes its series rows this way, so none can deadlock another.
READ_HEADS = """
SELECT s.id, s.issuer_id, s.label, s.invoice_code, s.last_number, s.last_seq, s.last_hash
  FROM series s JOIN unnest($1::uuid[], $2::text[]) AS k(issuer_id, label) ON s.issuer_id = k.issuer_id AND s.label = k.label
 WHERE s.year = $3
 ORDER BY s.id"""
LOCK_HEADS = READ_HEADS + "\n   FOR UPDATE OF s"

BUMP_CHAIN = "UPDATE series SET last_seq = last_seq + 1 WHERE id = $1 RETURNING id, invoice_code, last_seq, last_hash"

SERIES_CREATE_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"

SERIES_EXISTS = "SELECT 1 FROM series WHERE issuer_id = $1 AND label = $2 AND year = $3"

# The region's next serial; no row when its 999,999 are used up (never a check violation mid-transaction).
NEXT_CODE_SERIAL = """
INSERT INTO code_serials AS c (region, year, last_serial) VALUES ($1, $2, 1)
ON CONFLICT (region, year) DO UPDATE SET last_serial = c.last_serial + 1 WHERE c.last_serial < 999999
RETURNING last_serial"""

COUNT_SERIES = "SELECT count(*) FROM series WHERE issuer_id = $1 AND year = $2"

PREVIOUS_YEAR_HEAD = "SELECT last_hash FROM series WHERE issuer_id = $1 AND label = $2 AND year = $3"

INSERT_SERIES = """
INSERT INTO series (issuer_id, label, year, invoice_code, last_hash) VALUES ($1, $2, $3, $4, $5)"""


class SeriesHead(msgspec.Struct, frozen=True):
    """A series' counter and chain head as one statement saw them."""

    id: int
    invoice_code: str
    last_number: int
    last_seq: int
    last_hash: str


SeriesKey = tuple[str, str]  # (issuer id, label) within one year


async def lock_heads(conn: asyncpg.Connection, keys: Sequence[SeriesKey], year: int) -> dict[SeriesKey, SeriesHead]:
    """The heads of the open series among `keys` in `year`, locked (in id order) until the transaction ends; a
    series not yet open is absent."""
    return await _heads(conn, LOCK_HEADS, keys, year)


async def read_heads(conn: asyncpg.Connection, keys: Sequence[SeriesKey], year: int) -> dict[SeriesKey, SeriesHead]:
    """The heads of the open series among `keys` in `year` as they are now, unlocked; a series not yet open is
    absent."""
    return await _heads(conn, READ_HEADS, keys, year)


async def _heads(
    conn: asyncpg.Connection, query: str, keys: Sequence[SeriesKey], year: int
) -> dict[SeriesKey, SeriesHead]:
    rows = await conn.fetch(query, [uuid.UUID(i) for i, _ in keys], [label for _, label in keys], year)
    return {
        (str(r["issuer_id"]), r["label"]): SeriesHead(
            r["id"], r["invoice_code"], r["last_number"], r["last_seq"], r["last_hash"]
        )
        for r in rows
    }


async def lock_series_creation(conn: asyncpg.Connection, issuer_id: str, year: int) -> None:
    """Hold, until commit, the right to open the issuer's series of `year` (one opener at a time per issuer)."""
    await conn.execute(SERIES_CREATE_LOCK, f"series|{issuer_id}|{year}")


async def series_exists(conn: asyncpg.Connection, issuer_id: str, label: str, year: int) -> bool:
    """Whether the issuer's series for `label` and `year` is open."""
    return bool(await conn.fetchval(SERIES_EXISTS, uuid.UUID(issuer_id), label, year))


async def count_series(conn: asyncpg.Connection, issuer_id: str, year: int) -> int:
    """How many series the issuer has opened in `year`."""
    count: int = await conn.fetchval(COUNT_SERIES, uuid.UUID(issuer_id), year)
    return count


async def next_code_serial(conn: asyncpg.Connection, region: str, year: int) -> int | None:
    """The region's next invoice-code serial of `year`, or None when all 999,999 are taken."""
    serial: int | None = await conn.fetchval(NEXT_CODE_SERIAL, region, year)
    return serial


async def insert_series(conn: asyncpg.Connection, issuer: Issuer, label: str, year: int, serial: int) -> None:
    """Open the series: its invoice code from the serial, chained to the same label's last record of the year
    before (or zeros)."""
    owner = uuid.UUID(issuer.id)
    code = f"{issuer.region}{year % 100:02d}{serial:06d}"
    head = await conn.fetchval(PREVIOUS_YEAR_HEAD, owner, label, year - 1) or formats.ZERO_HASH
    await conn.execute(INSERT_SERIES, owner, label, year, code, head)


async def bump_chain(conn: asyncpg.Connection, series_id: int) -> SeriesHead:
    """Take one chain place (for a void, which has no number of its own)."""
    row = await conn.fetchrow(BUMP_CHAIN, series_id)
    return SeriesHead(row["id"], row["invoice_code"], 0, row["last_seq"], row["last_hash"])


# ---------------------------------------------------------------- writing records

# One statement writes every record of an issue (1, a group of single issues, or a batch of 1000), moves the
# series heads, queues the records for the transparency log (in chain order), writes the delivery orders of
# postal invoices, the buyer's mails (`mail_outbox`, one per record with a buyer e-mail), the buyer's texts
# (`sms_outbox`, one per electronic record with a phone we may text, `invoicing.buyer_texts`) and the issuer's webhook
# events (`webhook_events`, one per record, only when the issuer has an endpoint that wants the type: an issuer
# without webhooks pays one index probe per record): the outbox rows commit with the invoices or not at all, and
# cost no round trip of their own; and the issuer's figures (`loop_rollups`, `invoicing.rollup_repository`).
#
# The records were sealed against heads the caller read: each series is written only while its head is still that
# one (`locked`: the series rows locked in id order, as LOCK_HEADS takes them, and compared with the heads read).
# Under LOCK_HEADS every head is; a group sealed against heads read without a lock (`numbering.issue_grouped`)
# may find a series moved on by another writer, and then nothing of that series is written: the statement
# answers its head as it is now, for the caller to seal those records again. Idempotency-Keys given with the
# records ($36..$39) are inserted beside the records written, after the series rows: a key that exists already
# fails the whole statement (`idempotency_keys_pkey`), so that nothing is written for a request answered before.
INSERT_RECORDS = f"""
WITH locked AS (
  SELECT s.id, s.invoice_code, s.last_number, s.last_seq, s.last_hash,
         s.last_seq = e.seen_seq AND s.last_hash = e.seen_hash AS same,
         e.last_number AS new_number, e.last_seq AS new_seq, e.last_hash AS new_hash
    FROM series s
    JOIN unnest($20::bigint[], $21::bigint[], $22::bigint[], $23::text[], $40::bigint[], $41::text[])
         AS e(id, last_number, last_seq, last_hash, seen_seq, seen_hash) ON s.id = e.id
   ORDER BY s.id
     FOR UPDATE OF s
), heads AS (
  UPDATE series s SET last_number = l.new_number, last_seq = l.new_seq, last_hash = l.new_hash
    FROM locked l
   WHERE s.id = l.id AND l.same
  RETURNING s.id
), inv AS (
  INSERT INTO invoices (id, issuer_id, series_id, chain_seq, kind, invoice_code, invoice_number, issue_date,
                        issued_at, status, total_amount, total_tax, total, delivery_method, original_invoice_id,
                        content, record_hash, prev_hash, signature, key_id)
  SELECT id, issuer_id, series_id, chain_seq, kind, code, number, issue_date, issued_at, 'issued', total_amount,
         total_tax, total, delivery, original_id, content::jsonb, rec_hash, prev_hash, signature, $3
    FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $4::bigint[], $5::bigint[], $6::text[], $7::text[],
                $8::text[], $9::date[], $10::timestamptz[], $11::text[]::numeric[], $12::text[]::numeric[],
                $13::text[]::numeric[], $14::text[], $15::text[]::uuid[], $16::text[], $17::text[], $18::text[],
                $19::text[])
         AS r(id, issuer_id, series_id, chain_seq, kind, code, number, issue_date, issued_at, total_amount,
              total_tax, total, delivery, original_id, content, rec_hash, prev_hash, signature)
   WHERE r.series_id IN (SELECT id FROM heads)
  RETURNING id, issuer_id, series_id, kind, invoice_code, invoice_number, issue_date, total, delivery_method,
            original_invoice_id
), orders AS (
  INSERT INTO delivery_orders (id, invoice_id, issuer_id, province_code, address, phone)
  SELECT gen_random_uuid(), o.invoice_id, o.issuer_id, o.province_code, o.address::jsonb, o.phone
    FROM unnest($24::text[]::uuid[], $25::text[]::uuid[], $26::text[], $27::text[], $28::text[])
         AS o(invoice_id, issuer_id, province_code, address, phone)
   WHERE o.invoice_id IN (SELECT id FROM inv)
  RETURNING id
), logged AS (
  INSERT INTO log_queue (record_hash)
  SELECT h FROM unnest($17::text[], $4::bigint[]) WITH ORDINALITY AS q(h, series_id, ord)
   WHERE q.series_id IN (SELECT id FROM heads)
   ORDER BY ord
), mail AS (
  INSERT INTO mail_outbox (invoice_id, kind, email)
  SELECT * FROM unnest($29::text[]::uuid[], $30::text[], $31::text[]) AS m(invoice_id, kind, email)
   WHERE m.invoice_id IN (SELECT id FROM inv)
), hooks AS (
  INSERT INTO webhook_events (issuer_id, type, data)
  SELECT inv.issuer_id, t.type, CASE inv.kind
           WHEN 'credit_note' THEN jsonb_build_object('invoice_id', inv.original_invoice_id, 'credit_note',
             jsonb_build_object('id', inv.id, 'invoice_code', inv.invoice_code, 'invoice_number', inv.invoice_number,
                                'issue_date', inv.issue_date, 'total', inv.total::text))
           ELSE jsonb_build_object('invoice_id', inv.id, 'invoice_code', inv.invoice_code,
                                   'invoice_number', inv.invoice_number, 'issue_date', inv.issue_date,
                                   'total', inv.total::text, 'delivery_method', inv.delivery_method) END
    FROM inv CROSS JOIN LATERAL (
         SELECT CASE inv.kind WHEN 'credit_note' THEN 'invoice.credited' ELSE 'invoice.issued' END AS type) t
   WHERE EXISTS (SELECT 1 FROM webhook_endpoints w
                  WHERE w.issuer_id = inv.issuer_id AND w.disabled_at IS NULL AND t.type = ANY (w.events))
), texts AS (
  INSERT INTO sms_outbox (invoice_id, kind, phone, body)
  SELECT * FROM unnest($32::text[]::uuid[], $33::text[], $34::text[], $35::text[]) AS t(invoice_id, kind, phone, body)
   WHERE t.invoice_id IN (SELECT id FROM inv)
), keys AS (
  INSERT INTO idempotency_keys (issuer_id, key, request_hash, invoice_ids)
  SELECT k.issuer_id, k.key, k.request_hash, ARRAY[k.invoice_id]
    FROM unnest($36::text[]::uuid[], $37::text[], $38::text[], $39::text[]::uuid[])
         AS k(issuer_id, key, request_hash, invoice_id)
   WHERE k.invoice_id IN (SELECT id FROM inv)
   ORDER BY k.issuer_id, k.key
), rolled AS (
  {ROLL_ISSUED}
)
SELECT id, invoice_code, last_number, last_seq, last_hash FROM locked WHERE NOT same"""  # noqa: S608 - fixed SQL fragments, no input

# The constraint a key written before (or given twice) fails INSERT_RECORDS on.
IDEMPOTENCY_KEY_TAKEN = "idempotency_keys_pkey"


def _order_values(inv: Invoice) -> tuple[Any, Any, Any] | None:
    """(province code, address JSON, phone) of the delivery order a postal invoice writes, else None."""
    if inv.delivery_method != "postal" or inv.kind != "invoice" or inv.buyer.address is None:
        return None
    address = formats.canonical_bytes(formats.content_of(inv)["buyer"]["address"]).decode()
    return inv.buyer.address.province_code, address, inv.buyer.phone


class NewRecord(msgspec.Struct, frozen=True):
    """A sealed record about to be written: its chain place and its canonical content, as JSON text (what is
    stored) and as made (what the issue's answer states, `schemas.invoice_json`)."""

    invoice: Invoice
    series_id: int
    chain_seq: int
    content_json: str
    content: dict[str, Any]


KeyedRecord = tuple[str, str, str, str]  # (issuer id, Idempotency-Key, request hash, the one record it issues)


async def insert_records(
    conn: asyncpg.Connection,
    key_id: str,
    records: Sequence[NewRecord],
    heads: Sequence[tuple[SeriesHead, SeriesHead]],
    texts: Sequence[tuple[str, str, str, str]] = (),
    keys: Sequence[KeyedRecord] = (),
) -> list[SeriesHead]:
    """Write sealed records (signed with `key_id`), move their series from the heads they were sealed against to
    the heads after them (`heads`: pairs of the two), and write the delivery orders, the buyer's mails, the buyer's
    `texts` (record id, kind, phone, text) and the `keys`, in one statement: for each series still at the head
    sealed against. Answers the heads, as they are now, of the series that were not: none of their records was
    written."""
    cols: list[list[Any]] = [[] for _ in range(18)]
    orders: list[list[Any]] = [[], [], [], [], []]
    mails: list[list[Any]] = [[], [], []]
    for rec in records:
        inv = rec.invoice
        values = (  # ids and amounts as text: PostgreSQL parses them faster than asyncpg encodes the objects
            inv.id,
            inv.issuer_id,
            rec.series_id,
            rec.chain_seq,
            inv.kind,
            inv.invoice_code,
            inv.invoice_number,
            inv.issue_date,
            inv.issued_at,
            money_str(inv.totals.total_amount),
            money_str(inv.totals.total_tax),
            money_str(inv.totals.total),
            inv.delivery_method,
            inv.original_invoice_id,
            rec.content_json,
            inv.record_hash,
            inv.prev_hash,
            inv.signature,
        )
        for col, value in zip(cols, values, strict=True):
            col.append(value)
        if inv.buyer.email:  # the mail's kind is the record's: invoice or credit_note
            for col, value in zip(mails, (inv.id, inv.kind, inv.buyer.email), strict=True):
                col.append(value)
        order = _order_values(inv)
        if order is not None:
            for col, value in zip(orders, (values[0], values[1], *order), strict=True):
                col.append(value)
    moved = [after for _, after in heads]
    rows = await conn.fetch(
        INSERT_RECORDS,
        cols[0],
        cols[1],
        key_id,
        *cols[2:],
        [h.id for h in moved],
        [h.last_number for h in moved],
        [h.last_seq for h in moved],
        [h.last_hash for h in moved],
        *_unless_empty(orders),
        *_unless_empty(mails),
        *_unless_empty(_columns(texts, 4)),
        *_unless_empty(_columns(keys, 4)),
        [seen.last_seq for seen, _ in heads],
        [seen.last_hash for seen, _ in heads],
    )
    return [SeriesHead(r["id"], r["invoice_code"], r["last_number"], r["last_seq"], r["last_hash"]) for r in rows]


def _columns(rows: Sequence[tuple[str, ...]], width: int) -> list[list[str]]:
    """Rows of `width` values as that many columns (asyncpg arrays), empty ones for no rows."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def _unless_empty(columns: Sequence[list[Any]]) -> Sequence[list[Any] | None]:
    """The columns of an optional part of INSERT_RECORDS, or NULLs when it has no rows (most issues have no
    postal order, mail, text or key): `unnest` of NULL arrays gives no rows, as of empty ones, and asyncpg sends a
    NULL without the array encoder's fixed cost (about 16 parameters a statement)."""
    return columns if columns[0] else [None] * len(columns)


# ---------------------------------------------------------------- state changes

SET_STATUS = "UPDATE invoices SET status = $2 WHERE id = $1"

INSERT_VOID = f"""
WITH v AS (
  INSERT INTO voids (series_id, chain_seq, invoice_id, content, record_hash, prev_hash, signature, key_id)
  VALUES ($1, $2, $3, $4::text::jsonb, $5, $6, $7, $8)
), s AS (UPDATE series SET last_hash = $5 WHERE id = $1
), logged AS (INSERT INTO log_queue (record_hash) VALUES ($5)
), mail AS (INSERT INTO mail_outbox (invoice_id, kind, email) SELECT $3, 'void', $11::text WHERE $11::text IS NOT NULL
), hooks AS (
  INSERT INTO webhook_events (issuer_id, type, data)
  SELECT i.issuer_id, 'invoice.voided', jsonb_build_object('invoice_id', i.id, 'invoice_code', i.invoice_code,
           'invoice_number', i.invoice_number, 'voided_at', $9::timestamptz, 'reason', $10::text)
    FROM invoices i
   WHERE i.id = $3 AND EXISTS (SELECT 1 FROM webhook_endpoints w
                               WHERE w.issuer_id = i.issuer_id AND w.disabled_at IS NULL AND 'invoice.voided' = ANY (w.events))
), text AS (INSERT INTO sms_outbox (invoice_id, kind, phone, body) SELECT $3, 'void', $12::text, $13::text
             WHERE $12::text IS NOT NULL
), rolled AS ({ROLL_VOIDED})
UPDATE invoices SET status = 'voided', voided_at = $9, void_reason = $10 WHERE id = $3"""  # noqa: S608 - fixed SQL fragments, no input

HAS_CREDIT_NOTES = "SELECT EXISTS (SELECT 1 FROM invoices WHERE original_invoice_id = $1)"

DELIVERY_STATUS = "SELECT status FROM delivery_orders WHERE invoice_id = $1"

# Compare-and-set: the new status is what `invoicing.orders` decided from the status read in this transaction.
SET_DELIVERY_STATUS = f"""
WITH moved AS (
  UPDATE delivery_orders SET status = $3, updated_at = now() WHERE invoice_id = $1 AND status = $2
  RETURNING invoice_id, issuer_id, tracking_number, status, $2::text AS previous, now() AS occurred_at,
            NULL::text AS signed_by
)
{DELIVERY_STATUS_EVENTS}"""  # noqa: S608 - constants


async def set_status(conn: asyncpg.Connection, invoice_id: str, status: str) -> None:
    """Set an invoice's status (as its chained credit notes decide it)."""
    await conn.execute(SET_STATUS, uuid.UUID(invoice_id), status)


async def has_credit_notes(conn: asyncpg.Connection, invoice_id: uuid.UUID) -> bool:
    """Whether any credit note points at this invoice."""
    return bool(await conn.fetchval(HAS_CREDIT_NOTES, invoice_id))


async def delivery_status(conn: asyncpg.Connection, invoice_id: uuid.UUID) -> str | None:
    """The status of the invoice's delivery order, or None for an electronic invoice."""
    status: str | None = await conn.fetchval(DELIVERY_STATUS, invoice_id)
    return status


async def set_delivery_status(conn: asyncpg.Connection, invoice_id: uuid.UUID, old: str, new: str) -> None:
    """Move the invoice's delivery order from `old` to `new` (nothing when it is no longer `old`)."""
    if new != old:
        await conn.execute(SET_DELIVERY_STATUS, invoice_id, old, new)


@dataclass(frozen=True)
class NewVoid:
    """A void record about to be appended: its chain place, canonical content, hash and signature."""

    series_id: int
    chain_seq: int
    invoice_id: uuid.UUID
    content_json: str
    record_hash: str
    prev_hash: str
    signature: str
    key_id: str
    voided_at: datetime
    reason: str
    buyer_email: str | None = None  # the buyer hears of the void as of the invoice (`mail_outbox`)
    buyer_text: tuple[str, str] | None = None  # (phone, text) and by SMS (`sms_outbox`, `invoicing.buyer_texts`)


async def insert_void(conn: asyncpg.Connection, void: NewVoid) -> None:
    """Append the void record, move the series head to it, mark the invoice voided and write the buyer's void
    mail (when the buyer gave an e-mail) and text (when there is one to send), in one statement."""
    phone, body = void.buyer_text or (None, None)
    await conn.execute(
        INSERT_VOID,
        void.series_id,
        void.chain_seq,
        void.invoice_id,
        void.content_json,
        void.record_hash,
        void.prev_hash,
        void.signature,
        void.key_id,
        void.voided_at,
        void.reason,
        void.buyer_email,
        phone,
        body,
    )


# ---------------------------------------------------------------- reading chains back (audit)

AUDIT_SERIES = """
SELECT s.id, s.issuer_id, s.label, s.year, s.invoice_code, s.last_number, s.last_seq, s.last_hash,
       (SELECT p.last_hash FROM series p WHERE p.issuer_id = s.issuer_id AND p.label = s.label AND p.year = s.year - 1)
         AS previous_year_head
  FROM series s WHERE ($1::uuid IS NULL OR s.issuer_id = $1) ORDER BY s.issuer_id, s.year, s.label"""

# A run of a series' chain, places $2..$3, in chain order.
AUDIT_RECORDS = """
SELECT chain_seq, 'record' AS type, id, id::text AS ref, content, record_hash, prev_hash, signature, key_id,
       kind, invoice_code, invoice_number, issue_date, total_amount, total_tax, total, status
  FROM invoices WHERE series_id = $1 AND chain_seq BETWEEN $2 AND $3
UNION ALL
SELECT chain_seq, 'void', invoice_id, invoice_id::text, content, record_hash, prev_hash, signature, key_id,
       'void', NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM voids WHERE series_id = $1 AND chain_seq BETWEEN $2 AND $3
ORDER BY chain_seq"""

# Records by their record hash (a leaf of the log, or queued for it), each with its series code and the hash
# stored at the chain place before it: what the incremental audit checks.
RECORDS_BY_HASH = """
WITH r AS (
  SELECT series_id, chain_seq, 'record' AS type, id, id::text AS ref, content, record_hash, prev_hash, signature,
         key_id, kind, invoice_code, invoice_number, issue_date, total_amount, total_tax, total, status
    FROM invoices WHERE record_hash = ANY($1::char(64)[])
  UNION ALL
  SELECT series_id, chain_seq, 'void', invoice_id, invoice_id::text, content, record_hash, prev_hash, signature,
         key_id, 'void', NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM voids WHERE record_hash = ANY($1::char(64)[])
)
SELECT r.*, s.invoice_code AS series_code,
       CASE WHEN r.chain_seq = 1 THEN coalesce(
              (SELECT p.last_hash FROM series p WHERE p.issuer_id = s.issuer_id AND p.label = s.label
                  AND p.year = s.year - 1), repeat('0', 64))
            ELSE coalesce((SELECT i.record_hash FROM invoices i WHERE i.series_id = r.series_id AND i.chain_seq = r.chain_seq - 1),
                          (SELECT v.record_hash FROM voids v WHERE v.series_id = r.series_id AND v.chain_seq = r.chain_seq - 1))
       END AS stored_prev
  FROM r JOIN series s ON s.id = r.series_id"""

HASH_AT = """
SELECT record_hash FROM invoices WHERE series_id = $1 AND chain_seq = $2
UNION ALL SELECT record_hash FROM voids WHERE series_id = $1 AND chain_seq = $2"""

# Per series: how many invoice numbers, the least and greatest, and how many distinct (gapless: n, 1, n, n).
NUMBERS = """
SELECT s.id, s.invoice_code, s.last_number, count(i.id) AS n, min(i.invoice_number) AS lo,
       max(i.invoice_number) AS hi, count(DISTINCT i.invoice_number) AS distinct_n
  FROM series s LEFT JOIN invoices i ON i.series_id = s.id
 WHERE ($1::uuid IS NULL OR s.issuer_id = $1) GROUP BY s.id"""

# The chained records that give these invoices their status: their voids and credit notes, in chain order.
CHAINED = """
SELECT v.invoice_id AS of, v.content, v.record_hash, v.signature, v.key_id, true AS void, v.chain_seq AS seq
  FROM voids v WHERE v.invoice_id = ANY($1::uuid[])
UNION ALL
SELECT c.original_invoice_id, c.content, c.record_hash, c.signature, c.key_id, false, c.seq
  FROM invoices c WHERE c.original_invoice_id = ANY($1::uuid[])
 ORDER BY seq"""


async def series_to_audit(conn: asyncpg.Connection, issuer_id: str | None) -> list[asyncpg.Record]:
    """Every series (of one issuer, or all), with the head of the same label's series the year before."""
    return list(await conn.fetch(AUDIT_SERIES, uuid.UUID(issuer_id) if issuer_id else None))


async def chain_records(conn: asyncpg.Connection, series_id: int, first: int, last: int) -> list[asyncpg.Record]:
    """A series' records (invoices, credit notes and voids) at chain places first..last, in chain order."""
    return list(await conn.fetch(AUDIT_RECORDS, series_id, first, last))


async def hash_at(conn: asyncpg.Connection, series_id: int, chain_seq: int) -> str | None:
    """The record hash stored at a chain place (None: no record there)."""
    found: str | None = await conn.fetchval(HASH_AT, series_id, chain_seq)
    return found


async def number_summaries(conn: asyncpg.Connection, issuer_id: str | None) -> list[asyncpg.Record]:
    """Per series (of one issuer, or all): its counter and what the invoice numbers in it are."""
    return list(await conn.fetch(NUMBERS, uuid.UUID(issuer_id) if issuer_id else None))


async def chained_records(conn: asyncpg.Connection, invoice_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    """The voids and credit notes of these invoices (`of` names the invoice; `void` tells which kind)."""
    return list(await conn.fetch(CHAINED, list(invoice_ids))) if invoice_ids else []


async def records_by_hash(conn: asyncpg.Connection, record_hashes: Sequence[str]) -> list[asyncpg.Record]:
    """The records with these record hashes, each with its series code and the hash stored before it."""
    return list(await conn.fetch(RECORDS_BY_HASH, list(record_hashes))) if record_hashes else []
