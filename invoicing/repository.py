"""SQL of issuers, API keys and Idempotency-Keys, and of reading invoices back (one, a page, the
figures). Named constants and small `async def f(conn, ...)` functions; the caller owns the transaction.
The chains (series, appending records, voids) are in `invoicing.chain_repository`."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from invoicing import formats, rollup_repository
from invoicing.model import Invoice, Seller

# ---------------------------------------------------------------- issuers and keys

ISSUER_BY_TAX_ID = "SELECT id FROM issuers WHERE tax_id = $1"

INSERT_ISSUER = """
INSERT INTO issuers (id, name, tax_id, region, address, phone) VALUES ($1, $2, $3, $4, $5, $6)"""

SELECT_ISSUER = "SELECT id, name, tax_id, region, address, phone FROM issuers WHERE id = $1"

INSERT_KEY = "INSERT INTO api_keys (kind, owner_id, prefix, key_hash) VALUES ($1, $2, $3, $4)"

FIND_KEY = "SELECT kind, owner_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"

# A key given whole is found by its hash; a shorter one is a prefix of the stored 12 (starts_with: no LIKE
# pattern characters to escape).
REVOKE_KEYS = """
UPDATE api_keys SET revoked_at = now()
 WHERE kind = $1 AND owner_id = $2 AND revoked_at IS NULL
   AND (key_hash = $4 OR (length($3) <= length(prefix) AND starts_with(prefix, $3)))"""


@dataclass(frozen=True)
class Issuer:
    """An issuer: who sells, with the 4-digit region its invoice codes start with."""

    id: str
    name: str
    tax_id: str
    region: str
    address: str
    phone: str | None

    @property
    def seller(self) -> Seller:
        """The issuer as an invoice prints it."""
        return Seller(self.name, self.tax_id, self.address, self.phone)


def key_hash(api_key: str) -> bytes:
    """Keys are 256-bit random, so a plain SHA-256 is a safe stored form (no stretching needed)."""
    return hashlib.sha256(api_key.encode()).digest()


async def insert_issuer(conn: asyncpg.Connection, issuer: Issuer) -> None:
    """Write a new issuer."""
    await conn.execute(
        INSERT_ISSUER, uuid.UUID(issuer.id), issuer.name, issuer.tax_id, issuer.region, issuer.address, issuer.phone
    )


async def issuer_with_tax_id(conn: asyncpg.Connection, tax_id: str) -> str | None:
    """The id of the issuer with this tax ID, if any."""
    found = await conn.fetchval(ISSUER_BY_TAX_ID, tax_id)
    return str(found) if found else None


async def get_issuer(conn: asyncpg.Connection, issuer_id: str) -> Issuer | None:
    """The issuer, or None."""
    row = await conn.fetchrow(SELECT_ISSUER, uuid.UUID(issuer_id))
    return (
        Issuer(str(row["id"]), row["name"], row["tax_id"], row["region"], row["address"], row["phone"]) if row else None
    )


KEY_PREFIX = {"issuer": "ilk_", "operator": "ilo_"}


async def create_key(conn: asyncpg.Connection, kind: str, owner_id: str) -> str:
    """A new API key of `kind` (256 random bits behind a prefix that names the kind) for the owner; only its
    hash is stored, so the key is returned here once."""
    api_key = KEY_PREFIX[kind] + secrets.token_urlsafe(32)
    await conn.execute(INSERT_KEY, kind, uuid.UUID(owner_id), api_key[:12], key_hash(api_key))
    return api_key


async def find_key(conn: asyncpg.Connection, api_key: str) -> tuple[str, str] | None:
    """(kind, owner id) of a valid (not revoked) key, or None."""
    row = await conn.fetchrow(FIND_KEY, key_hash(api_key))
    return (row["kind"], str(row["owner_id"])) if row else None


async def revoke_keys(conn: asyncpg.Connection, kind: str, owner_id: str, key_or_prefix: str) -> int:
    """Revoke an owner's keys of `kind`: the key given whole, or those starting with a prefix of its first 12
    characters; how many were revoked."""
    status = await conn.execute(REVOKE_KEYS, kind, uuid.UUID(owner_id), key_or_prefix, key_hash(key_or_prefix))
    return int(status.split()[-1])


# ---------------------------------------------------------------- Idempotency-Key

# Keys are claimed in one order, so two requests claiming overlapping keys cannot deadlock; a key another open
# transaction holds makes the claim wait for it to end.
CLAIM_IDEMPOTENCY_KEYS = """
INSERT INTO idempotency_keys (issuer_id, key, request_hash, invoice_ids)
SELECT issuer_id, key, request_hash, '{}' FROM unnest($1::uuid[], $2::text[], $3::text[]) AS k(issuer_id, key, request_hash)
 ORDER BY issuer_id, key
