"""Delivery order states, tracking event rules and validation, operator choice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from delivery.model import (
    EVENT_STATUSES,
    UNKNOWN_TRACKING,
    Decision,
    EventInput,
    OrderState,
    apply_event,
    choose_operator,
    normalise_provinces,
    replay,
    validate_event,
)
from invoicing.errors import Conflict
from invoicing.orders import CANCEL, CLOSE_MANIFEST, FINAL_STATUSES, MANIFEST

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
# The tie rule as the docstring states it: at one instant the status later in this list wins.
TIE_ORDER = ["accepted", "in_transit", "out_for_delivery", "failed_attempt", "returned_to_sender", "delivered"]


def ev(event_id: str, status: Any, minutes: int, tracking_number: str = "RR473124829CN") -> EventInput:
    return EventInput(event_id, tracking_number, status, T0 + timedelta(minutes=minutes), "广州")


def replay_one(
    status: Any, latest: datetime | None, events: list[EventInput], seen_ids: set[str] | None = None
) -> tuple[str, datetime | None, list[Decision]]:
    """`replay` of one order's events: its final status, newest applied event time and the decisions."""
    states, decisions = replay({"RR473124829CN": OrderState(status, latest)}, events, seen_ids or set())
    state = states["RR473124829CN"]
    return state.status, state.latest_event_at, decisions


def raw_event(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "event_id": "e-1",
        "tracking_number": "RR473124829CN",
        "status": "delivered",
        "occurred_at": "2025-03-01T16:30:00+08:00",
        "location": "广州天河",
        "note": "left at reception",
        "signed_by": "张三",
    }
    raw.update(changes)
    return {k: v for k, v in raw.items() if v is not ...}


# --- transitions outside events ---


def test_manifest_close_cancel() -> None:
    assert MANIFEST("pending") == "manifested"
    assert CLOSE_MANIFEST("manifested") == "dispatched"
    assert CLOSE_MANIFEST("cancelled") == "cancelled"
    assert CANCEL("pending") == CANCEL("manifested") == "cancelled"
    with pytest.raises(Conflict):
        MANIFEST("manifested")
    with pytest.raises(Conflict):
        CLOSE_MANIFEST("pending")
    with pytest.raises(Conflict, match="in_transit"):
        CANCEL("in_transit")


# --- apply_event ---


def test_first_event_after_dispatch_applies() -> None:
    d = apply_event("dispatched", None, ev("a", "accepted", 0))
    assert (d.outcome, d.status, d.latest_event_at) == ("applied", "accepted", T0)
    assert d.stored


@pytest.mark.parametrize("status", ["pending", "manifested", "cancelled"])
def test_events_before_dispatch_are_rejected(status: Any) -> None:
    d = apply_event(status, None, ev("a", "accepted", 0))
    assert (d.outcome, d.status, d.stored) == ("rejected", status, False)
    assert "tracking_number" in d.reason


def test_duplicate_changes_nothing() -> None:
    d = apply_event("in_transit", T0, ev("a", "delivered", 60), duplicate=True)
    assert (d.outcome, d.status, d.latest_event_at, d.stored) == ("duplicate", "in_transit", T0, False)


def test_older_event_is_recorded_without_moving_back() -> None:
    d = apply_event("out_for_delivery", T0, ev("b", "in_transit", -30))
    assert (d.outcome, d.status, d.latest_event_at) == ("recorded", "out_for_delivery", T0)
    assert d.stored


def test_newer_event_wins_even_against_the_lifecycle() -> None:
    d = apply_event("in_transit", T0, ev("b", "accepted", 5))
    assert (d.outcome, d.status) == ("applied", "accepted")


@pytest.mark.parametrize("final", sorted(FINAL_STATUSES))
def test_final_statuses_keep_later_events_out(final: Any) -> None:
    d = apply_event(final, T0, ev("b", "in_transit", 60))
    assert (d.outcome, d.status, d.latest_event_at) == ("recorded", final, T0)


def test_same_instant_tie_goes_to_the_later_lifecycle_status() -> None:
    assert apply_event("out_for_delivery", T0, ev("b", "delivered", 0)).status == "delivered"
    assert apply_event("delivered", T0, ev("b", "out_for_delivery", 0)).status == "delivered"
    assert apply_event("failed_attempt", T0, ev("b", "out_for_delivery", 0)).outcome == "recorded"


