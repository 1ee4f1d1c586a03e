"""SQL of the invoice lottery (`verification.lottery_services`). Named constants and small `async def f(conn, ...)`
functions; the caller owns the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg

ENSURE_PERIOD = """
INSERT INTO lottery_periods (period, seed, commitment) VALUES ($1, $2, $3) ON CONFLICT (period) DO NOTHING"""

PERIOD = "SELECT * FROM lottery_periods WHERE period = $1"

LOCK_PERIOD = "SELECT * FROM lottery_periods WHERE period = $1 FOR UPDATE"

RECENT_PERIODS = "SELECT * FROM lottery_periods ORDER BY period DESC LIMIT $1"

# Entries of one phone are counted under a transaction lock on the phone, so two at once cannot both be the 10th.
LOCK_PHONE = "SELECT pg_advisory_xact_lock(hashtextextended('lottery-phone|' || $1, 0))"

PHONE_ENTRIES_ON = "SELECT count(*) FROM lottery_entries WHERE phone = $1 AND registered_on = $2"

INVOICE_ID = "SELECT id FROM invoices WHERE invoice_code = $1 AND invoice_number = $2"

ENTERED = "SELECT 1 FROM lottery_entries WHERE invoice_id = $1"

# The next seq of an open period; no row once its entries root is published (registration has closed).
NEXT_SEQ = """
UPDATE lottery_periods SET entries_count = entries_count + 1
 WHERE period = $1 AND entries_root IS NULL AND drawn_at IS NULL
RETURNING entries_count"""

INSERT_ENTRY = """
INSERT INTO lottery_entries (entry_id, period, seq, invoice_id, phone, registered_on, channel)
VALUES ($1, $2, $3, $4, $5, $6, $7)"""

ENTRIES_PAGE = """
SELECT seq, entry_id FROM lottery_entries WHERE period = $1 AND seq > $2 ORDER BY seq LIMIT $3"""

ENTRY_IDS = "SELECT entry_id FROM lottery_entries WHERE period = $1 ORDER BY seq"

SET_ROOT = "UPDATE lottery_periods SET entries_root = $2 WHERE period = $1 AND entries_root IS NULL"

SET_DRAWN = """
UPDATE lottery_periods SET entries_root = $2, beacon = $3, prizes = $4::jsonb, drawn_at = now() WHERE period = $1"""

INSERT_WINNERS = """
INSERT INTO lottery_winners (period, rank, tier, entry_id)
SELECT $1, * FROM unnest($2::int[], $3::int[], $4::text[])"""

WINNERS = """
SELECT w.rank, w.tier, e.seq, e.entry_id, e.phone, e.invoice_id, i.invoice_code, i.invoice_number
  FROM lottery_winners w JOIN lottery_entries e USING (entry_id) JOIN invoices i ON i.id = e.invoice_id
 WHERE w.period = $1 ORDER BY w.rank"""


async def ensure_period(conn: asyncpg.Connection, period: str, seed: bytes, commitment: str) -> None:
    """The period's row with this seed and commitment, unless it has one already."""
    await conn.execute(ENSURE_PERIOD, period, seed, commitment)


async def period(conn: asyncpg.Connection, name: str, *, lock: bool = False) -> asyncpg.Record | None:
    """The period's row (locked for the transaction when `lock`), or None."""
    return await conn.fetchrow(LOCK_PERIOD if lock else PERIOD, name)


async def recent_periods(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """The latest periods first."""
    return list(await conn.fetch(RECENT_PERIODS, limit))


async def lock_phone(conn: asyncpg.Connection, phone: str) -> None:
    """Serialise this phone's registrations until the transaction ends."""
    await conn.execute(LOCK_PHONE, phone)


async def phone_entries_on(conn: asyncpg.Connection, phone: str, day: date) -> int:
    """How many entries this phone registered on this Asia/Shanghai day."""
    return int(await conn.fetchval(PHONE_ENTRIES_ON, phone, day))


async def invoice_id(conn: asyncpg.Connection, code: str, number: str) -> uuid.UUID | None:
    """The id of the invoice with this code and number."""
    value = await conn.fetchval(INVOICE_ID, code, number)
    return value if isinstance(value, uuid.UUID) else None


async def entered(conn: asyncpg.Connection, invoice: uuid.UUID) -> bool:
    """Whether the invoice was ever registered."""
    return await conn.fetchval(ENTERED, invoice) is not None


async def next_seq(conn: asyncpg.Connection, name: str) -> int | None:
    """The period's next entry number, counted; None when the period no longer takes entries."""
    value = await conn.fetchval(NEXT_SEQ, name)
    return int(value) if value is not None else None


async def add_entry(
    conn: asyncpg.Connection, entry: str, name: str, seq: int, invoice: uuid.UUID, phone: str, day: date, channel: str
) -> None:
    """One entry (`next_seq` gave its number in this transaction)."""
    await conn.execute(INSERT_ENTRY, entry, name, seq, invoice, phone, day, channel)


async def entries_page(conn: asyncpg.Connection, name: str, after_seq: int, limit: int) -> list[asyncpg.Record]:
    """Up to `limit` entries (seq, entry_id) after `after_seq`, in seq order."""
    return list(await conn.fetch(ENTRIES_PAGE, name, after_seq, limit))


async def entry_ids(conn: asyncpg.Connection, name: str) -> list[str]:
    """Every entry id of the period, in seq order."""
    return [str(row["entry_id"]) for row in await conn.fetch(ENTRY_IDS, name)]


async def set_root(conn: asyncpg.Connection, name: str, root: bytes) -> None:
    """Publish the closed period's entries root (once)."""
    await conn.execute(SET_ROOT, name, root)


async def set_drawn(
    conn: asyncpg.Connection, name: str, root: bytes, beacon: bytes, prizes: Sequence[dict[str, Any]]
) -> None:
    """Mark the period drawn with what the draw used."""
    await conn.execute(SET_DRAWN, name, root, beacon, list(prizes))


async def add_winners(conn: asyncpg.Connection, name: str, winners: Sequence[tuple[int, int, str]]) -> None:
    """The winners as (rank, tier, entry_id), rank being the draw order from 1."""
    if winners:
        ranks, tiers, ids = (list(column) for column in zip(*winners, strict=True))
        await conn.execute(INSERT_WINNERS, name, ranks, tiers, ids)


async def winners(conn: asyncpg.Connection, name: str) -> list[asyncpg.Record]:
    """The period's winners in draw order, with the entry's phone and invoice (for texts and the masked page)."""
    return list(await conn.fetch(WINNERS, name))