ON CONFLICT (issuer_id, key) DO NOTHING RETURNING issuer_id, key"""

GET_IDEMPOTENCY_KEY = "SELECT request_hash, invoice_ids FROM idempotency_keys WHERE issuer_id = $1 AND key = $2"

SET_IDEMPOTENCY_IDS = "UPDATE idempotency_keys SET invoice_ids = $3 WHERE issuer_id = $1 AND key = $2"

KeyClaim = tuple[str, str, str]  # (issuer id, Idempotency-Key, request hash)


async def claim_idempotency_keys(conn: asyncpg.Connection, claims: list[KeyClaim]) -> set[tuple[str, str]]:
    """Insert the keys; the (issuer id, key) pairs that are ours now. Blocks while another open transaction
    holds one of them; a key given twice is ours once."""
    if not claims:
        return set()
    columns = ([uuid.UUID(i) for i, _, _ in claims], [k for _, k, _ in claims], [h for _, _, h in claims])
    return {(str(r["issuer_id"]), r["key"]) for r in await conn.fetch(CLAIM_IDEMPOTENCY_KEYS, *columns)}


async def idempotency_key(conn: asyncpg.Connection, issuer_id: str, key: str) -> tuple[str, list[str]]:
    """(request hash, invoice ids) an earlier request stored under the key."""
    row = await conn.fetchrow(GET_IDEMPOTENCY_KEY, uuid.UUID(issuer_id), key)
    return row["request_hash"], [str(i) for i in row["invoice_ids"]]


async def set_idempotency_ids(conn: asyncpg.Connection, issuer_id: str, key: str, invoice_ids: list[str]) -> None:
    """Store the ids of the invoices the keyed request issued, for its retries."""
    await conn.execute(SET_IDEMPOTENCY_IDS, uuid.UUID(issuer_id), key, [uuid.UUID(i) for i in invoice_ids])


# ---------------------------------------------------------------- reading invoices

INVOICE_SELECT = """
SELECT i.id, i.issuer_id, s.label AS series, i.status, i.content, i.record_hash, i.signature, i.key_id,
       i.original_invoice_id, i.voided_at, i.void_reason, coalesce(k.times_verified, 0) AS times_verified,
       k.first_verified_at, i.series_id, i.chain_seq, i.seq, i.invoice_code, i.invoice_number,
       d.status AS delivery_status, d.tracking_number
  FROM invoices i JOIN series s ON s.id = i.series_id LEFT JOIN delivery_orders d ON d.invoice_id = i.id
  LEFT JOIN invoice_counts k ON k.invoice_id = i.id"""

GET_INVOICE = INVOICE_SELECT + " WHERE i.id = $1 AND i.issuer_id = $2"
GET_INVOICE_BY_ID = INVOICE_SELECT + " WHERE i.id = $1"
GET_INVOICE_BY_IDENTITY = INVOICE_SELECT + " WHERE i.invoice_code = $1 AND i.invoice_number = $2"
GET_INVOICES = INVOICE_SELECT + " WHERE i.id = ANY($1::uuid[]) AND i.issuer_id = $2"
LOCK_INVOICE = "SELECT id FROM invoices WHERE id = $1 AND issuer_id = $2 FOR UPDATE"
CREDIT_NOTES_OF = INVOICE_SELECT + " WHERE i.original_invoice_id = $1 ORDER BY i.seq"


def to_invoice(row: asyncpg.Record) -> Invoice:
    """The model of an invoice row (`INVOICE_SELECT`)."""
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
    """The UUID in `text`, or None."""
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


async def get_invoice_row_by_id(conn: asyncpg.Connection, invoice_id: uuid.UUID) -> asyncpg.Record | None:
    """Any issuer's invoice row (the worker's jobs, which act for the service, not for a tenant)."""
    return await conn.fetchrow(GET_INVOICE_BY_ID, invoice_id)


async def get_invoice_row_by_identity(conn: asyncpg.Connection, code: str, number: str) -> asyncpg.Record | None:
    """Any issuer's record of this invoice code and number (a signed download link names it)."""
    return await conn.fetchrow(GET_INVOICE_BY_IDENTITY, code, number)


async def get_invoices(conn: asyncpg.Connection, issuer_id: str, ids: list[str]) -> list[Invoice]:
    """This issuer's invoices of these ids, in the order asked."""
    rows = await conn.fetch(GET_INVOICES, [uuid.UUID(i) for i in ids], uuid.UUID(issuer_id))
    by_id = {str(r["id"]): to_invoice(r) for r in rows}
    return [by_id[i] for i in ids if i in by_id]


async def credit_notes_of(conn: asyncpg.Connection, invoice_id: str) -> list[Invoice]:
    """The credit notes against an invoice, in issue order."""
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
    """The filters of the invoice list (None: not filtered)."""

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


# ---------------------------------------------------------------- figures


async def stats(conn: asyncpg.Connection, issuer_id: str | None) -> list[dict[str, Any]]:
    """Figures by month of issue date (of one issuer, or all), from the closed-loop rollup, with the pending
    postal orders no operator serves."""
    pending = await rollup_repository.pending_without_operator(conn, issuer_id)
    rows = [dict(r) for r in await rollup_repository.by_month(conn, issuer_id)]
    for row in rows:
        row["pending_without_operator"] = pending.get(row["month"], 0)
    return rows
