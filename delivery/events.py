"""Tracking events (`POST /v1/postal/events`) and the issuer's view of a delivery. The rules are
`model.replay`'s; this module loads the orders, replays the batch and writes the result in one transaction.
A delivered order with a phone gets a "delivered" text in the shared SMS outbox (`invoicing.sms_outbox`, at
most one per invoice), sent later by the worker."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from delivery import events_repository as repo
from delivery import model
from invoicing import sms_outbox
from invoicing.errors import NotFound


@dataclass
class Ingested:
    """The answer to a batch of events, and the outbox rows written for the worker."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    sms_ids: list[int] = field(default_factory=list)
    issuer_ids: list[str] = field(default_factory=list)  # of orders whose status moved (their webhook events)

    def as_json(self) -> dict[str, Any]:
        """The API's answer: counts and each rejected event's index and reason."""
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


def _state(row: asyncpg.Record) -> model.OrderState:
    return model.OrderState(row["status"], row["latest_event_at"], row["signed_by"], row["delivered_at"])


async def ingest(conn: asyncpg.Connection, operator_id: str, raw_events: list[Any]) -> Ingested:
    """Validate and apply up to 1000 events of this operator, each judged on its own."""
    result = Ingested()
    valid = _validate(raw_events, datetime.now(UTC), result)
    events = [event for _, event in valid]
    owner = uuid.UUID(operator_id)
    async with conn.transaction():
        rows = await repo.lock_orders(conn, owner, [e.tracking_number for e in events])
        seen = await repo.seen_event_ids(conn, owner, [e.event_id for e in events])
        before = {number: _state(row) for number, row in rows.items()}
        after, decisions = model.replay(before, events, seen)
        _count(result, [index for index, _ in valid], decisions)
        stored = [
            (e, rows[e.tracking_number]["id"], d.outcome == "applied")
            for e, d in zip(events, decisions, strict=True)
            if d.stored
        ]
        await repo.insert_events(conn, owner, stored)
        changed = {n: s for n, s in after.items() if s != before[n]}
        await repo.update_orders(
            conn,
            [
                (rows[n]["id"], s.status, s.latest_event_at, s.signed_by, s.delivered_at, before[n].status)
                for n, s in changed.items()
            ],
        )
        result.sms_ids = await sms_outbox.add(conn, "delivered", _delivered_texts(rows, changed))
    result.issuer_ids = sorted({str(rows[n]["issuer_id"]) for n, s in changed.items() if s.status != before[n].status})
    result.rejected.sort(key=lambda r: r["index"])
    return result


def _count(result: Ingested, indexes: list[int], decisions: list[model.Decision]) -> None:
    for index, decision in zip(indexes, decisions, strict=True):
        if decision.outcome == "duplicate":
            result.duplicates += 1
        elif decision.outcome == "rejected":
            result.rejected.append({"index": index, "reason": decision.reason})
        else:
            result.accepted += 1


def _delivered_texts(
    rows: dict[str, asyncpg.Record], changed: dict[str, model.OrderState]
) -> list[tuple[uuid.UUID | None, str, str]]:
    """The buyer's text for each order this batch delivered, when the invoice has a phone."""
    return [
        (
            rows[n]["invoice_id"],
            rows[n]["phone"],
            delivered_sms(rows[n]["invoice_code"], rows[n]["invoice_number"], s.signed_by),
        )
        for n, s in changed.items()
        if s.status == "delivered" and rows[n]["phone"]
    ]


async def delivery_of(conn: asyncpg.Connection, issuer_id: str, invoice_id: str) -> dict[str, Any]:
    """The delivery order of this issuer's postal invoice with its events; 404 for an electronic invoice,
    an unknown id or another tenant's."""
    try:
        key = uuid.UUID(invoice_id)
    except ValueError:
        raise NotFound(f"no postal delivery for invoice {invoice_id}") from None
    order = await repo.order_of_invoice(conn, key, issuer_id)
    if order is None:
        raise NotFound(f"no postal delivery for invoice {invoice_id} (electronic, or not this issuer's)")
    return {
        "invoice_id": invoice_id,
        **{k: v for k, v in dict(order).items() if k != "id"},
        "order_id": order["id"],
        "events": await repo.events_of(conn, order["id"]),
    }
