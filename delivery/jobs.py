"""arq jobs of the postal delivery: fulfilment, its cron sweep, and the "delivered" SMS.

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
SMS_BATCH = 100

CLAIM_SMS = """
UPDATE delivery_sms SET attempts = attempts + 1
 WHERE order_id IN (SELECT order_id FROM delivery_sms
                     WHERE sent_at IS NULL AND attempts < 5 AND ($1::uuid[] IS NULL OR order_id = ANY($1))
                     ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING order_id, phone, body"""

MARK_SENT = "UPDATE delivery_sms SET sent_at = now(), provider_id = $2, last_error = NULL WHERE order_id = $1"
MARK_FAILED = "UPDATE delivery_sms SET last_error = $2 WHERE order_id = $1"


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


async def send_delivery_sms(ctx: dict[str, Any], order_ids: list[str] | None = None) -> int:
    """Send the unsent "delivered" texts (those of `order_ids`, or any); a failure is recorded and retried
    by the sweep up to 5 attempts. The claim commits before sending, so a text is sent at most 5 times."""
    if ctx.get("sms") is None:
        return 0
    async with ctx["pool"].acquire() as conn:
        claimed = await conn.fetch(CLAIM_SMS, order_ids, SMS_BATCH)
    sent = 0
    for row in claimed:
        try:
            provider_id = await ctx["sms"].send(row["phone"], row["body"])
        except Exception as exc:
            log.warning("delivery SMS for order %s failed: %s", row["order_id"], type(exc).__name__)
            async with ctx["pool"].acquire() as conn:
                await conn.execute(MARK_FAILED, row["order_id"], type(exc).__name__)
            continue
        async with ctx["pool"].acquire() as conn:
            await conn.execute(MARK_SENT, row["order_id"], str(provider_id))
        sent += 1
    return sent


async def sweep_sms(ctx: dict[str, Any]) -> int:
    """Every few seconds: the texts whose job was lost or failed."""
    return await send_delivery_sms(ctx, None)


_SECONDS = set(range(0, 60, SWEEP_EVERY_S))
FUNCTIONS = [fulfil_orders, send_delivery_sms]
CRON_JOBS = [
    cron(sweep_orders, name="delivery_sweep_orders", second=_SECONDS, microsecond=0, run_at_startup=True, timeout=20),
    cron(sweep_sms, name="delivery_sweep_sms", second=_SECONDS, microsecond=500_000, timeout=20),
]
# Short: a job of a worker killed with SIGKILL is re-run only after its timeout + 10 s (NOTES.md).
WORKER_OPTIONS = {"job_timeout": 20, "keep_result": 0, "max_jobs": 20}
