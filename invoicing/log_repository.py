"""SQL of the transparency log: the queue of records waiting for the log, the tiles, the leaves by record hash,
and the head (the latest signed checkpoint). Named constants and small `async def f(conn, ...)` functions; the
caller owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import asyncpg

from invoicing.tiles import TileKey

# One sequencer at a time, whichever worker runs it; the others skip their turn instead of queuing.
# The same statement plans the sequencer's statements, for the rest of its transaction, for the log as it is now
# (`force_custom_plan`). A prepared statement otherwise keeps a generic plan made once, and one made while the log
# was empty checks what is logged already by hashing every leaf (a sequential scan of `log_leaves`): its cost grew
# with the log, 6 ms a pass at the start of a bench run and 150-235 ms three minutes later (docs/issuing.md). A pass
# plans each of its few statements once for a thousand records.
SEQUENCER_LOCK = """
SELECT pg_try_advisory_xact_lock(hashtextextended('invoiceloop|log-sequencer', 0)) AS locked,
       set_config('plan_cache_mode', 'force_custom_plan', true) AS plans"""

HEAD = "SELECT size, root, checkpoint FROM log_head"

SET_HEAD = """
INSERT INTO log_head (id, size, root, checkpoint, updated_at) VALUES (true, $1, $2, $3, now())
ON CONFLICT (id) DO UPDATE SET size = excluded.size, root = excluded.root, checkpoint = excluded.checkpoint,
       updated_at = now()"""

# The oldest queued records, taken off the queue in the order they were queued (chain order within a series).
TAKE_QUEUED = """
WITH taken AS (
  DELETE FROM log_queue WHERE id IN (SELECT id FROM log_queue ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
  RETURNING id, record_hash
)
SELECT record_hash FROM taken ORDER BY id"""

# One index probe per hash, whatever the planner thinks of the table's size (a `= ANY` over a thousand hashes
# was planned as a scan of the whole table, seconds per batch).
ALREADY_LOGGED = """
SELECT q.h AS record_hash FROM unnest($1::char(64)[]) AS q(h)
 WHERE EXISTS (SELECT 1 FROM log_leaves l WHERE l.record_hash = q.h)"""

INSERT_LEAVES = """
INSERT INTO log_leaves (leaf_index, record_hash)
SELECT $1 + ord - 1, h FROM unnest($2::text[]) WITH ORDINALITY AS l(h, ord)"""

READ_TILES = """
SELECT level, idx, data FROM log_tiles t JOIN unnest($1::int[], $2::bigint[]) AS k(l, i) ON t.level = k.l AND t.idx = k.i"""

# A tile's blob only grows: a narrower one never replaces a wider one.
WRITE_TILES = """
INSERT INTO log_tiles (level, idx, data) SELECT * FROM unnest($1::int[], $2::bigint[], $3::bytea[])
ON CONFLICT (level, idx) DO UPDATE SET data = excluded.data WHERE length(excluded.data) > length(log_tiles.data)"""

LEAF_OF = "SELECT leaf_index FROM log_leaves WHERE record_hash = $1"

LEAVES_OF = """
SELECT l.record_hash, l.leaf_index FROM unnest($1::char(64)[]) AS q(h) JOIN log_leaves l ON l.record_hash = q.h"""

QUEUED = "SELECT count(*) FROM log_queue"

QUEUED_HASHES = "SELECT record_hash FROM log_queue ORDER BY id LIMIT $1"

# Leaves whose record is in neither table: a record deleted after it was logged.
LEAVES_WITHOUT_RECORDS = """
SELECT l.leaf_index, l.record_hash FROM log_leaves l
 WHERE NOT EXISTS (SELECT 1 FROM invoices i WHERE i.record_hash = l.record_hash)
   AND NOT EXISTS (SELECT 1 FROM voids v WHERE v.record_hash = l.record_hash)
 ORDER BY l.leaf_index LIMIT 1000"""

# Records neither in the log nor waiting for it: kept out of the log.
RECORDS_OUTSIDE_LOG = """
SELECT 'record' AS kind, i.id::text AS ref FROM invoices i
 WHERE NOT EXISTS (SELECT 1 FROM log_leaves l WHERE l.record_hash = i.record_hash)
   AND NOT EXISTS (SELECT 1 FROM log_queue q WHERE q.record_hash = i.record_hash)
UNION ALL
SELECT 'void', v.invoice_id::text FROM voids v
 WHERE NOT EXISTS (SELECT 1 FROM log_leaves l WHERE l.record_hash = v.record_hash)
   AND NOT EXISTS (SELECT 1 FROM log_queue q WHERE q.record_hash = v.record_hash)
LIMIT 1000"""

ALL_LEAVES = "SELECT leaf_index, record_hash FROM log_leaves WHERE leaf_index >= $1 ORDER BY leaf_index LIMIT $2"


@dataclass(frozen=True)
class Head:
    """The log's latest checkpoint: its size, root and signed note."""

    size: int
    root: bytes
    checkpoint: str


async def try_sequencer_lock(conn: asyncpg.Connection) -> bool:
    """Whether this transaction may sequence (no other sequencer holds the lock); its statements are planned
    for the log as it is (`SEQUENCER_LOCK`)."""
    return bool(await conn.fetchval(SEQUENCER_LOCK))


async def head(conn: asyncpg.Connection) -> Head | None:
    """The latest checkpoint, or None before the first."""
    row = await conn.fetchrow(HEAD)
    return Head(row["size"], bytes(row["root"]), row["checkpoint"]) if row else None


async def set_head(conn: asyncpg.Connection, size: int, root: bytes, checkpoint: str) -> None:
    """Record a new checkpoint."""
    await conn.execute(SET_HEAD, size, root, checkpoint)


async def take_queued(conn: asyncpg.Connection, limit: int) -> list[str]:
    """Up to `limit` queued record hashes, removed from the queue (back on it if the transaction rolls back)."""
    return [row["record_hash"] for row in await conn.fetch(TAKE_QUEUED, limit)]


async def already_logged(conn: asyncpg.Connection, record_hashes: list[str]) -> set[str]:
    """Which of these record hashes are in the log already."""
    return {row["record_hash"] for row in await conn.fetch(ALREADY_LOGGED, record_hashes)}


async def insert_leaves(conn: asyncpg.Connection, first_index: int, record_hashes: list[str]) -> None:
    """Record the leaf index of each appended record (`first_index`, then on)."""
    await conn.execute(INSERT_LEAVES, first_index, record_hashes)


async def read_tiles(conn: asyncpg.Connection, keys: Iterable[TileKey]) -> dict[tuple[int, int], bytes]:
    """The stored blobs of these tiles by (level, index) (each may be wider than the key asks for)."""
    wanted = {(k.level, k.index) for k in keys}
    if not wanted:
        return {}
    levels, indexes = zip(*wanted, strict=True)
    rows = await conn.fetch(READ_TILES, list(levels), list(indexes))
    return {(row["level"], row["idx"]): bytes(row["data"]) for row in rows}


async def write_tiles(conn: asyncpg.Connection, tiles: Mapping[TileKey, bytes]) -> None:
    """Store tiles, each replacing the narrower blob of its level and index."""
    if tiles:
        keys = list(tiles)
        await conn.execute(WRITE_TILES, [k.level for k in keys], [k.index for k in keys], [tiles[k] for k in keys])


async def leaf_of(conn: asyncpg.Connection, record_hash: str) -> int | None:
    """The record's leaf index, once it is in the log."""
    index: int | None = await conn.fetchval(LEAF_OF, record_hash)
    return index


async def leaves_of(conn: asyncpg.Connection, record_hashes: list[str]) -> dict[str, int]:
    """The leaf indexes of those of these records that are in the log."""
    return {row["record_hash"]: row["leaf_index"] for row in await conn.fetch(LEAVES_OF, record_hashes)}


async def queued(conn: asyncpg.Connection) -> int:
    """How many records wait for the log."""
    count: int = await conn.fetchval(QUEUED)
    return count


async def leaves_from(conn: asyncpg.Connection, start: int, limit: int) -> list[tuple[int, str]]:
    """(leaf index, record hash) of the leaves from `start`, in order, at most `limit`."""
    return [(row["leaf_index"], row["record_hash"]) for row in await conn.fetch(ALL_LEAVES, start, limit)]


async def leaves_without_records(conn: asyncpg.Connection) -> list[tuple[int, str]]:
    """(leaf index, record hash) of up to 1000 leaves whose record is no longer in the database."""
    return [(row["leaf_index"], row["record_hash"]) for row in await conn.fetch(LEAVES_WITHOUT_RECORDS)]


async def records_outside_log(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """(kind, id) of up to 1000 records that are neither in the log nor queued for it."""
    return [(row["kind"], row["ref"]) for row in await conn.fetch(RECORDS_OUTSIDE_LOG)]


async def queued_hashes(conn: asyncpg.Connection, limit: int) -> list[str]:
    """The record hashes waiting for the log, oldest first, at most `limit`."""
    return [row["record_hash"] for row in await conn.fetch(QUEUED_HASHES, limit)]
