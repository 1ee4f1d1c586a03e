"""arq jobs of the postal delivery: fulfilment and its cron sweep (the "delivered" text goes through the
shared `invoicing.sms_outbox`).

The rows in PostgreSQL are the truth and these jobs only the nudge: each may run twice (a worker killed
with SIGKILL re-runs its job after `job_timeout` + 10 s) and re-reads its rows, doing nothing when the work
is done. The sweeps find what a lost job (Redis down at issue time, a killed worker) left behind."""

from __future__ import annotations

import logging
from typing import Any

from arq import cron

from delivery import services

log = logging.getLogger("invoiceloop.delivery.jobs")

SWEEP_EVERY_S = 2
STRAGGLER_AGE_S = 3.0  # a pending order older than this has lost its job (or never had one)


async def fulfil_orders(ctx: dict[str, Any], invoice_ids: list[str]) -> int:
    """Fulfil the pending delivery orders of these invoices (a no-op for those already fulfilled)."""
    async with ctx["pool"].acquire() as conn:
        return await services.fulfil_all(conn, invoice_ids)


async def sweep_orders(ctx: dict[str, Any]) -> int:
    """Every few seconds: fulfil pending orders older than `STRAGGLER_AGE_S` that some operator serves."""
    async with ctx["pool"].acquire() as conn:
        done = await services.fulfil_all(conn, None, min_age_s=STRAGGLER_AGE_S, max_batches=20)
    if done:
        log.info("sweep fulfilled %d straggling delivery order(s)", done)
    return done


_SECONDS = set(range(0, 60, SWEEP_EVERY_S))
FUNCTIONS = [fulfil_orders]
CRON_JOBS = [
    cron(sweep_orders, name="delivery_sweep_orders", second=_SECONDS, microsecond=0, run_at_startup=True, timeout=20),
]
# Short: a job of a worker killed with SIGKILL is re-run only after its timeout + 10 s (NOTES.md).
WORKER_OPTIONS = {"job_timeout": 20, "keep_result": 0, "max_jobs": 20}
