"""The nudge to the worker: enqueue an arq job after commit. The row in PostgreSQL is the truth;
if Redis is unreachable the enqueue is skipped (logged) and the worker's cron sweep finds the row."""

from __future__ import annotations

import logging
from typing import Any

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings

log = logging.getLogger("invoiceloop.queue")

# The jobs the worker runs, by the names they are enqueued under (the composition root registers them).
SEND_SMS = "send_sms"
FULFIL_ORDERS = "fulfil_orders"


class Queue:
    """Enqueues jobs for the worker on Redis; the pool is opened on first use and dropped on any error."""

    def __init__(self, redis_url: str | None) -> None:
        self.redis_url = redis_url
        self._pool: ArqRedis | None = None

    async def enqueue(self, function: str, *args: Any, job_id: str | None = None, **kwargs: Any) -> bool:
        """True when the job was handed to Redis; never raises (the sweep is the safety net)."""
        if not self.redis_url:
            return False
        try:
            if self._pool is None:
                settings = RedisSettings.from_dsn(self.redis_url)
                settings.conn_retries = 0
                settings.conn_timeout = 1
                self._pool = await create_pool(settings)
            await self._pool.enqueue_job(function, *args, _job_id=job_id, **kwargs)
        except Exception as exc:
            log.warning("could not enqueue %s (%s); the sweep will pick the work up", function, type(exc).__name__)
            await self.close()
            return False
        return True

    async def close(self) -> None:
        """Close the connection pool, if open."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await pool.aclose()
            except Exception:
                log.debug("closing the arq pool failed", exc_info=True)
