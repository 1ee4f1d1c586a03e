"""SQL as named constants and small `async def f(conn, ...)` functions. The caller owns the transaction."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from invoicing import formats
from invoicing.model import Invoice, Seller

# ---------------------------------------------------------------- issuers and keys

INSERT_ISSUER = """
INSERT INTO issuers (id, name, tax_id, region, address, phone) VALUES ($1, $2, $3, $4, $5, $6)"""

SELECT_ISSUER = "SELECT id, name, tax_id, region, address, phone FROM issuers WHERE id = $1"

INSERT_KEY = "INSERT INTO api_keys (kind, owner_id, prefix, key_hash) VALUES ($1, $2, $3, $4)"

FIND_KEY = "SELECT kind, owner_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"

REVOKE_KEYS = """
UPDATE api_keys SET revoked_at = now()
 WHERE kind = $1 AND owner_id = $2 AND prefix LIKE $3 || '%' AND revoked_at IS NULL"""


@dataclass(frozen=True)
class Issuer:
    id: str
    name: str
    tax_id: str
    region: str
    address: str
    phone: str | None

    @property
    def seller(self) -> Seller:
        return Seller(self.name, self.tax_id, self.address, self.phone)


def key_hash(api_key: str) -> bytes:
    """Keys are 256-bit random, so a plain SHA-256 is a safe stored form (no stretching needed)."""
    return hashlib.sha256(api_key.encode()).digest()


async def insert_issuer(conn: asyncpg.Connection, issuer: Issuer) -> None:
    await conn.execute(
        INSERT_ISSUER, uuid.UUID(issuer.id), issuer.name, issuer.tax_id, issuer.region, issuer.address, issuer.phone
    )


async def get_issuer(conn: asyncpg.Connection, issuer_id: str) -> Issuer | None:
    row = await conn.fetchrow(SELECT_ISSUER, uuid.UUID(issuer_id))
    return (
        Issuer(str(row["id"]), row["name"], row["tax_id"], row["region"], row["address"], row["phone"]) if row else None
    )


async def insert_key(conn: asyncpg.Connection, kind: str, owner_id: str, api_key: str) -> None:
    await conn.execute(INSERT_KEY, kind, uuid.UUID(owner_id), api_key[:12], key_hash(api_key))


async def find_key(conn: asyncpg.Connection, api_key: str) -> tuple[str, str] | None:
    row = await conn.fetchrow(FIND_KEY, key_hash(api_key))
    return (row["kind"], str(row["owner_id"])) if row else None


async def revoke_keys(conn: asyncpg.Connection, kind: str, owner_id: str, prefix: str) -> int:
    status = await conn.execute(REVOKE_KEYS, kind, uuid.UUID(owner_id), prefix)
    return int(status.split()[-1])


# ---------------------------------------------------------------- signing keys

UPSERT_SIGNING_KEY = """
INSERT INTO signing_keys (key_id, public_key) VALUES ($1, $2) ON CONFLICT (key_id) DO NOTHING"""

SELECT_SIGNING_KEYS = "SELECT key_id, public_key, created_at FROM signing_keys ORDER BY created_at, key_id"


async def upsert_signing_key(conn: asyncpg.Connection, key_id: str, public_raw: bytes) -> None:
    await conn.execute(UPSERT_SIGNING_KEY, key_id, public_raw)


async def signing_keys(conn: asyncpg.Connection) -> dict[str, bytes]:
    return {r["key_id"]: bytes(r["public_key"]) for r in await conn.fetch(SELECT_SIGNING_KEYS)}


# ---------------------------------------------------------------- series and numbering

BUMP_SERIES = """
UPDATE series SET last_number = last_number + $4, last_seq = last_seq + $5
 WHERE issuer_id = $1 AND label = $2 AND year = $3
