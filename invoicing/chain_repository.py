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

from invoicing import formats
from invoicing.model import Invoice
from invoicing.repository import Issuer

# ---------------------------------------------------------------- series and numbering

BUMP_SERIES = """
UPDATE series SET last_number = last_number + $4, last_seq = last_seq + $5
 WHERE issuer_id = $1 AND label = $2 AND year = $3
RETURNING id, invoice_code, last_number, last_seq, last_hash"""

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


@dataclass(frozen=True)
class SeriesHead:
    """A series' counter and chain head as one statement saw them."""

    id: int
    invoice_code: str
    last_number: int
    last_seq: int
    last_hash: str


async def bump_series(conn: asyncpg.Connection, issuer_id: str, label: str, year: int, count: int) -> SeriesHead | None:
    """Take `count` numbers (and chain places) from the series; the row stays locked until commit."""
    row = await conn.fetchrow(BUMP_SERIES, uuid.UUID(issuer_id), label, year, count, count)
    return (
        SeriesHead(row["id"], row["invoice_code"], row["last_number"], row["last_seq"], row["last_hash"])
        if row
        else None
    )


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

# One statement writes every record of an issue (1 or 1000), moves the series heads, queues the records for the
# transparency log (in chain order) and writes the delivery orders of postal invoices: the outbox rows commit
# with the invoices or not at all.
INSERT_RECORDS = """
WITH inv AS (
  INSERT INTO invoices (id, issuer_id, series_id, chain_seq, kind, invoice_code, invoice_number, issue_date,
                        issued_at, status, total_amount, total_tax, total, delivery_method, original_invoice_id,
                        content, record_hash, prev_hash, signature, key_id)
  SELECT id, $2, series_id, chain_seq, kind, code, number, issue_date, issued_at, 'issued', total_amount,
         total_tax, total, delivery, original_id, content::jsonb, rec_hash, prev_hash, signature, $3
    FROM unnest($1::uuid[], $4::bigint[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::date[],
                $10::timestamptz[], $11::numeric[], $12::numeric[], $13::numeric[], $14::text[], $15::uuid[],
                $16::text[], $17::text[], $18::text[], $19::text[])
         AS r(id, series_id, chain_seq, kind, code, number, issue_date, issued_at, total_amount, total_tax, total,
              delivery, original_id, content, rec_hash, prev_hash, signature)
  RETURNING id
), heads AS (
  UPDATE series s SET last_hash = h.last_hash
    FROM unnest($20::bigint[], $21::text[]) AS h(id, last_hash) WHERE s.id = h.id
  RETURNING s.id
), orders AS (
  INSERT INTO delivery_orders (id, invoice_id, issuer_id, province_code, address, phone)
  SELECT gen_random_uuid(), o.invoice_id, $2, o.province_code, o.address::jsonb, o.phone
    FROM unnest($22::uuid[], $23::text[], $24::text[], $25::text[]) AS o(invoice_id, province_code, address, phone)
  RETURNING id
), logged AS (
  INSERT INTO log_queue (record_hash)
  SELECT h FROM unnest($17::text[]) WITH ORDINALITY AS q(h, ord) ORDER BY ord
)
SELECT (SELECT count(*) FROM inv) AS invoices, (SELECT count(*) FROM orders) AS orders"""


# The optimistic single issue: one statement, one round trip, its own transaction. It appends the
# record only if the series head is still the one the record was hashed against (compare-and-set on
# last_seq); otherwise it writes nothing and the caller re-reads the head and seals again.
INSERT_ONE_IF_HEAD = """
WITH s AS (
  UPDATE series SET last_number = last_number + 1, last_seq = last_seq + 1, last_hash = $17
   WHERE id = $4 AND last_seq = $5 - 1  -- every writer moves last_seq, so an unchanged one means an unchanged head
  RETURNING id
), inv AS (
  INSERT INTO invoices (id, issuer_id, series_id, chain_seq, kind, invoice_code, invoice_number, issue_date,
                        issued_at, status, total_amount, total_tax, total, delivery_method, content, record_hash,
                        prev_hash, signature, key_id)
  SELECT $1, $2, s.id, $5, $6, $7, $8, $9, $10, 'issued', $11, $12, $13, $14, $15::text::jsonb, $17, $16, $18, $3
    FROM s
  RETURNING id
), orders AS (
  INSERT INTO delivery_orders (id, invoice_id, issuer_id, province_code, address, phone)
  SELECT gen_random_uuid(), inv.id, $2, $19::text, $20::text::jsonb, $21 FROM inv WHERE $19::text IS NOT NULL
  RETURNING id
), logged AS (
  INSERT INTO log_queue (record_hash) SELECT $17 FROM inv
)
SELECT count(*) FROM inv"""

