"""Delivery SQL: operators, fulfilment, manifests. Named constants and small `async def f(conn, ...)`
functions; the caller owns the transaction. Tracking events are in `delivery.events_repository`. A status is
never decided here: each comes from `invoicing.orders`, and is written only where the row still has the
status it was decided from."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from invoicing.orders import CLOSE_MANIFEST as CLOSE
from invoicing.orders import MANIFEST
from invoicing.webhook_repository import DELIVERY_STATUS_EVENTS

DEFAULT_BLOCK = 1_000_000  # serials given to a new operator when no range is asked for

# ---------------------------------------------------------------- operators

OPERATOR_CREATE_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('operators|' || $1 || $2, 0))"

RANGES_OF = "SELECT serial_first, serial_last FROM operators WHERE s10_service = $1 AND s10_country = $2"

INSERT_OPERATOR = """
INSERT INTO operators (id, name, provinces, s10_service, s10_country, serial_first, serial_last, last_serial)
VALUES ($1, $2, $3, $4, $5, $6, $7, $6 - 1)"""

OPERATORS = "SELECT id, provinces FROM operators ORDER BY created_at, id"

GET_OPERATOR = "SELECT id, name, provinces, s10_service, s10_country FROM operators WHERE id = $1"

BUMP_SERIAL = """
UPDATE operators SET last_serial = last_serial + $2
 WHERE id = $1 AND last_serial + $2 <= serial_last
RETURNING last_serial, s10_service, s10_country"""


async def serial_ranges(conn: asyncpg.Connection, service: str, country: str) -> list[tuple[int, int]]:
    """The serial ranges already given for this service indicator and country (locks out racing creators)."""
    await conn.execute(OPERATOR_CREATE_LOCK, service, country)
    return [(r["serial_first"], r["serial_last"]) for r in await conn.fetch(RANGES_OF, service, country)]


async def insert_operator(
    conn: asyncpg.Connection,
    operator_id: str,
    name: str,
    provinces: list[str],
    service: str,
    country: str,
    first: int,
    last: int,
) -> None:
    """Write a new operator with its serial range (its counter starts before the first serial)."""
    await conn.execute(INSERT_OPERATOR, uuid.UUID(operator_id), name, provinces, service, country, first, last)


async def operators(conn: asyncpg.Connection) -> list[tuple[str, list[str]]]:
    """(operator_id, provinces) in creation order: what `model.choose_operator` takes."""
    return [(str(r["id"]), list(r["provinces"])) for r in await conn.fetch(OPERATORS)]


async def get_operator(conn: asyncpg.Connection, operator_id: str) -> asyncpg.Record | None:
    """An operator's name, provinces and S10 service and country."""
    return await conn.fetchrow(GET_OPERATOR, uuid.UUID(operator_id))


async def bump_serial(conn: asyncpg.Connection, operator_id: str, count: int) -> asyncpg.Record | None:
    """Take `count` serials; the row stays locked until commit. None: the range is used up."""
    return await conn.fetchrow(BUMP_SERIAL, uuid.UUID(operator_id), count)


# ---------------------------------------------------------------- fulfilment

# Pending orders are locked with SKIP LOCKED: two workers (or a job and the sweep) never wait on each
# other and never take the same order.
LOCK_PENDING_OF = """
SELECT d.id, d.status, d.province_code, i.invoice_code, i.invoice_number
  FROM delivery_orders d JOIN invoices i ON i.id = d.invoice_id
 WHERE d.invoice_id = ANY($1::uuid[]) AND d.status = 'pending'
 ORDER BY d.created_at, d.id LIMIT $2 FOR UPDATE OF d SKIP LOCKED"""

# The sweep only takes orders some operator serves, so unservable ones cannot starve the rest.
LOCK_STRAGGLERS = """
SELECT d.id, d.status, d.province_code, i.invoice_code, i.invoice_number
  FROM delivery_orders d JOIN invoices i ON i.id = d.invoice_id
 WHERE d.status = 'pending' AND d.created_at < now() - make_interval(secs => $1)
   AND d.province_code = ANY (ARRAY(SELECT DISTINCT unnest(provinces) FROM operators))
 ORDER BY d.created_at, d.id LIMIT $2 FOR UPDATE OF d SKIP LOCKED"""

OPEN_MANIFEST = "SELECT id FROM manifests WHERE operator_id = $1 AND status = 'open' FOR SHARE"

