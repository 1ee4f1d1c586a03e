"""Delivery orders: UPU S10 tracking numbers, order states, tracking events, operator choice. Pure: no I/O.

Order lifecycle (API.md): `pending -> manifested -> dispatched`, then tracking events move it through
`accepted, in_transit, out_for_delivery, delivered` (with `failed_attempt`, `returned_to_sender`);
`cancelled` is an order whose invoice was voided before dispatch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from invoicing.errors import Conflict
from invoicing.model import province_code

OrderStatus = Literal[
    "pending",
    "manifested",
    "dispatched",
    "accepted",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "failed_attempt",
    "returned_to_sender",
    "cancelled",
]
EventStatus = Literal["accepted", "in_transit", "out_for_delivery", "delivered", "failed_attempt", "returned_to_sender"]
Outcome = Literal["applied", "recorded", "duplicate", "rejected"]

ORDER_STATUSES: tuple[OrderStatus, ...] = get_args(OrderStatus)
EVENT_STATUSES: tuple[EventStatus, ...] = get_args(EventStatus)
FINAL_STATUSES: frozenset[OrderStatus] = frozenset({"delivered", "returned_to_sender"})
PRE_DISPATCH: frozenset[OrderStatus] = frozenset({"pending", "manifested", "cancelled"})
# Two events at the same instant: the one later in the lifecycle wins, so the result never depends on
# which of them arrived first.
_TIE_RANK: dict[str, int] = {
    s: i
    for i, s in enumerate(
        ("accepted", "in_transit", "out_for_delivery", "failed_attempt", "returned_to_sender", "delivered")
    )
}

# --- UPU S10 tracking numbers (FORMATS.md) -------------------------------------------------------------

S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
FORBIDDEN_SERVICE_STARTS = frozenset("JKSTW")
_S10_RE = re.compile(r"([A-Z]{2})([0-9]{8})([0-9])([A-Z]{2})")


@dataclass(frozen=True)
class TrackingNumber:
    service: str  # 2 letters, e.g. RR
    serial: str  # 8 digits, leading zeros kept
    check: int
    country: str  # ISO 3166-1 alpha-2

    def __str__(self) -> str:
        return f"{self.service}{self.serial}{self.check}{self.country}"


def s10_check_digit(serial: str) -> int:
    """The S10 check digit of an 8-digit serial: weights 8 6 4 2 3 5 9 7, `11 - sum mod 11`, 10->0, 11->5."""
    if not re.fullmatch(r"[0-9]{8}", serial):
        raise ValueError(f"an S10 serial is 8 digits, not {serial!r}")
    c = 11 - sum(w * int(d) for w, d in zip(S10_WEIGHTS, serial, strict=True)) % 11
    return {10: 0, 11: 5}.get(c, c)


def validate_service_indicator(service: str) -> str | None:
    """Why `service` cannot be an S10 service indicator, or None when it can (two capital letters,
    not starting J, K, S, T or W, which FORMATS.md keeps out)."""
    if not re.fullmatch(r"[A-Z]{2}", service):
        return "the service indicator must be two capital letters, e.g. RR"
    if service[0] in FORBIDDEN_SERVICE_STARTS:
        return "the service indicator must not start with J, K, S, T or W"
    return None


def make_tracking_number(service: str, serial: int, country: str) -> str:
    """`RR` + 8-digit serial + check digit + country, e.g. `make_tracking_number("RR", 47312482, "CN")`
    -> `RR473124829CN`. Raises ValueError on a bad indicator, serial or country."""
    problem = validate_service_indicator(service)
    if problem:
        raise ValueError(problem)
    if not 0 <= serial <= 99_999_999:
        raise ValueError(f"an S10 serial is 0 to 99999999, not {serial}")
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise ValueError(f"the country must be an ISO 3166-1 alpha-2 code such as CN, not {country!r}")
    digits = f"{serial:08d}"
    return f"{service}{digits}{s10_check_digit(digits)}{country}"


def parse_tracking_number(text: object) -> TrackingNumber | None:
    """The S10 number in `text` (case and spaces ignored), or None when it is not a valid one."""
    number, _ = _parse_s10(text)
    return number


def _parse_s10(text: object) -> tuple[TrackingNumber | None, str | None]:
    """The tracking number, or None and why not (the reason names the field `tracking_number`)."""
    if not isinstance(text, str):
        return None, "tracking_number must be a string"
    # ASCII only, so that e.g. a dotless ı cannot upper-case its way into a valid number
    normalised = re.sub(r"\s+", "", text).upper() if text.isascii() else ""
    match = _S10_RE.fullmatch(normalised)
    if not match:
        return None, "tracking_number is not an S10 number (2 letters, 9 digits, 2 letters, e.g. RR473124829CN)"
    service, serial, check, country = match.groups()
    if validate_service_indicator(service):
        return None, "tracking_number has a service indicator starting with J, K, S, T or W"
    if s10_check_digit(serial) != int(check):
        return None, "tracking_number has a wrong check digit"
    return TrackingNumber(service, serial, int(check), country), None


# --- order transitions outside tracking events --------------------------------------------------------


def manifest_order(status: OrderStatus) -> OrderStatus:
    """A pending order put on an open manifest becomes `manifested`."""
    if status != "pending":
        raise Conflict(f"only a pending delivery order can be put on a manifest, not a {status} one")
    return "manifested"


def close_manifest_order(status: OrderStatus) -> OrderStatus:
    """Closing its manifest dispatches a manifested order; a cancelled one stays cancelled (never posted)."""
    if status == "cancelled":
        return "cancelled"
    if status != "manifested":
        raise Conflict(f"only a manifested delivery order can be dispatched, not a {status} one")
    return "dispatched"


def cancel_order(status: OrderStatus) -> OrderStatus:
    """The order's status once its invoice is voided: `cancelled` before dispatch. After dispatch the paper
    is in the post and cannot be called back, so the status is unchanged (void_refusal stops that anyway)."""
    return "cancelled" if status in PRE_DISPATCH else status


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
    status: OrderStatus  # the order's status after the event
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


def replay(
    status: OrderStatus, latest_event_at: datetime | None, events: Iterable[EventInput], seen_ids: Iterable[str] = ()
) -> tuple[OrderStatus, datetime | None, list[Decision]]:
    """Apply `events` in arrival order (e.g. one order's events in a batch); `seen_ids` were stored before.
    Returns the final status, the newest applied event's time and each event's decision."""
    seen = set(seen_ids)
    decisions: list[Decision] = []
    for event in events:
        decision = apply_event(status, latest_event_at, event, duplicate=event.event_id in seen)
        if decision.stored:
            seen.add(event.event_id)
        status, latest_event_at = decision.status, decision.latest_event_at
        decisions.append(decision)
    return status, latest_event_at, decisions


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
    number, problem = _parse_s10(raw["tracking_number"])
    if number is None:
        return None, problem
    status = raw["status"]
    if status not in EVENT_STATUSES:
        return None, f"status must be one of {', '.join(EVENT_STATUSES)}"
    occurred_at, problem = _parse_occurred_at(raw["occurred_at"], now)
    if occurred_at is None:
        return None, problem
    signed_by = (raw.get("signed_by") or "").strip() or None
    if signed_by and status != "delivered":
        return None, "signed_by is only allowed on a delivered event"
    return EventInput(
        raw["event_id"],
        str(number),
        status,
        occurred_at,
        raw["location"].strip(),
        (raw.get("note") or "").strip(),
        signed_by,
    ), None


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
    # PostgreSQL text cannot hold NUL, and lone surrogates (possible in JSON) cannot be stored as UTF-8
    if "\x00" in value or not _utf8_ok(value):
        return f"{name} contains characters that are not allowed"
    return None


def _utf8_ok(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse_occurred_at(value: object, now: datetime) -> tuple[datetime | None, str | None]:
    if not isinstance(value, str) or not _RFC3339_RE.fullmatch(value):
        return None, "occurred_at must be an RFC 3339 timestamp with a time zone, e.g. 2025-01-31T08:00:00+08:00"
    try:
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
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