RETURNING id, invoice_code, last_number, last_seq, last_hash"""

BUMP_CHAIN = "UPDATE series SET last_seq = last_seq + 1 WHERE id = $1 RETURNING id, invoice_code, last_seq, last_hash"

SERIES_CREATE_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"

SERIES_EXISTS = "SELECT 1 FROM series WHERE issuer_id = $1 AND label = $2 AND year = $3"

NEXT_CODE_SERIAL = """
INSERT INTO code_serials AS c (region, year, last_serial) VALUES ($1, $2, 1)
ON CONFLICT (region, year) DO UPDATE SET last_serial = c.last_serial + 1
RETURNING last_serial"""

PREVIOUS_YEAR_HEAD = "SELECT last_hash FROM series WHERE issuer_id = $1 AND label = $2 AND year = $3"

INSERT_SERIES = """
INSERT INTO series (issuer_id, label, year, invoice_code, last_hash) VALUES ($1, $2, $3, $4, $5)"""


@dataclass(frozen=True)
class SeriesHead:
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


async def ensure_series(conn: asyncpg.Connection, issuer: Issuer, label: str, year: int) -> None:
    """Open the issuer's series for `label` and `year` unless it exists: a new invoice code with the
    region's next serial, chained to the same label's last record of the year before (or zeros)."""
    owner = uuid.UUID(issuer.id)
    await conn.execute(SERIES_CREATE_LOCK, f"series|{issuer.id}|{label}|{year}")
    if await conn.fetchval(SERIES_EXISTS, owner, label, year):
        return
    serial = await conn.fetchval(NEXT_CODE_SERIAL, issuer.region, year)
    code = f"{issuer.region}{year % 100:02d}{serial:06d}"
    head = await conn.fetchval(PREVIOUS_YEAR_HEAD, owner, label, year - 1) or formats.ZERO_HASH
    await conn.execute(INSERT_SERIES, owner, label, year, code, head)


async def bump_chain(conn: asyncpg.Connection, series_id: int) -> SeriesHead:
    """Take one chain place (for a void, which has no number of its own)."""
    row = await conn.fetchrow(BUMP_CHAIN, series_id)
    return SeriesHead(row["id"], row["invoice_code"], 0, row["last_seq"], row["last_hash"])


# ---------------------------------------------------------------- writing records

# One statement writes every record of an issue (1 or 1000), moves the series heads, and writes
# the delivery orders of postal invoices: the outbox rows commit with the invoices or not at all.
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


async def insert_one_if_head(conn: asyncpg.Connection, key_id: str, rec: NewRecord) -> bool:
    """Append one record if the series head has not moved; False (nothing written) if it has."""
    inv = rec.invoice
    order = _order_values(inv) or (None, None, None)
    inserted = await conn.fetchval(
        INSERT_ONE_IF_HEAD,
        uuid.UUID(inv.id),
        uuid.UUID(inv.issuer_id),
        key_id,
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
    invoice: Invoice
    series_id: int
    chain_seq: int
    content_json: str


async def insert_records(
    conn: asyncpg.Connection, issuer_id: str, key_id: str, records: list[NewRecord], heads: dict[int, str]
) -> None:
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


# ---------------------------------------------------------------- reading invoices

INVOICE_SELECT = """
SELECT i.id, i.issuer_id, s.label AS series, i.status, i.content, i.record_hash, i.signature, i.key_id,
       i.original_invoice_id, i.voided_at, i.void_reason, coalesce(k.times_verified, 0) AS times_verified,
       k.first_verified_at, i.series_id, i.chain_seq, i.seq, i.invoice_code, i.invoice_number,
       d.status AS delivery_status, d.tracking_number
  FROM invoices i JOIN series s ON s.id = i.series_id LEFT JOIN delivery_orders d ON d.invoice_id = i.id
  LEFT JOIN invoice_counts k ON k.invoice_id = i.id"""

GET_INVOICE = INVOICE_SELECT + " WHERE i.id = $1 AND i.issuer_id = $2"
GET_INVOICES = INVOICE_SELECT + " WHERE i.id = ANY($1::uuid[]) AND i.issuer_id = $2"
LOCK_INVOICE = "SELECT id FROM invoices WHERE id = $1 AND issuer_id = $2 FOR UPDATE"
CREDIT_NOTES_OF = INVOICE_SELECT + " WHERE i.original_invoice_id = $1 ORDER BY i.seq"


def to_invoice(row: asyncpg.Record) -> Invoice:
    return formats.invoice_from_content(
        row["content"],
        id=str(row["id"]),
        issuer_id=str(row["issuer_id"]),
        series=row["series"],
        status=row["status"],
        record_hash=row["record_hash"],
        signature=row["signature"],
        key_id=row["key_id"],
        original_invoice_id=str(row["original_invoice_id"]) if row["original_invoice_id"] else None,
        delivery_status=row["delivery_status"],
        tracking_number=row["tracking_number"],
        voided_at=row["voided_at"],
        void_reason=row["void_reason"],
    )


def parse_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


async def get_invoice_row(
    conn: asyncpg.Connection, issuer_id: str, invoice_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    """The invoice row of this issuer (None for another tenant's: the caller answers 404)."""
    key = parse_uuid(invoice_id)
    if key is None:
        return None
    if lock and await conn.fetchval(LOCK_INVOICE, key, uuid.UUID(issuer_id)) is None:
        return None
    return await conn.fetchrow(GET_INVOICE, key, uuid.UUID(issuer_id))


async def get_invoices(conn: asyncpg.Connection, issuer_id: str, ids: list[str]) -> list[Invoice]:
    rows = await conn.fetch(GET_INVOICES, [uuid.UUID(i) for i in ids], uuid.UUID(issuer_id))
    by_id = {str(r["id"]): to_invoice(r) for r in rows}
    return [by_id[i] for i in ids if i in by_id]


async def credit_notes_of(conn: asyncpg.Connection, invoice_id: str) -> list[Invoice]:
    return [to_invoice(r) for r in await conn.fetch(CREDIT_NOTES_OF, uuid.UUID(invoice_id))]


LIST_INVOICES = (
    INVOICE_SELECT
    + """
 WHERE i.issuer_id = $1 AND ($2::bigint IS NULL OR i.seq < $2)
   AND ($3::text IS NULL OR i.status = $3) AND ($4::date IS NULL OR i.issue_date >= $4)
   AND ($5::date IS NULL OR i.issue_date <= $5) AND ($6::text IS NULL OR i.invoice_number = $6)
   AND ($7::text IS NULL OR i.invoice_code = $7) AND ($8::text IS NULL OR i.kind = $8)
 ORDER BY i.seq DESC LIMIT $9"""
)


@dataclass(frozen=True)
class ListFilter:
    status: str | None = None
    issued_from: date | None = None
    issued_to: date | None = None
    invoice_number: str | None = None
    invoice_code: str | None = None
    kind: str | None = None


async def list_invoices(
    conn: asyncpg.Connection, issuer_id: str, filt: ListFilter, before_seq: int | None, limit: int
) -> list[asyncpg.Record]:
    """Newest first; `limit + 1` rows are asked for so the caller knows whether a next page exists."""
    return list(
        await conn.fetch(
            LIST_INVOICES,
            uuid.UUID(issuer_id),
            before_seq,
            filt.status,
            filt.issued_from,
            filt.issued_to,
            filt.invoice_number,
            filt.invoice_code,
            filt.kind,
            limit + 1,
        )
    )


# ---------------------------------------------------------------- state changes

SET_STATUS = "UPDATE invoices SET status = $2 WHERE id = $1"

INSERT_VOID = """
WITH v AS (
  INSERT INTO voids (series_id, chain_seq, invoice_id, content, record_hash, prev_hash, signature, key_id)
  VALUES ($1, $2, $3, $4::text::jsonb, $5, $6, $7, $8)
), s AS (UPDATE series SET last_hash = $5 WHERE id = $1)
UPDATE invoices SET status = 'voided', voided_at = $9, void_reason = $10 WHERE id = $3"""

CANCEL_DELIVERY = """
UPDATE delivery_orders SET status = 'cancelled', updated_at = now()
 WHERE invoice_id = $1 AND status IN ('pending', 'manifested')"""

DELIVERY_STATUS = "SELECT status FROM delivery_orders WHERE invoice_id = $1"


async def set_status(conn: asyncpg.Connection, invoice_id: str, status: str) -> None:
    await conn.execute(SET_STATUS, uuid.UUID(invoice_id), status)


# ---------------------------------------------------------------- figures

STATS = """
SELECT to_char(i.issue_date, 'YYYY-MM') AS month,
       count(*) FILTER (WHERE i.kind = 'invoice') AS invoices,
       count(*) FILTER (WHERE i.kind = 'credit_note') AS credit_notes,
       count(*) FILTER (WHERE i.status = 'voided') AS voided,
       coalesce(sum(i.total) FILTER (WHERE i.kind = 'invoice' AND i.status <> 'voided'), 0) AS amount,
       coalesce(sum(i.total) FILTER (WHERE i.kind = 'credit_note' AND i.status <> 'voided'), 0) AS credited,
       count(*) FILTER (WHERE i.kind = 'invoice' AND i.status <> 'voided') AS live,
       count(*) FILTER (WHERE i.kind = 'invoice' AND i.status <> 'voided' AND k.times_verified > 0) AS verified,
       coalesce(sum(k.mismatches), 0) AS mismatches,
       count(*) FILTER (WHERE i.kind = 'invoice' AND i.status <> 'voided' AND i.delivery_method = 'postal') AS postal,
       count(d.id) FILTER (WHERE d.status = 'delivered') AS delivered,
       count(d.id) FILTER (WHERE d.status = 'returned_to_sender') AS returned,
       count(d.id) FILTER (WHERE d.status = 'pending' AND NOT EXISTS (
           SELECT 1 FROM operators o WHERE d.province_code = ANY (o.provinces))) AS pending_without_operator
  FROM invoices i LEFT JOIN delivery_orders d ON d.invoice_id = i.id LEFT JOIN invoice_counts k ON k.invoice_id = i.id
 WHERE ($1::uuid IS NULL OR i.issuer_id = $1)
 GROUP BY 1 ORDER BY 1"""


async def stats(conn: asyncpg.Connection, issuer_id: str | None) -> list[asyncpg.Record]:
    return list(await conn.fetch(STATS, uuid.UUID(issuer_id) if issuer_id else None))