INSERT_MANIFEST = """
INSERT INTO manifests (id, seq, operator_id, manifest_number)
SELECT gen_random_uuid(), n, $1, 'M' || to_char(now() AT TIME ZONE 'Asia/Shanghai', 'YYYYMMDD') || lpad(n::text, 8, '0')
  FROM nextval('manifest_numbers') AS n
ON CONFLICT (operator_id) WHERE status = 'open' DO NOTHING"""

# With the issuer's `delivery.status_changed` webhook events (`webhook_repository.DELIVERY_STATUS_EVENTS`).
MANIFEST_ORDERS = f"""
WITH moved AS (
  UPDATE delivery_orders d SET status = u.next, operator_id = u.operator_id, manifest_id = u.manifest_id,
         tracking_number = u.tracking_number, manifested_at = now(), updated_at = now(),
         invoice_code = u.invoice_code, invoice_number = u.invoice_number
    FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
         AS u(id, operator_id, manifest_id, tracking_number, invoice_code, invoice_number, prev, next)
   WHERE d.id = u.id AND d.status = u.prev
  RETURNING d.invoice_id, d.issuer_id, d.tracking_number, u.next AS status, u.prev AS previous, now() AS occurred_at,
            NULL::text AS signed_by
)
{DELIVERY_STATUS_EVENTS}"""  # noqa: S608 - constants


async def lock_pending(
    conn: asyncpg.Connection, invoice_ids: Sequence[str] | None, limit: int, min_age_s: float = 0.0
) -> list[asyncpg.Record]:
    """Pending orders of these invoices, or (None) the sweep's stragglers older than `min_age_s`."""
    if invoice_ids is None:
        return list(await conn.fetch(LOCK_STRAGGLERS, min_age_s, limit))
    return list(await conn.fetch(LOCK_PENDING_OF, [uuid.UUID(i) for i in invoice_ids], limit))


async def open_manifest(conn: asyncpg.Connection, operator_id: str) -> uuid.UUID:
    """The operator's open manifest (share-locked until commit, so a close waits for us), created if none."""
    key = uuid.UUID(operator_id)
    while True:
        found = await conn.fetchval(OPEN_MANIFEST, key)
        if found is not None:
            return found  # type: ignore[no-any-return]
        await conn.execute(INSERT_MANIFEST, key)


async def manifest_orders(
    conn: asyncpg.Connection,
    orders: list[asyncpg.Record],
    operator_id: str,
    manifest_id: uuid.UUID,
    tracking_numbers: list[str],
) -> None:
    """Write the operator, manifest, tracking number and new status (`orders.MANIFEST`) of `orders`
    (lock_pending's rows)."""
    await conn.execute(
        MANIFEST_ORDERS,
        [o["id"] for o in orders],
        [uuid.UUID(operator_id)] * len(orders),
        [manifest_id] * len(orders),
        tracking_numbers,
        [o["invoice_code"] for o in orders],
        [o["invoice_number"] for o in orders],
        [o["status"] for o in orders],
        [MANIFEST(o["status"]) for o in orders],
    )


# ---------------------------------------------------------------- manifests

# Orders cancelled (voided) before dispatch are not posted: they are left out of the items and the count.
MANIFEST_SELECT = """
SELECT m.id, m.seq, m.manifest_number, m.operator_id, o.name AS operator_name, m.status,
       (SELECT count(*) FROM delivery_orders d WHERE d.manifest_id = m.id AND d.status <> 'cancelled') AS item_count,
       m.created_at, m.closed_at
  FROM manifests m JOIN operators o ON o.id = m.operator_id"""

LIST_MANIFESTS = (
    MANIFEST_SELECT
    + """
 WHERE m.operator_id = $1 AND ($2::text IS NULL OR m.status = $2) AND ($3::bigint IS NULL OR m.seq < $3)
 ORDER BY m.seq DESC LIMIT $4"""
)

GET_MANIFEST = (
    MANIFEST_SELECT
    + """
 WHERE m.id = $1 AND m.operator_id = $2"""
)

LOCK_MANIFEST = "SELECT status FROM manifests WHERE id = $1 AND operator_id = $2 FOR UPDATE"

FREEZE_MANIFEST = "UPDATE manifests SET status = 'closed', closed_at = now() WHERE id = $1"

# Every order of the manifest changes as `invoicing.orders.CLOSE_MANIFEST` says: ($2, $3) are its (from, to).
DISPATCH_ORDERS = f"""
WITH moved AS (
  UPDATE delivery_orders d SET status = t.next, updated_at = now()
    FROM unnest($2::text[], $3::text[]) AS t(prev, next)
   WHERE d.manifest_id = $1 AND d.status = t.prev AND t.next <> t.prev
  RETURNING d.invoice_id, d.issuer_id, d.tracking_number, t.next AS status, t.prev AS previous, now() AS occurred_at,
            NULL::text AS signed_by
)
{DELIVERY_STATUS_EVENTS}"""  # noqa: S608 - constants

