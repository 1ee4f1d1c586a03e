"""Tracking events and operator choice for delivery orders. Pure: no I/O.

The order's states and the changes outside events are `invoicing.orders` (a void cancels an order there);
tracking numbers are `delivery.s10`. Events move a dispatched order through `accepted, in_transit,
out_for_delivery, delivered` (with `failed_attempt`, `returned_to_sender`), by the rules of `apply_event`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from delivery.s10 import check_tracking_number
from invoicing.model import province_code
from invoicing.orders import FINAL_STATUSES, PRE_DISPATCH, OrderStatus
from invoicing.text import normalised, refusal

EventStatus = Literal["accepted", "in_transit", "out_for_delivery", "delivered", "failed_attempt", "returned_to_sender"]
Outcome = Literal["applied", "recorded", "duplicate", "rejected"]
EVENT_STATUSES: tuple[EventStatus, ...] = get_args(EventStatus)
# Two events at the same instant: the one later in the lifecycle wins, so the result never depends on
# which of them arrived first.
_TIE_RANK: dict[str, int] = {
    s: i
    for i, s in enumerate(
        ("accepted", "in_transit", "out_for_delivery", "failed_attempt", "returned_to_sender", "delivered")
    )
}


# --- tracking events --------------------------------------------------------------------------------

EVENT_FIELDS = frozenset({"event_id", "tracking_number", "status", "occurred_at", "location", "note", "signed_by"})
EVENT_ID_MAX = 100
TEXT_MAX = {"location": 200, "note": 1000, "signed_by": 100}
# The reason the service gives for a well-formed number that is none of the operator's orders.
UNKNOWN_TRACKING = "tracking_number is not one of this operator's delivery orders"
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SKEW = timedelta(minutes=5)  # scanners' clocks drift; more than this ahead is a wrong clock or zone
_RFC3339_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


@dataclass(frozen=True)
class EventInput:
    """A validated tracking event: canonical tracking number, UTC `occurred_at`."""

    event_id: str
    tracking_number: str
    status: EventStatus
    occurred_at: datetime
    location: str
    note: str = ""
    signed_by: str | None = None


@dataclass(frozen=True)
class Decision:
    """What one event does to its order. `applied`: it is the order's newest event and sets the status;
    `recorded`: stored, status unchanged; `duplicate`: nothing happens; `rejected`: not stored."""

    outcome: Outcome
    status: OrderStatus | None  # the order's status after the event (None: no such order)
    latest_event_at: datetime | None  # occurred_at of the event that set the status
    reason: str

    @property
    def stored(self) -> bool:
        """Whether the event is written to the order's history (counted as `accepted` by the API)."""
        return self.outcome in ("applied", "recorded")


def apply_event(
    status: OrderStatus, latest_event_at: datetime | None, event: EventInput, *, duplicate: bool = False
) -> Decision:
    """Decide what `event` does to an order in `status` whose newest applied event occurred at
    `latest_event_at` (None before any). `duplicate`: the event_id was already stored.

    Rules (API.md): a repeated event_id changes nothing; events are refused for an order that is not yet
    dispatched (pending, manifested: the operator closes the manifest first, then may resend the same
    event_id) or cancelled; after `delivered`/`returned_to_sender` events are stored but the status stays;
    an event older than the newest applied one is stored but does not move the status back. Otherwise the
    status follows the event (by time, not by lifecycle order: a newer `accepted` after `in_transit` wins).
    At the same instant the event later in the lifecycle wins (see `_TIE_RANK`), so the result never
    depends on arrival order among events at one time."""
    if duplicate:
        return Decision("duplicate", status, latest_event_at, "event_id was already received")
    if status in PRE_DISPATCH:
        why = "was cancelled" if status == "cancelled" else "has not been dispatched yet (its manifest is open)"
        return Decision("rejected", status, latest_event_at, f"the delivery order of tracking_number {why}")
    if status in FINAL_STATUSES:
        return Decision("recorded", status, latest_event_at, f"stored; the order is already {status}")
    new_key = _event_key(event.occurred_at, event.status)
    if latest_event_at is not None and new_key <= _event_key(latest_event_at, status):
        return Decision("recorded", status, latest_event_at, "stored; a newer event already set the status")
    return Decision("applied", event.status, event.occurred_at, f"the order is now {event.status}")


def _event_key(occurred_at: datetime, status: str) -> tuple[datetime, int]:
    return occurred_at, _TIE_RANK.get(status, -1)


@dataclass(frozen=True)
class OrderState:
    """What events change on an order: its status, its newest applied event's time, and who signed for it
    and when, once delivered."""

    status: OrderStatus
    latest_event_at: datetime | None = None
    signed_by: str | None = None
    delivered_at: datetime | None = None