READ_HEAD = """
SELECT id, invoice_code, last_number, last_seq, last_hash FROM series WHERE issuer_id = $1 AND label = $2 AND year = $3"""


async def read_head(conn: asyncpg.Connection, issuer_id: str, label: str, year: int) -> SeriesHead | None:
    """The series head as committed now (no lock)."""
    row = await conn.fetchrow(READ_HEAD, uuid.UUID(issuer_id), label, year)
    return (
        SeriesHead(row["id"], row["invoice_code"], row["last_number"], row["last_seq"], row["last_hash"])
        if row
        else None
    )


def _order_values(inv: Invoice) -> tuple[Any, Any, Any] | None:
    """(province code, address JSON, phone) of the delivery order a postal invoice writes, else None."""
    if inv.delivery_method != "postal" or inv.kind != "invoice" or inv.buyer.address is None:
        return None
    address = formats.canonical_bytes(formats.content_of(inv)["buyer"]["address"]).decode()
    return inv.buyer.address.province_code, address, inv.buyer.phone


async def insert_one_if_head(conn: asyncpg.Connection, rec: NewRecord) -> bool:
    """Append one record if the series head has not moved; False (nothing written) if it has."""
    inv = rec.invoice
    order = _order_values(inv) or (None, None, None)
    inserted = await conn.fetchval(
        INSERT_ONE_IF_HEAD,
        uuid.UUID(inv.id),
        uuid.UUID(inv.issuer_id),
        inv.key_id,
        rec.series_id,
        rec.chain_seq,
        inv.kind,
        inv.invoice_code,
        inv.invoice_number,
        inv.issue_date,
        inv.issued_at,
        inv.totals.total_amount,
        inv.totals.total_tax,
        inv.totals.total,
        inv.delivery_method,
        rec.content_json,
        inv.prev_hash,
        inv.record_hash,
        inv.signature,
        *order,
    )
    return bool(inserted)


@dataclass(frozen=True)
class NewRecord:
    """A sealed record about to be written: its chain place and its canonical content as JSON text."""

    invoice: Invoice
    series_id: int
    chain_seq: int
    content_json: str


async def insert_records(
    conn: asyncpg.Connection, issuer_id: str, key_id: str, records: list[NewRecord], heads: dict[int, str]
) -> None:
    """Write sealed records, move their series' heads and write the delivery orders, in one statement."""
    cols: list[list[Any]] = [[] for _ in range(17)]
    orders: list[list[Any]] = [[], [], [], []]
    for rec in records:
        inv = rec.invoice
        values = (
            uuid.UUID(inv.id),
            rec.series_id,
            rec.chain_seq,
            inv.kind,
            inv.invoice_code,
            inv.invoice_number,
            inv.issue_date,
            inv.issued_at,
            inv.totals.total_amount,
            inv.totals.total_tax,
            inv.totals.total,
            inv.delivery_method,
            uuid.UUID(inv.original_invoice_id) if inv.original_invoice_id else None,
            rec.content_json,
            inv.record_hash,
            inv.prev_hash,
            inv.signature,
        )
        for col, value in zip(cols, values, strict=True):
            col.append(value)
        order = _order_values(inv)
        if order is not None:
            for col, value in zip(orders, (uuid.UUID(inv.id), *order), strict=True):
                col.append(value)
    await conn.execute(
        INSERT_RECORDS, cols[0], uuid.UUID(issuer_id), key_id, *cols[1:], list(heads), list(heads.values()), *orders
    )


# ---------------------------------------------------------------- state changes

SET_STATUS = "UPDATE invoices SET status = $2 WHERE id = $1"

INSERT_VOID = """
WITH v AS (
  INSERT INTO voids (series_id, chain_seq, invoice_id, content, record_hash, prev_hash, signature, key_id)
  VALUES ($1, $2, $3, $4::text::jsonb, $5, $6, $7, $8)
), s AS (UPDATE series SET last_hash = $5 WHERE id = $1
), logged AS (INSERT INTO log_queue (record_hash) VALUES ($5))
UPDATE invoices SET status = 'voided', voided_at = $9, void_reason = $10 WHERE id = $3"""

HAS_CREDIT_NOTES = "SELECT EXISTS (SELECT 1 FROM invoices WHERE original_invoice_id = $1)"

DELIVERY_STATUS = "SELECT status FROM delivery_orders WHERE invoice_id = $1"

# Compare-and-set: the new status is what `invoicing.orders` decided from the status read in this transaction.
SET_DELIVERY_STATUS = """
UPDATE delivery_orders SET status = $3, updated_at = now() WHERE invoice_id = $1 AND status = $2"""


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


async def insert_void(conn: asyncpg.Connection, void: NewVoid) -> None:
    """Append the void record, move the series head to it and mark the invoice voided, in one statement."""
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