# Items in tracking-number order, under the names and in the order of manifests.CSV_COLUMNS, every value
# already text (created_at as manifests.rfc3339 writes it), so the CSV export writes records as they come.
MANIFEST_ITEMS = """
SELECT $2::text AS manifest_number, d.tracking_number, d.invoice_code, d.invoice_number,
       d.address->>'recipient' AS recipient, d.phone, d.address->>'line1' AS address_line1,
       d.address->>'city' AS city, d.address->>'province' AS province, d.address->>'postal_code' AS postal_code,
       d.address->>'country' AS country,
       to_char(d.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at
  FROM delivery_orders d
 WHERE d.manifest_id = $1 AND d.status <> 'cancelled'
 ORDER BY d.tracking_number"""


async def lock_manifest(conn: asyncpg.Connection, manifest_id: uuid.UUID, operator_id: str) -> str | None:
    """The manifest's status, locked until commit (None: not this operator's)."""
    status: str | None = await conn.fetchval(LOCK_MANIFEST, manifest_id, uuid.UUID(operator_id))
    return status


async def close_manifest(conn: asyncpg.Connection, manifest_id: uuid.UUID) -> None:
    """Freeze the manifest and move its orders as `invoicing.orders.CLOSE_MANIFEST` says."""
    await conn.execute(FREEZE_MANIFEST, manifest_id)
    await conn.execute(DISPATCH_ORDERS, manifest_id, *CLOSE.columns())


async def list_manifests(
    conn: asyncpg.Connection, operator_id: str, status: str | None, before_seq: int | None, limit: int
) -> list[asyncpg.Record]:
    """Newest first, `limit + 1` rows so the caller knows whether a next page exists."""
    return list(await conn.fetch(LIST_MANIFESTS, uuid.UUID(operator_id), status, before_seq, limit + 1))


async def get_manifest(conn: asyncpg.Connection, operator_id: str, manifest_id: uuid.UUID) -> asyncpg.Record | None:
    """The manifest with its item count (None: not this operator's)."""
    return await conn.fetchrow(GET_MANIFEST, manifest_id, uuid.UUID(operator_id))


def _typed(expr: str, name: str) -> str:
    """A column a buyer or issuer typed, as `manifests.csv_line` writes it: empty as NULL, a cell starting with one
    of `manifests.FORMULA_STARTS` (parameter $3) behind a single quote; COPY quotes it (`FORCE_QUOTE`)."""
    return (
        f"CASE WHEN left(({expr}), 1) = ANY($3::text[]) THEN '''' || ({expr}) ELSE nullif(({expr}), '') END AS {name}"
    )


# The same items for `COPY ... TO STDOUT (FORMAT csv)`: PostgreSQL writes the CSV itself. Empty strings
# become NULL so that they are written bare, as `manifests.csv_line` writes them.
MANIFEST_ITEMS_COPY = f"""
SELECT $2::text, d.tracking_number, d.invoice_code, d.invoice_number, {_typed("d.address->>'recipient'", "recipient")},
       nullif(d.phone, ''), {_typed("d.address->>'line1'", "address_line1")}, {_typed("d.address->>'city'", "city")},
       {_typed("d.address->>'province'", "province")}, {_typed("d.address->>'postal_code'", "postal_code")},
       {_typed("d.address->>'country'", "country")},
       to_char(d.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
  FROM delivery_orders d
 WHERE d.manifest_id = $1 AND d.status <> 'cancelled'
 ORDER BY d.tracking_number"""  # noqa: S608 - the f-string repeats fixed column expressions, no input


# ---------------------------------------------------------------- labels

LABEL_ROW = """
SELECT d.tracking_number, d.invoice_id, d.issuer_id, d.address, d.phone, i.invoice_code, i.invoice_number, s.name AS issuer_name,
       s.address AS issuer_address, s.phone AS issuer_phone, o.name AS operator_name
  FROM delivery_orders d JOIN invoices i ON i.id = d.invoice_id JOIN issuers s ON s.id = d.issuer_id
  JOIN operators o ON o.id = d.operator_id
 WHERE d.tracking_number = $1 AND d.operator_id = $2::uuid"""


async def label_row(conn: asyncpg.Connection, tracking_number: str, operator_id: str) -> asyncpg.Record | None:
    """What an address label prints, for this operator's order with this tracking number."""
    return await conn.fetchrow(LABEL_ROW, tracking_number, operator_id)