def replay(
    orders: Mapping[str, OrderState], events: Iterable[EventInput], seen_ids: Iterable[str] = ()
) -> tuple[dict[str, OrderState], list[Decision]]:
    """Apply a batch of `events` in arrival order to the orders they name (`orders` by tracking number); the
    operator's event ids in `seen_ids` were stored before (an event id is one event, whatever its order).
    An event naming none of `orders` is rejected. Returns each order's state after the batch and each
    event's decision, in order."""
    states, seen = dict(orders), set(seen_ids)
    decisions: list[Decision] = []
    for event in events:
        order = states.get(event.tracking_number)
        if order is None:
            decisions.append(Decision("rejected", None, None, UNKNOWN_TRACKING))
            continue
        decision = apply_event(order.status, order.latest_event_at, event, duplicate=event.event_id in seen)
        if decision.stored:
            seen.add(event.event_id)
        if decision.outcome == "applied":
            delivered = event.status == "delivered"
            states[event.tracking_number] = OrderState(
                event.status,
                event.occurred_at,
                event.signed_by if delivered else order.signed_by,
                event.occurred_at if delivered else order.delivered_at,
            )
        decisions.append(decision)
    return states, decisions


def validate_event(raw: object, now: datetime) -> tuple[EventInput | None, str | None]:
    """Check one raw event of `POST /v1/postal/events`; returns the event, or None and a reason naming the
    field. `occurred_at` must be RFC 3339 with an offset, from 2000-01-01 to at most 5 minutes after `now`.
    `note` and `signed_by` are optional (absent or null); `signed_by` only on a `delivered` event."""
    if not isinstance(raw, dict):
        return None, "each event must be a JSON object"
    unknown = sorted(set(raw) - EVENT_FIELDS, key=str)
    if unknown:
        return None, f"{unknown[0]} is not a known field"
    for name in ("event_id", "tracking_number", "status", "occurred_at", "location"):
        if raw.get(name) is None:
            return None, f"{name} is required"
    texts = {name: raw.get(name) for name in ("event_id", "location", "note", "signed_by")}
    for name, value in texts.items():
        problem = _text_problem(name, value)
        if problem:
            return None, problem
    number, problem = check_tracking_number(raw["tracking_number"])
    if number is None:
        return None, problem
    status = raw["status"]
    if status not in EVENT_STATUSES:
        return None, f"status must be one of {', '.join(EVENT_STATUSES)}"
    occurred_at, problem = _parse_occurred_at(raw["occurred_at"], now)
    if occurred_at is None:
        return None, problem
    signed_by = normalised(raw.get("signed_by") or "").strip() or None
    if signed_by and status != "delivered":
        return None, "signed_by is only allowed on a delivered event"
    location, note = normalised(raw["location"]).strip(), normalised(raw.get("note") or "").strip()
    return EventInput(raw["event_id"], str(number), status, occurred_at, location, note, signed_by), None


def _text_problem(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{name} must be a string"
    limit = EVENT_ID_MAX if name == "event_id" else TEXT_MAX[name]
    if len(value) > limit:
        return f"{name} must be at most {limit} characters"
    if name in ("event_id", "location") and not value.strip():
        return f"{name} must not be blank"
    why = refusal(value, multiline=name == "note")
    return f"{name} {why}" if why else None


def _parse_occurred_at(value: object, now: datetime) -> tuple[datetime | None, str | None]:
    if not isinstance(value, str) or not _RFC3339_RE.fullmatch(value):
        return None, "occurred_at must be an RFC 3339 timestamp with a time zone, e.g. 2025-01-31T08:00:00+08:00"
    try:
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):  # no such day, or a year beyond 1..9999 once in UTC
        return None, "occurred_at is not a real date and time"
    if moment < EARLIEST_EVENT:
        return None, "occurred_at is before 2000-01-01"
    if moment > now + FUTURE_SKEW:
        return None, "occurred_at is in the future"
    return moment, None


# --- choosing an operator ---------------------------------------------------------------------------


def choose_operator(province: str, operators: Sequence[tuple[str, Iterable[str]]]) -> str | None:
    """The operator that takes an order to `province` (a code or name, e.g. `44` or `广东省`).

    `operators` are (operator_id, provinces served) in creation order, as the repository gives them
    (`ORDER BY created_at, id`); the earliest-created operator serving the province wins, so the choice
    is stable and a new operator never takes traffic from an existing one. None: nobody serves it."""
    code = province_code(province)
    if code is None:
        return None
    for operator_id, provinces in operators:
        if code in {province_code(p) for p in provinces}:
            return operator_id
    return None


def normalise_provinces(values: Iterable[str]) -> tuple[list[str], list[str]]:
    """Province codes for an operator's coverage (codes or names accepted), sorted and without repeats,
    and the values that name no province."""
    codes: set[str] = set()
    unknown: list[str] = []
    for value in values:
        code = province_code(value)
        if code is None:
            unknown.append(value)
        else:
            codes.add(code)
    return sorted(codes), unknown
