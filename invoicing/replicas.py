"""Reads that may lag go to a read replica (PostgreSQL streaming replication, DATABASE_REPLICA_URL) when
there is one and it answers; otherwise, and for anything it cannot answer, to the primary.

Three rules keep the replica invisible to users (docs/scale.md):
- a lookup that misses on the replica is asked again of the primary (the caller decides what a miss is), so an
  invoice verifies the moment it is issued;
- a replica that fails (refuses connections, is shut down, times out) is left alone for `retry_after_s`, and the
  read is done again on the primary: the service carries on without it;
- a read that must see everything committed so far (a manifest export) uses the replica only when it has replayed
  the primary's WAL up to the moment of the request (`caught_up_pool`).
Nothing here writes: writers take the primary's pool directly."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from prometheus_client import Counter

log = logging.getLogger(__name__)

T = TypeVar("T")

# What says "this replica cannot serve now" (not "this query is wrong"): the network, a server shutting down or
# starting, a connection lost, a query cancelled because replay needed its rows (conflict with recovery).
REPLICA_FAILURES: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.SerializationError,
)

READS = Counter("invoiceloop_reads_total", "Reads that may lag, by where they were served", ["served_by"])

REPLAYED_UP_TO = "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn"
# The insert position, not the write position (`pg_current_wal_lsn`): with `synchronous_commit = off` a commit is
# visible before its WAL is written, so a standby past the write position can still lack it (seen in a test).
PRIMARY_LSN = "SELECT pg_current_wal_insert_lsn()::text"


class Reads:
    """The primary's pool and, optionally, a replica's: `run` a read on the replica with fallback to the primary."""

    def __init__(
        self,
        primary: asyncpg.Pool,
        replica: asyncpg.Pool | None = None,
        *,
        retry_after_s: float = 5.0,
        acquire_timeout_s: float = 1.0,
        catch_up_s: float = 0.5,
    ) -> None:
        self.primary, self.replica = primary, replica
        self.retry_after_s, self.acquire_timeout_s, self.catch_up_s = retry_after_s, acquire_timeout_s, catch_up_s
        self._down_until = 0.0

    @property
    def replica_usable(self) -> bool:
        """Whether there is a replica and it has not failed within the last `retry_after_s`."""
        return self.replica is not None and time.monotonic() >= self._down_until

    async def run(self, read: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`read` on a replica connection; on the primary when there is no usable replica or it fails."""
        if self.replica is not None and self.replica_usable:
            try:
                async with self.replica.acquire(timeout=self.acquire_timeout_s) as conn:
                    result = await read(conn)
                READS.labels("replica").inc()
                return result
            except REPLICA_FAILURES as exc:
                self._failed(exc)
        return await self.on_primary(read)

    async def found(self, read: Callable[[asyncpg.Connection], Awaitable[T | None]]) -> T | None:
        """`read` on a replica, asked again of the primary when the replica has nothing (None): what was written a
        moment ago (a record just sequenced, the log's first checkpoint) is found at once."""
        result = await self.run(read)
        if result is None and self.replica is not None:
            result = await self.on_primary(read)
        return result

    async def on_primary(self, read: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`read` on the primary: what missed on the replica, or what must not lag."""
        async with self.primary.acquire() as conn:
            result = await read(conn)
        READS.labels("primary").inc()
        return result

    async def caught_up_pool(self) -> asyncpg.Pool:
        """The replica's pool if it has replayed everything the primary had committed when this was called (waiting
        up to `catch_up_s` for it), else the primary's: for reads that must not miss anything (a manifest's items)."""
        if self.replica is None or not self.replica_usable:
            return self.primary
        async with self.primary.acquire() as conn:
            lsn = await conn.fetchval(PRIMARY_LSN)
        try:
            async with self.replica.acquire(timeout=self.acquire_timeout_s) as conn:
                deadline = time.monotonic() + self.catch_up_s
                while True:  # a standby streaming a busy primary is a few ms behind: worth a short wait
                    if await conn.fetchval(REPLAYED_UP_TO, lsn):
                        return self.replica
                    if time.monotonic() >= deadline:
                        break
                    await asyncio.sleep(0.01)
        except REPLICA_FAILURES as exc:
            self._failed(exc)
        return self.primary

    def _failed(self, exc: BaseException) -> None:
        if time.monotonic() >= self._down_until:
            log.warning(
                "the read replica failed (%s); reads go to the primary for %.0f s",
                type(exc).__name__,
                self.retry_after_s,
            )
        self._down_until = time.monotonic() + self.retry_after_s

    async def close(self) -> None:
        """Close the replica's pool (the primary's belongs to whoever made it)."""
        if self.replica is not None:
            await self.replica.close()
