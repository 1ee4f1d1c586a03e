"""SQL of tracking events and the issuer's view of a delivery. Named constants and small `async def f(conn,
...)` functions; the caller owns the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from delivery.model import EventInput
from invoicing.rollup_repository import ROLL_DELIVERED
from invoicing.webhook_repository import DELIVERY_STATUS_EVENTS

LOCK_ORDERS = """
SELECT d.id, d.invoice_id, d.issuer_id, d.tracking_number, d.status, d.latest_event_at, d.signed_by, d.delivered_at, d.phone,
       i.invoice_code, i.invoice_number
  FROM delivery_orders d JOIN invoices i ON i.id = d.invoice_id
 WHERE d.tracking_number = ANY($1::text[]) AND d.operator_id = $2
 ORDER BY d.id FOR UPDATE OF d"""

SEEN_IDS = "SELECT event_id FROM tracking_events WHERE operator_id = $1 AND event_id = ANY($2::text[])"

INSERT_EVENTS = """
INSERT INTO tracking_events (operator_id, event_id, order_id, status, occurred_at, location, note, signed_by, applied)
SELECT $1, * FROM unnest($2::text[], $3::uuid[], $4::text[], $5::timestamptz[], $6::text[], $7::text[], $8::text[],
                         $9::bool[])
ON CONFLICT (operator_id, event_id) DO NOTHING"""

# The orders' new states, in one statement with what they cause: an order reaching `delivered` or
# `returned_to_sender` is counted in the closed-loop rollup (`prev` is each order as it was: every CTE sees the
# statement's snapshot), and each order whose status moved gives its issuer a `delivery.status_changed` webhook event.
UPDATE_ORDERS = f"""
WITH u AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::timestamptz[], $6::text[])
           AS u(id, status, latest_event_at, signed_by, delivered_at, previous)
), prev AS (
  SELECT d.id, d.status, d.invoice_id FROM delivery_orders d JOIN u ON u.id = d.id
), rolled AS ({ROLL_DELIVERED}
), moved AS (
  UPDATE delivery_orders d SET status = u.status, latest_event_at = u.latest_event_at, signed_by = u.signed_by,
         delivered_at = u.delivered_at, updated_at = now()
    FROM u
   WHERE d.id = u.id
  RETURNING d.invoice_id, d.issuer_id, d.tracking_number, u.status, u.previous, u.latest_event_at AS occurred_at,
            u.signed_by
)
{DELIVERY_STATUS_EVENTS}"""  # noqa: S608 - fixed SQL fragments, no input

ORDER_OF_INVOICE = """
SELECT d.id, d.status, d.tracking_number, d.province_code, d.address, d.created_at, d.manifested_at, d.signed_by,
       d.delivered_at, d.latest_event_at, o.name AS operator_name, m.manifest_number, m.status AS manifest_status
  FROM delivery_orders d JOIN invoices i ON i.id = d.invoice_id
  LEFT JOIN operators o ON o.id = d.operator_id LEFT JOIN manifests m ON m.id = d.manifest_id
 WHERE d.invoice_id = $1 AND i.issuer_id = $2"""

EVENTS_OF = """
SELECT event_id, status, occurred_at, location, note, signed_by, applied, received_at
  FROM tracking_events WHERE order_id = $1 ORDER BY occurred_at, id"""


async def lock_orders(
    conn: asyncpg.Connection, operator_id: uuid.UUID, tracking_numbers: Sequence[str]
) -> dict[str, asyncpg.Record]:
    """This operator's orders with these tracking numbers, locked until commit (in id order: no deadlocks)."""
    rows = await conn.fetch(LOCK_ORDERS, sorted(set(tracking_numbers)), operator_id)
    return {row["tracking_number"]: row for row in rows}


async def seen_event_ids(conn: asyncpg.Connection, operator_id: uuid.UUID, event_ids: Sequence[str]) -> set[str]:
    """Which of these event ids the operator has sent before."""
    return {row["event_id"] for row in await conn.fetch(SEEN_IDS, operator_id, list(event_ids))}


async def insert_events(
    conn: asyncpg.Connection, operator_id: uuid.UUID, events: Sequence[tuple[EventInput, uuid.UUID, bool]]
) -> None:
    """Store events as (event, order id, whether it set the order's status)."""
    if events:
        rows = [
            (e.event_id, order_id, e.status, e.occurred_at, e.location, e.note, e.signed_by, applied)
            for e, order_id, applied in events
        ]
        await conn.execute(INSERT_EVENTS, operator_id, *(list(column) for column in zip(*rows, strict=True)))


async def update_orders(
    conn: asyncpg.Connection,
    changes: Sequence[tuple[uuid.UUID, str, datetime | None, str | None, datetime | None, str]],
) -> None:
    """Write orders' new (id, status, latest event time, signed by, delivered at, status before), with the issuer's
    webhook event of each status change."""
    if changes:
        await conn.execute(UPDATE_ORDERS, *(list(column) for column in zip(*changes, strict=True)))


async def order_of_invoice(conn: asyncpg.Connection, invoice_id: uuid.UUID, issuer_id: str) -> asyncpg.Record | None:
    """The delivery order of this issuer's invoice, with its operator and manifest."""
    return await conn.fetchrow(ORDER_OF_INVOICE, invoice_id, uuid.UUID(issuer_id))


async def events_of(conn: asyncpg.Connection, order_id: uuid.UUID) -> list[dict[str, Any]]:
    """An order's events in time order."""
    return [dict(row) for row in await conn.fetch(EVENTS_OF, order_id)]