def test_replay_of_a_batch_with_a_resent_event() -> None:
    events = [ev("a", "accepted", 0), ev("b", "in_transit", 60), ev("a", "delivered", 90), ev("c", "delivered", 120)]
    status, latest, decisions = replay_one("dispatched", None, events)
    assert [d.outcome for d in decisions] == ["applied", "applied", "duplicate", "applied"]
    assert (status, latest) == ("delivered", T0 + timedelta(minutes=120))
    _, _, again = replay_one(status, latest, events, seen_ids={"a", "b", "c"})
    assert {d.outcome for d in again} == {"duplicate"}


def test_replay_across_orders_in_arrival_order() -> None:
    a, b = "RR473124829CN", "RR123456785CN"
    events = [
        ev("x", "accepted", 0, b),
        ev("x", "accepted", 0, a),  # the same event id again, for another order: a duplicate
        ev("y", "delivered", 30, a),
        ev("z", "in_transit", 40, "RR000000014CN"),  # no such order of this operator
    ]
    events[2] = EventInput("y", a, "delivered", T0 + timedelta(minutes=30), "广州", signed_by="张三")
    states, decisions = replay({a: OrderState("dispatched"), b: OrderState("dispatched")}, events)
    assert [d.outcome for d in decisions] == ["applied", "duplicate", "applied", "rejected"]
    assert decisions[3].reason == UNKNOWN_TRACKING
    assert states[b] == OrderState("accepted", T0)
    assert states[a] == OrderState("delivered", T0 + timedelta(minutes=30), "张三", T0 + timedelta(minutes=30))


# --- the invariant, under any arrival order ---


def key(e: EventInput) -> tuple[datetime, int]:
    return e.occurred_at, TIE_ORDER.index(e.status)


def expected_status(arrivals: list[EventInput]) -> str:
    """The rules restated over arrival order: call an event a record when it is newer (by time, then the
    tie order) than every event that arrived before it. The first record with a final status fixes the
    result; without one, the result is the status of the newest event. No events: still `dispatched`."""
    best: tuple[datetime, int] | None = None
    for e in arrivals:
        if best is None or key(e) > best:
            best = key(e)
            if e.status in FINAL_STATUSES:
                return e.status
    return max(arrivals, key=key).status if arrivals else "dispatched"


event_lists = st.lists(
    st.tuples(st.sampled_from(EVENT_STATUSES), st.integers(min_value=0, max_value=6)), max_size=8
).map(lambda items: [ev(f"e{i}", s, m) for i, (s, m) in enumerate(items)])  # small time range: many ties


@given(event_lists, st.randoms(use_true_random=False))
def test_final_status_matches_the_stated_invariant(events: list[EventInput], rnd: Any) -> None:
    rnd.shuffle(events)
    status, _, decisions = replay_one("dispatched", None, events)
    assert status == expected_status(events)
    assert all(d.outcome in ("applied", "recorded") for d in decisions)


@given(event_lists, st.randoms(use_true_random=False))
def test_without_finals_the_newest_event_decides_whatever_the_order(events: list[EventInput], rnd: Any) -> None:
    events = [e for e in events if e.status not in FINAL_STATUSES]
    orders = [list(events), sorted(events, key=key, reverse=True)]
    rnd.shuffle(orders[0])
    results = {replay_one("dispatched", None, order)[0] for order in orders}
    assert results == {max(events, key=key).status if events else "dispatched"}


@given(event_lists)
def test_in_time_order_the_first_final_sticks(events: list[EventInput]) -> None:
    chronological = sorted(events, key=key)
    finals = [e.status for e in chronological if e.status in FINAL_STATUSES]
    status = replay_one("dispatched", None, chronological)[0]
    assert status == (finals[0] if finals else chronological[-1].status if events else "dispatched")


@given(event_lists, st.data())
def test_resending_an_event_id_changes_nothing(events: list[EventInput], data: st.DataObject) -> None:
    base_status, base_latest, base = replay_one("dispatched", None, events)
    if not events:
        return
    source = data.draw(st.sampled_from(events))
    resend = ev(source.event_id, data.draw(st.sampled_from(EVENT_STATUSES)), data.draw(st.integers(0, 600)))
    at = data.draw(st.integers(min_value=events.index(source) + 1, max_value=len(events)))
    status, latest, decisions = replay_one("dispatched", None, [*events[:at], resend, *events[at:]])
    assert decisions[at].outcome == "duplicate"
    assert (status, latest) == (base_status, base_latest)
    assert decisions[:at] + decisions[at + 1 :] == base


# --- validate_event ---


