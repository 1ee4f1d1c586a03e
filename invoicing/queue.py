"""The nudge to the worker: enqueue an arq job after commit. The row in PostgreSQL is the truth;
if Redis is unreachable, or hangs, the enqueue is given up within a bound (logged) and the worker's cron
sweep finds the row.

Every Redis client of the service is made here (`redis_client`, `arq_client`; from a URL or through Redis
Sentinel, `RedisTarget`), with connect and read
timeouts (REDIS_TIMEOUT_S): a Redis that is stopped but still accepts connections (SIGSTOP, a full
network buffer) must not hold a request forever."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from arq import ArqRedis
from redis.asyncio.sentinel import Sentinel

log = logging.getLogger("invoiceloop.queue")

# The jobs the worker runs, by the names they are enqueued under (the composition root registers them).
SEND_SMS = "send_sms"
FAN_OUT_SMS = "fan_out_sms"
FULFIL_ORDERS = "fulfil_orders"
SEND_MAIL = "send_mail"
FAN_OUT_MAIL = "fan_out_mail"
FAN_OUT_WEBHOOKS = "fan_out_webhooks"
DELIVER_WEBHOOKS = "deliver_webhooks"

DEFAULT_TIMEOUT_S = 0.5
R = TypeVar("R", bound=aioredis.Redis)
# An enqueue is a connect and a few round trips (arq watches the job key, then writes it in a transaction):
# it is given up after this many timeouts in all, whatever each step took.
ENQUEUE_BOUND_TIMEOUTS = 4


def _timeouts(timeout_s: float) -> dict[str, Any]:
    return {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is: a URL (REDIS_URL), or the master a set of Sentinels name (REDIS_SENTINELS,
    REDIS_SENTINEL_MASTER; database 0), which follows a failover to the replica the Sentinels promote."""

    url: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = "mymaster"
    timeout_s: float = DEFAULT_TIMEOUT_S

    def client(self, redis_class: type[R]) -> R:
        """A client of class `redis_class` (redis-py's or arq's), every connect and read bounded by `timeout_s`."""
        if self.sentinels:
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                list(self.sentinels), sentinel_kwargs=_timeouts(self.timeout_s), **_timeouts(self.timeout_s)
            )
            client: R = sentinel.master_for(self.master, redis_class=redis_class)
            return client
        assert self.url is not None
        client = redis_class.from_url(self.url, **_timeouts(self.timeout_s))
        return client


def parse_sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` -> ((host, port), ...); ValueError naming what is wrong."""
    found = []
    for item in text.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"REDIS_SENTINELS: {item.strip()!r} is not host:port")
        found.append((host, int(port)))
    return tuple(found)


def redis_client(target: RedisTarget) -> aioredis.Redis:
    """A redis-py client of the target (the limits, /readyz)."""
    return target.client(aioredis.Redis)


def arq_client(target: RedisTarget) -> ArqRedis:
    """arq's client of the target (enqueues, the worker's polling) with the same timeouts; arq's own
    `RedisSettings` has a connect timeout only."""
    return target.client(ArqRedis)


class Queue:
    """Enqueues jobs for the worker on Redis; the client is made on first use and dropped on any error."""

    def __init__(self, target: RedisTarget | None) -> None:
        self.target = target
        self.timeout_s = target.timeout_s if target else DEFAULT_TIMEOUT_S
        self._pool: ArqRedis | None = None

    async def enqueue(self, function: str, *args: Any, job_id: str | None = None, **kwargs: Any) -> bool:
        """True when the job was handed to Redis; never raises and never takes much longer than
        `ENQUEUE_BOUND_TIMEOUTS` × `timeout_s` (the sweep is the safety net)."""
        if self.target is None:
            return False
        try:
            async with asyncio.timeout(self.timeout_s * ENQUEUE_BOUND_TIMEOUTS):
                if self._pool is None:
                    self._pool = arq_client(self.target)
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
