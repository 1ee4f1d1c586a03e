"""The worker's work for postal delivery: fulfilment and its sweep (the "delivered" text goes through the
shared `invoicing.sms_outbox`). The composition root registers these as the arq job `fulfil_orders` and a
cron sweep, with their timeouts.

The rows in PostgreSQL are the truth and the jobs only the nudge: each may run twice (a worker killed with
SIGKILL re-runs its job after its timeout + 10 s) and re-reads its rows, doing nothing when the work is done.
The sweep finds what a lost job (Redis down at issue time, a killed worker) left behind."""

from __future__ import annotations

import logging

import asyncpg

from delivery import services

log = logging.getLogger("invoiceloop.delivery.jobs")

SWEEP_EVERY_S = 2
STRAGGLER_AGE_S = 3.0  # a pending order older than this has lost its job (or never had one)
JOB_TIMEOUT_S = 20  # short: a job of a worker killed with SIGKILL is re-run only after its timeout + 10 s


async def fulfil_orders(pool: asyncpg.Pool, invoice_ids: list[str]) -> int:
    """Fulfil the pending delivery orders of these invoices (a no-op for those already fulfilled)."""
    async with pool.acquire() as conn:
        return await services.fulfil_all(conn, invoice_ids)


async def sweep_orders(pool: asyncpg.Pool) -> int:
    """Fulfil pending orders older than `STRAGGLER_AGE_S` that some operator serves."""
    async with pool.acquire() as conn:
        done = await services.fulfil_all(conn, None, min_age_s=STRAGGLER_AGE_S, max_batches=20)
    if done:
        log.info("sweep fulfilled %d straggling delivery order(s)", done)
    return done