def test_a_good_event() -> None:
    event, reason = validate_event(raw_event(tracking_number="rr 473124829 cn", note=None), NOW)
    assert reason is None and event is not None
    assert event.tracking_number == "RR473124829CN"
    assert event.occurred_at == datetime(2025, 3, 1, 8, 30, tzinfo=UTC)
    assert (event.note, event.signed_by, event.location) == ("", "张三", "广州天河")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"tracking_number": "RR473124828CN"}, "tracking_number has a wrong check digit"),
        ({"tracking_number": "RR47312482CN"}, "tracking_number is not an S10 number"),
        ({"tracking_number": "SA473124829CN"}, "tracking_number has a service indicator"),
        ({"status": "lost"}, "status must be one of accepted, in_transit"),
        ({"occurred_at": "2025-03-01T12:05:01Z"}, "occurred_at is in the future"),
        ({"occurred_at": "1999-12-31T23:59:59Z"}, "occurred_at is before 2000-01-01"),
        ({"occurred_at": "2025-03-01T08:00:00"}, "occurred_at must be an RFC 3339 timestamp"),
        ({"occurred_at": "20250301T080000Z"}, "occurred_at must be an RFC 3339 timestamp"),
        ({"occurred_at": "2025-02-30T08:00:00Z"}, "occurred_at is not a real date"),
        ({"occurred_at": 1740816000}, "occurred_at must be an RFC 3339 timestamp"),
        ({"event_id": ...}, "event_id is required"),
        ({"location": None}, "location is required"),
        ({"tracking_number": ...}, "tracking_number is required"),
        ({"event_id": "x" * 101}, "event_id must be at most 100 characters"),
        ({"event_id": "  "}, "event_id must not be blank"),
        ({"event_id": 7}, "event_id must be a string"),
        ({"note": "a\x00b"}, "note contains U+0000"),
        ({"location": "\ud800"}, "location contains U+D800"),
        ({"location": "\u202e广州"}, "location contains U+202E"),
        ({"status": "in_transit"}, "signed_by is only allowed on a delivered event"),
        ({"extra": 1}, "extra is not a known field"),
    ],
)
def test_rejections_name_the_field(changes: dict[str, Any], reason: str) -> None:
    event, got = validate_event(raw_event(**changes), NOW)
    assert event is None and got is not None
    assert got.startswith(reason)


def test_window_edges_and_zone_spellings() -> None:
    assert validate_event(raw_event(occurred_at="2025-03-01T12:05:00Z"), NOW)[0] is not None
    assert validate_event(raw_event(occurred_at="2000-01-01T00:00:00z"), NOW)[0] is not None
    event = validate_event(raw_event(occurred_at="2025-03-01t06:00:00.123456789-05:00"), NOW)[0]
    assert event is not None and event.occurred_at == datetime(2025, 3, 1, 11, 0, 0, 123456, tzinfo=UTC)


def test_not_an_object() -> None:
    assert validate_event(["e-1"], NOW) == (None, "each event must be a JSON object")


# A small alphabet of awkward characters (NUL, a lone surrogate, CJK, timestamp pieces) keeps generation
# fast: a full unicode `st.text()` costs seconds of table building on a fresh checkout.
texts = st.text(alphabet="aZé中 \x00\ud800\t:-.+T0123456789", max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=5,
)
field_names = st.sampled_from(["event_id", "tracking_number", "status", "occurred_at", "location", "note"])


@given(st.dictionaries(field_names, json_values | st.sampled_from(["RR473124829CN", "delivered"])), st.booleans())
def test_validation_never_raises(fuzz: dict[str, Any], merge: bool) -> None:
    raw = {**raw_event(signed_by=None), **fuzz} if merge else fuzz
    event, reason = validate_event(raw, NOW)
    assert (event is None) != (reason is None)


# --- operator choice ---


def test_earliest_created_operator_serving_the_province_wins() -> None:
    operators = [("op-north", ["11", "12"]), ("op-south", ["44", "45"]), ("op-all-south", ["广东省", "46"])]
    assert choose_operator("44", operators) == "op-south"
    assert choose_operator("广东", operators) == "op-south"
    assert choose_operator("海南省", operators) == "op-all-south"
    assert choose_operator("31", operators) is None
    assert choose_operator("Atlantis", operators) is None
    assert choose_operator("44", []) is None


def test_normalise_provinces() -> None:
    assert normalise_provinces(["广东省", "44", "北京", "Atlantis"]) == (["11", "44"], ["Atlantis"])
