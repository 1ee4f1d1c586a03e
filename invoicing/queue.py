"""The nudge to the worker: enqueue an arq job after commit. The row in PostgreSQL is the truth;
if Redis is unreachable, or hangs, the enqueue is given up within a bound (logged) and the worker's cron
sweep finds the row.

Every Redis client of the service is made here (`redis_client`, `arq_client`), with connect and read
timeouts (REDIS_TIMEOUT_S): a Redis that is stopped but still accepts connections (SIGSTOP, a full
network buffer) must not hold a request forever."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from arq import ArqRedis

log = logging.getLogger("invoiceloop.queue")

# The jobs the worker runs, by the names they are enqueued under (the composition root registers them).
SEND_SMS = "send_sms"
FULFIL_ORDERS = "fulfil_orders"

DEFAULT_TIMEOUT_S = 0.5
# An enqueue is a connect and a few round trips (arq watches the job key, then writes it in a transaction):
# it is given up after this many timeouts in all, whatever each step took.
ENQUEUE_BOUND_TIMEOUTS = 4


def _timeouts(timeout_s: float) -> dict[str, Any]:
    return {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}


def redis_client(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> aioredis.Redis:
    """A redis-py client of `url` whose every connect and read gives up after `timeout_s`."""
    client: aioredis.Redis = aioredis.from_url(url, **_timeouts(timeout_s))  # type: ignore[no-untyped-call]
    return client


def arq_client(url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> ArqRedis:
    """arq's client of `url` (enqueues, the worker's polling) with the same timeouts; arq's own
    `RedisSettings` has a connect timeout only."""
    client: ArqRedis = ArqRedis.from_url(url, **_timeouts(timeout_s))
    return client


class Queue:
    """Enqueues jobs for the worker on Redis; the client is made on first use and dropped on any error."""

    def __init__(self, redis_url: str | None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.redis_url = redis_url
        self.timeout_s = timeout_s
        self._pool: ArqRedis | None = None

    async def enqueue(self, function: str, *args: Any, job_id: str | None = None, **kwargs: Any) -> bool:
        """True when the job was handed to Redis; never raises and never takes much longer than
        `ENQUEUE_BOUND_TIMEOUTS` × `timeout_s` (the sweep is the safety net)."""
        if not self.redis_url:
            return False
        try:
            async with asyncio.timeout(self.timeout_s * ENQUEUE_BOUND_TIMEOUTS):
                if self._pool is None:
                    self._pool = arq_client(self.redis_url, self.timeout_s)
                await self._pool.enqueue_job(function, *args, _job_id=job_id, **kwargs)
        except Exception as exc:
            log.warning("could not enqueue %s (%s); the sweep will pick the work up", function, type(exc).__name__)
            await self.close()
            return False
        return True

    async def close(self) -> None:
        """Close the client, if open (within the timeout: a hung Redis is not waited for)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                async with asyncio.timeout(self.timeout_s):
                    await pool.aclose()
            except Exception:
                log.debug("closing the arq client failed", exc_info=True)
