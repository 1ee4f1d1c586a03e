"""A postal invoice's delivery order: its states and the changes made to it outside tracking events. Pure.

The order is born in the issuing transaction (it is the outbox row of a postal invoice) and is moved on by
the delivery package; a void cancels it. Every such change is decided here and only applied by SQL, which
writes the decided status on the condition that the row still has the status it was decided from.

Lifecycle (API.md): `pending -> manifested -> dispatched`, then tracking events move it through `accepted,
in_transit, out_for_delivery, delivered` (with `failed_attempt`, `returned_to_sender`); `cancelled` is an
order whose invoice was voided before dispatch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from invoicing.errors import Conflict

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
ORDER_STATUSES: tuple[OrderStatus, ...] = get_args(OrderStatus)
FINAL_STATUSES: frozenset[OrderStatus] = frozenset({"delivered", "returned_to_sender"})
PRE_DISPATCH: frozenset[OrderStatus] = frozenset({"pending", "manifested", "cancelled"})


@dataclass(frozen=True)
class Transition:
    """A change of order status for some starting statuses (`moves`: from -> to); any other status refuses
    it with a 409 that names the change (`what`)."""

    what: str
    moves: Mapping[str, OrderStatus]

    def __call__(self, status: str) -> OrderStatus:
        """The status after the change, or `Conflict` when an order in `status` cannot make it."""
        if status not in self.moves:
            allowed = " or ".join(self.moves)
            raise Conflict(f"only a {allowed} delivery order can be {self.what}, not a {status} one")
        return self.moves[status]

    def columns(self) -> tuple[list[str], list[str]]:
        """(from, to) as two lists, for SQL that applies the change to many rows at once."""
        return list(self.moves), list(self.moves.values())


# A pending order put on an open manifest.
MANIFEST = Transition("put on a manifest", {"pending": "manifested"})
# Closing its manifest dispatches a manifested order; a cancelled one stays cancelled (never posted).
CLOSE_MANIFEST = Transition("dispatched", {"manifested": "dispatched", "cancelled": "cancelled"})
# A void before dispatch cancels the order.
CANCEL = Transition("cancelled", {"pending": "cancelled", "manifested": "cancelled", "cancelled": "cancelled"})


def is_dispatched(status: str | None) -> bool:
    """Whether the paper invoice has been handed to the post (None: no delivery order, an electronic invoice)."""
    return status is not None and status not in PRE_DISPATCH
