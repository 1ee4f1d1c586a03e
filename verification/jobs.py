"""arq jobs of verification: send one outbox SMS (`send_sms`), and a cron sweep that re-enqueues rows the
queue lost. The outbox row is the truth; a job re-reads it and does nothing when it is sent or taken."""

from __future__ import annotations

import logging
import time
from typing import Any

from arq import Retry, cron

from verification import repository as vrepo
from verification.sms import SmsSendFailed

log = logging.getLogger("invoiceloop.verification.jobs")
MAX_TRIES = 4  # then the row is marked failed
RETRY_DEFER_S = 1.0  # times the try number: 1 s, 2 s, 3 s
STALE_SENDING_S = 60.0  # a row in `sending` this long lost its worker; take it again
SWEEP_AFTER_S = 5.0  # pending rows older than this are re-enqueued by the sweep


async def send_sms(ctx: dict[str, Any], outbox_id: int) -> str:
    """Send one outbox message through the SMS channel; retries on `SmsSendFailed`, then marks it failed."""
    pool = ctx["pool"]
    async with pool.acquire() as conn:
        row = await vrepo.claim_sms(conn, outbox_id, STALE_SENDING_S)
    if row is None:
        return "nothing to do"
    try:
        provider_id = await ctx["sms"].send(row["phone"], row["body"])
    except SmsSendFailed as exc:
        job_try = int(ctx.get("job_try", 1))
        final = job_try >= MAX_TRIES
        async with pool.acquire() as conn:
            await vrepo.mark_unsent(conn, outbox_id, "failed" if final else "pending", exc.reason)
        log.warning("SMS %s not sent (try %s): %s", outbox_id, job_try, exc.reason)
        if final:
            return "failed"
        raise Retry(defer=RETRY_DEFER_S * job_try) from None
    async with pool.acquire() as conn:
        await vrepo.mark_sent(conn, outbox_id, provider_id)
    return "sent"


async def sweep_sms(ctx: dict[str, Any]) -> int:
    """Re-enqueue unsent rows older than a few seconds (a fresh job id each sweep: arq refuses a known one)."""
    async with ctx["pool"].acquire() as conn:
        rows = await vrepo.unsent(conn, SWEEP_AFTER_S, STALE_SENDING_S)
    stamp = int(time.time())
    for row in rows:
        await ctx["redis"].enqueue_job("send_sms", row["id"], _job_id=f"sms:{row['id']}:sweep{stamp}")
    return len(rows)


FUNCTIONS = [send_sms]
CRON_JOBS = [cron(sweep_sms, second={0, 15, 30, 45}, run_at_startup=False, unique=True, timeout=30)]
