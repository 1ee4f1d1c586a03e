"""The issuer API's after-commit nudges (`invoicing.api.Nudges`): requests answered at the same time share one
enqueue of each kind, and every record of every request is still in a job. Real PostgreSQL for the records, the
real arq client on the module's own Redis database (no worker runs here, so the queued jobs can be read back)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from arq.jobs import deserialize_job

from invoiceloop.settings import Settings
from invoicing import numbering, services, validation
from invoicing.api import Nudges
from invoicing.model import DEFAULT_TAX_RATES
from invoicing.numbering import Issuing
from invoicing.queue import FAN_OUT_SMS, FULFIL_ORDERS, Queue
from tests.conftest import new_issuer
from tests.samples import invoice_body


async def _issue(pool: asyncpg.Pool, issuing: Issuing, count: int) -> list[services.Issued]:
    """`count` single issues, every other one postal, each buyer with a phone (the electronic ones get a text)."""
    issuer, _ = await new_issuer(pool)
    done = []
    for i in range(count):
        body = invoice_body(delivery="postal" if i % 2 else "electronic")
        draft = numbering.draft_of(validation.invoice_request(body, DEFAULT_TAX_RATES))
        async with pool.acquire() as conn:
            done.append(await services.issue(conn, issuing, issuer, [draft]))
    return done


async def _queued(redis_url: str) -> list[tuple[str, tuple[Any, ...]]]:
    """(function, args) of every job waiting in arq's queue, then the queue emptied for the next test."""
    client = aioredis.from_url(redis_url)
    try:
        jobs = []
        for job_id in await client.zrange("arq:queue", 0, -1):
            data = await client.get(b"arq:job:" + job_id)
            job = deserialize_job(data)
            jobs.append((job.function, tuple(job.args)))
            await client.delete(b"arq:job:" + job_id)
        await client.delete("arq:queue")
        return jobs
    finally:
        await client.aclose()


def _ids(jobs: list[tuple[str, tuple[Any, ...]]], function: str) -> list[str]:
    return [i for name, args in jobs if name == function for i in args[-1]]


async def test_requests_answered_together_share_one_enqueue_of_each_kind(
    pool: asyncpg.Pool, issuing: Issuing, settings: Settings, redis_url: str
) -> None:
    issued = await _issue(pool, issuing, 12)
    queue = Queue(settings.redis)
    nudges = Nudges(queue)
    try:
        await _queued(redis_url)
        await asyncio.gather(*(nudges.after_commit(one) for one in issued))  # 12 requests answered at once
        jobs = await _queued(redis_url)
        everyone = [one.invoices[0] for one in issued]
        assert sorted(name for name, _ in jobs) == sorted([FAN_OUT_SMS, FULFIL_ORDERS])  # 2 enqueues, not 18
        assert sorted(_ids(jobs, FAN_OUT_SMS)) == sorted(inv.id for inv in everyone if inv.delivery_method != "postal")
        assert sorted(_ids(jobs, FULFIL_ORDERS)) == sorted(
            inv.id for inv in everyone if inv.delivery_method == "postal"
        )

        await nudges.after_commit(issued[0])  # a lone request is nudged at once, on its own
        assert await _queued(redis_url) == [(FAN_OUT_SMS, ("invoice", [issued[0].invoices[0].id]))]
        await nudges.after_commit(issued[1])  # postal: no text, its delivery order
        assert await _queued(redis_url) == [(FULFIL_ORDERS, ([issued[1].invoices[0].id],))]
    finally:
        await queue.close()


async def test_a_replayed_request_nudges_nothing(
    pool: asyncpg.Pool, issuing: Issuing, settings: Settings, redis_url: str
) -> None:
    [one] = await _issue(pool, issuing, 1)
    queue = Queue(settings.redis)
    try:
        await _queued(redis_url)
        await Nudges(queue).after_commit(services.Issued(one.invoices, replayed=True))
        assert await _queued(redis_url) == []
    finally:
        await queue.close()
