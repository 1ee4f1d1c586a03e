"""Delivery use cases: operators, fulfilment (S10 numbers and manifests), closing a manifest.
Each runs in one `async with conn.transaction()`. Tracking events are in `delivery.events`."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from delivery import model, s10
from delivery import repository as repo
from invoicing import repository as issuing_repository
from invoicing.errors import Conflict, FieldError, NotFound, ValidationFailed
from invoicing.model import PROVINCES
from invoicing.text import refusal

log = logging.getLogger("invoiceloop.delivery")
BATCH = 1000  # orders fulfilled per transaction


@dataclass(frozen=True)
class Operator:
    """A postal operator as created: its provinces and S10 serial range."""

    id: str
    name: str
    provinces: list[str]
    s10_service: str
    s10_country: str
    serial_first: int
    serial_last: int


def _check_operator(name: str, provinces: Sequence[str], service: str, country: str) -> list[str]:
    errors = []
    codes, unknown = model.normalise_provinces(provinces)
    if not name.strip():
        errors.append(FieldError("name", "must not be empty"))
    elif why := refusal(name):
        errors.append(FieldError("name", why))
    if unknown or not codes:
        errors.append(
            FieldError("provinces", f"not provinces (GB/T 2260 codes such as 44): {', '.join(unknown) or 'none'}")
        )
    problem = s10.validate_service_indicator(service)
    if problem:
        errors.append(FieldError("s10_service", problem))
    if len(country) != 2 or not country.isascii() or not country.isupper():
        errors.append(FieldError("s10_country", "must be an ISO 3166-1 alpha-2 code such as CN"))
    if errors:
        raise ValidationFailed(errors=errors)
    return codes


def _free_range(taken: list[tuple[int, int]], first: int | None, last: int | None) -> tuple[int, int]:
    """The asked range, or the next block after the highest one taken; refused when it overlaps one."""
    if first is None:
        first = max((hi for _, hi in taken), default=0) + 1
        last = min(first + repo.DEFAULT_BLOCK - 1, 99_999_999) if last is None else last
    last = 99_999_999 if last is None else last
    if not 0 <= first <= last <= 99_999_999:
        raise ValidationFailed(errors=[FieldError("serial_range", "must lie within 0..99999999, first <= last")])
    if any(first <= hi and lo <= last for lo, hi in taken):
        raise Conflict(f"serials {first}..{last} overlap another operator's range with the same service and country")
    return first, last


async def create_operator(
    conn: asyncpg.Connection,
    *,
    name: str,
    provinces: Sequence[str],
    s10_service: str = "RR",
    s10_country: str = "CN",
    serial_first: int | None = None,
    serial_last: int | None = None,
) -> tuple[Operator, str]:
    """A postal operator, its serial range (never overlapping another's with the same service and country,
    so tracking numbers are unique) and its first API key (returned once)."""
    codes = _check_operator(name, provinces, s10_service, s10_country)
    async with conn.transaction():
        taken = await repo.serial_ranges(conn, s10_service, s10_country)
        first, last = _free_range(taken, serial_first, serial_last)
        op = Operator(str(uuid.uuid4()), name.strip(), codes, s10_service, s10_country, first, last)
        await repo.insert_operator(conn, op.id, op.name, codes, s10_service, s10_country, first, last)
        api_key = await issuing_repository.create_key(conn, "operator", op.id)
    return op, api_key


async def create_demo_operator(conn: asyncpg.Connection) -> dict[str, Any]:
    """The demo operator of `invoiceloop run`: serves every province."""
    op, key = await create_operator(conn, name="示例邮政 Demo Post", provinces=list(PROVINCES))
    return {"operator_id": op.id, "operator_api_key": key}


# ---------------------------------------------------------------- fulfilment


async def fulfil(
    conn: asyncpg.Connection, invoice_ids: Sequence[str] | None = None, *, min_age_s: float = 0.0, limit: int = BATCH
) -> int:
    """Fulfil up to `limit` pending orders in one transaction: those of `invoice_ids`, or (None) the sweep's
    stragglers. Each gets its operator, the next S10 serial of that operator and a place on the operator's
    open manifest. Orders already fulfilled, locked by another worker or without an operator are left.
    Returns how many orders were manifested."""
    async with conn.transaction():
        rows = await repo.lock_pending(conn, invoice_ids, limit, min_age_s)
        if not rows:
            return 0
        ops = await repo.operators(conn)
        by_operator: dict[str, list[Any]] = {}
        for row in rows:
            chosen = model.choose_operator(row["province_code"], ops)
            if chosen is not None:
                by_operator.setdefault(chosen, []).append(row)
        done = 0
        for operator_id in sorted(by_operator):  # one lock order: concurrent workers cannot deadlock
            done += await _manifest_for(conn, operator_id, by_operator[operator_id])
        return done


async def _manifest_for(conn: asyncpg.Connection, operator_id: str, orders: list[asyncpg.Record]) -> int:
    counter = await repo.bump_serial(conn, operator_id, len(orders))
    if counter is None:
        log.error("operator %s has no S10 serials left for %d order(s)", operator_id, len(orders))
        return 0
    first = counter["last_serial"] - len(orders) + 1
    manifest_id = await repo.open_manifest(conn, operator_id)
    service, country = counter["s10_service"], counter["s10_country"]
    numbers = [s10.make_tracking_number(service, first + k, country) for k in range(len(orders))]
    await repo.manifest_orders(conn, orders, operator_id, manifest_id, numbers)
    return len(orders)


async def fulfil_all(
    conn: asyncpg.Connection,
    invoice_ids: Sequence[str] | None = None,
    *,
    min_age_s: float = 0.0,
    max_batches: int = 100,
) -> int:
    """`fulfil` batch after batch until nothing is left (or `max_batches`); returns the total."""
    total = 0
    for _ in range(max_batches):
        done = await fulfil(conn, invoice_ids, min_age_s=min_age_s)
        total += done
        if done < BATCH:
            break
    return total


# ---------------------------------------------------------------- manifests


def manifest_id_of(text: str) -> uuid.UUID:
    """The manifest id in a path parameter; 404 when it is no id at all."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise NotFound(f"no manifest {text}") from None


async def get_manifest(conn: asyncpg.Connection, operator_id: str, manifest_id: str) -> asyncpg.Record:
    """This operator's manifest; 404 for another operator's (no existence oracle)."""
    row = await repo.get_manifest(conn, operator_id, manifest_id_of(manifest_id))
    if row is None:
        raise NotFound(f"no manifest {manifest_id} for this operator")
    return row


async def close_manifest(conn: asyncpg.Connection, operator_id: str, manifest_id: str) -> asyncpg.Record:
    """Freeze the open manifest and dispatch its orders (cancelled ones stay cancelled); the operator's next
    order opens a new manifest. 409 when it is already closed."""
    key = manifest_id_of(manifest_id)
    async with conn.transaction():
        status = await repo.lock_manifest(conn, key, operator_id)
        if status is None:
            raise NotFound(f"no manifest {manifest_id} for this operator")
        if status != "open":
            raise Conflict(f"manifest {manifest_id} is already closed; a closed manifest never changes")
        await repo.close_manifest(conn, key)
        return await get_manifest(conn, operator_id, manifest_id)
