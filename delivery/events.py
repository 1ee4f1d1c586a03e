"""Tracking events (`POST /v1/postal/events`) and the issuer's view of a delivery. The rules are
`model.apply_event`'s; this module loads the orders, applies each event and writes the result in one
transaction. A delivered order with a phone gets a "delivered" text in the shared SMS outbox
(`invoicing.sms_outbox`, at most one per invoice), sent later by the worker."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from delivery import model
from invoicing import sms_outbox
from invoicing.errors import NotFound

LOCK_ORDERS = """
SELECT d.id, d.invoice_id, d.tracking_number, d.status, d.latest_event_at, d.phone, i.invoice_code, i.invoice_number
  FROM delivery_orders d JOIN invoices i ON i.id = d.invoice_id
 WHERE d.tracking_number = ANY($1::text[]) AND d.operator_id = $2
 ORDER BY d.id FOR UPDATE OF d"""

SEEN_IDS = "SELECT event_id FROM tracking_events WHERE operator_id = $1 AND event_id = ANY($2::text[])"

INSERT_EVENTS = """
INSERT INTO tracking_events (operator_id, event_id, order_id, status, occurred_at, location, note, signed_by, applied)
SELECT $1, * FROM unnest($2::text[], $3::uuid[], $4::text[], $5::timestamptz[], $6::text[], $7::text[], $8::text[],
                         $9::bool[])
ON CONFLICT (operator_id, event_id) DO NOTHING"""

UPDATE_ORDERS = """
UPDATE delivery_orders d SET status = u.status, latest_event_at = u.latest_event_at,
       signed_by = coalesce(u.signed_by, d.signed_by), delivered_at = coalesce(u.delivered_at, d.delivered_at),
       updated_at = now()
  FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::timestamptz[])
       AS u(id, status, latest_event_at, signed_by, delivered_at)
 WHERE d.id = u.id"""


@dataclass
class Ingested:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    sms_ids: list[int] = field(default_factory=list)  # outbox rows written, for the worker

    def as_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


def delivered_sms(invoice_code: str, invoice_number: str, signed_by: str | None) -> str:
    """The buyer's text when the paper invoice is delivered."""
    who = f"，签收人 {signed_by}" if signed_by else ""
    return f"【invoiceloop】您的纸质发票（代码 {invoice_code} 号码 {invoice_number}）已送达{who}。"


def _validate(raw_events: list[Any], now: datetime, result: Ingested) -> list[tuple[int, model.EventInput]]:
    valid = []
    for index, raw in enumerate(raw_events):
        event, reason = model.validate_event(raw, now)
        if event is None:
            result.rejected.append({"index": index, "reason": reason})
        else:
            valid.append((index, event))
    return valid


async def ingest(conn: asyncpg.Connection, operator_id: str, raw_events: list[Any]) -> Ingested:
    """Validate and apply up to 1000 events of this operator, each judged on its own."""
    result = Ingested()
    valid = _validate(raw_events, datetime.now(UTC), result)
    async with conn.transaction():
        owner = uuid.UUID(operator_id)
        orders = {
            r["tracking_number"]: dict(r)
            for r in await conn.fetch(LOCK_ORDERS, sorted({e.tracking_number for _, e in valid}), owner)
        }
        seen = {r["event_id"] for r in await conn.fetch(SEEN_IDS, owner, [e.event_id for _, e in valid])}
        stored: list[tuple[model.EventInput, Any, bool]] = []
        before = {t: (o["status"], o["latest_event_at"]) for t, o in orders.items()}
        for index, event in valid:
            order = orders.get(event.tracking_number)
            if order is None:
                result.rejected.append({"index": index, "reason": model.UNKNOWN_TRACKING})
                continue
            decision = model.apply_event(
                order["status"], order["latest_event_at"], event, duplicate=event.event_id in seen
            )
            _count(result, index, decision)
            if decision.stored:
                seen.add(event.event_id)
                stored.append((event, order["id"], decision.outcome == "applied"))
                order["status"], order["latest_event_at"] = decision.status, decision.latest_event_at
                if decision.outcome == "applied" and event.status == "delivered":
                    order["signed_by"], order["delivered_at"] = event.signed_by, event.occurred_at
        await _write(
            conn,
            owner,
            stored,
            [o for t, o in orders.items() if (o["status"], o["latest_event_at"]) != before[t]],
            result,
        )
    result.rejected.sort(key=lambda r: r["index"])
    return result


def _count(result: Ingested, index: int, decision: model.Decision) -> None:
    if decision.outcome == "duplicate":
        result.duplicates += 1
    elif decision.outcome == "rejected":
        result.rejected.append({"index": index, "reason": decision.reason})
    else:
        result.accepted += 1


async def _write(
    conn: asyncpg.Connection,
    owner: uuid.UUID,
    stored: list[tuple[model.EventInput, Any, bool]],
    changed: list[dict[str, Any]],
    result: Ingested,
) -> None:
    if stored:
        cols = list(
            zip(
                *[
                    (e.event_id, oid, e.status, e.occurred_at, e.location, e.note, e.signed_by, applied)
                    for e, oid, applied in stored
                ],
                strict=True,
            )
        )
        await conn.execute(INSERT_EVENTS, owner, *[list(c) for c in cols])
    if changed:
        await conn.execute(
            UPDATE_ORDERS,
            [o["id"] for o in changed],
            [o["status"] for o in changed],
            [o["latest_event_at"] for o in changed],
            [o.get("signed_by") for o in changed],
            [o.get("delivered_at") for o in changed],
        )
    texts = [o for o in changed if o.get("delivered_at") and o["status"] == "delivered" and o["phone"]]
    result.sms_ids = await sms_outbox.add(
        conn,
        "delivered",
        [
            (o["invoice_id"], o["phone"], delivered_sms(o["invoice_code"], o["invoice_number"], o.get("signed_by")))
            for o in texts
        ],
    )


# ---------------------------------------------------------------- the issuer's view

ORDER_OF_INVOICE = """
SELECT d.id, d.status, d.tracking_number, d.province_code, d.address, d.created_at, d.manifested_at, d.signed_by,
       d.delivered_at, d.latest_event_at, o.name AS operator_name, m.manifest_number, m.status AS manifest_status
  FROM delivery_orders d JOIN invoices i ON i.id = d.invoice_id
  LEFT JOIN operators o ON o.id = d.operator_id LEFT JOIN manifests m ON m.id = d.manifest_id
 WHERE d.invoice_id = $1 AND i.issuer_id = $2"""

EVENTS_OF = """
SELECT event_id, status, occurred_at, location, note, signed_by, applied, received_at
  FROM tracking_events WHERE order_id = $1 ORDER BY occurred_at, id"""


async def delivery_of(conn: asyncpg.Connection, issuer_id: str, invoice_id: str) -> dict[str, Any]:
    """The delivery order of this issuer's postal invoice with its events; 404 for an electronic invoice,
    an unknown id or another tenant's."""
    try:
        key = uuid.UUID(invoice_id)
    except ValueError:
        raise NotFound(f"no postal delivery for invoice {invoice_id}") from None
    order = await conn.fetchrow(ORDER_OF_INVOICE, key, uuid.UUID(issuer_id))
    if order is None:
        raise NotFound(f"no postal delivery for invoice {invoice_id} (electronic, or not this issuer's)")
    events = await conn.fetch(EVENTS_OF, order["id"])
    return {
        "invoice_id": invoice_id,
        **{k: v for k, v in dict(order).items() if k != "id"},
        "order_id": order["id"],
        "events": [dict(e) for e in events],
    }
