"""Faults of Redis under a running service (issue 12, items 9 and 10), on a Redis of this module's own
(tests.own_redis): the shared one is never stopped. A hung Redis (SIGSTOP) must not hold requests, nor make a
committed invoice look failed; a worker whose Redis is killed and restarted carries on in the same process."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from invoiceloop.settings import Settings
from invoiceloop.worker import _close, build_worker
from invoicing.queue import FULFIL_ORDERS, Queue
from tests.conftest import ServerProcess, new_issuer, server_log
from tests.delivery_fixtures import WorkerProcess, issue_postal, new_operator, postal_body, wait_until
from tests.own_redis import OwnRedis
from tests.samples import invoice_body
from tests.verification_fixtures import query_of

# Generous: a request that hangs on a stopped Redis never answers at all; one that gives up on its
# timeouts (0.5 s each) answers within about two seconds, even on a loaded machine well within this.
CLIENT_TIMEOUT_S = 10.0
DOWN_S = 3.0  # how long Redis stays killed before it is started again


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path_factory.mktemp("own-redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fault_settings(settings: Settings, own_redis: OwnRedis) -> Settings:
    """The module's settings on its own Redis."""
    return dataclasses.replace(settings, redis_url=own_redis.url)


@pytest.fixture
def own_server(fault_settings: Settings, output_dir: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    srv = ServerProcess(fault_settings, server_log(output_dir, request))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def own_worker(fault_settings: Settings, output_dir: Path) -> Iterator[WorkerProcess]:
    (output_dir / "delivery").mkdir(exist_ok=True)
    worker = WorkerProcess(fault_settings, output_dir / "delivery" / "worker-redis-faults.log")
    try:
        yield worker
    finally:
        worker.stop()


async def _delivery_status(client: httpx.AsyncClient, invoice_id: str) -> str:
    answer = await client.get(f"/v1/invoices/{invoice_id}/delivery")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["status"])


async def test_a_hung_redis_holds_no_request_and_loses_no_work(
    own_server: ServerProcess, own_worker: WorkerProcess, own_redis: OwnRedis, pool: asyncpg.Pool
) -> None:
    """Redis stopped with SIGSTOP (it still accepts connections, and never answers): `/readyz` says 503,
    a verification is a 503 problem with Retry-After, a postal invoice is issued (201) all the same; once
    Redis is back the sweep fulfils its delivery order, and the same Idempotency-Key gives the same invoice."""
    await new_operator(pool, ["53"])
    _, key = await new_issuer(pool)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=own_server.base_url, timeout=CLIENT_TIMEOUT_S, headers=headers) as client:
        electronic = await client.post("/v1/invoices", json=invoice_body())
        assert electronic.status_code == 201, electronic.text
        assert (await client.get("/readyz")).status_code == 200

        own_redis.pause()
        try:
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and "redis" in ready.json()["checks"], ready.text
            assert ready.json()["checks"]["redis"] != "ok"

            verified = await client.post("/v1/verifications", json=query_of(electronic.json()))
            assert verified.status_code == 503, verified.text
            assert verified.headers["content-type"].startswith("application/problem+json")
            assert int(verified.headers["retry-after"]) >= 1

            idem = {"Idempotency-Key": f"hung-redis-{uuid.uuid4()}"}
            postal = await client.post("/v1/invoices", json=postal_body("53"), headers=idem)
            assert postal.status_code == 201, postal.text  # committed: the answer must say so
            invoice_id = postal.json()["id"]
            assert await _delivery_status(client, invoice_id) == "pending"  # nobody was nudged
        finally:
            own_redis.resume()

        async def fulfilled() -> bool:
            return await _delivery_status(client, invoice_id) != "pending"

        await wait_until(fulfilled, timeout_s=60)  # the worker's sweep: the lost nudge cost nothing
        again = await client.post("/v1/invoices", json=postal_body("53"), headers=idem)
        assert again.status_code == 201 and again.json()["id"] == invoice_id
        assert again.headers.get("idempotent-replayed") == "true"
        assert (await client.get("/readyz")).status_code == 200


async def test_the_worker_outlives_a_redis_restart(
    own_worker: WorkerProcess, own_redis: OwnRedis, fault_settings: Settings, pool: asyncpg.Pool, issuing: Any
) -> None:
    """Redis killed under a running worker and started again on the same port: the worker process (same pid)
    reconnects and does a job enqueued after the restart."""
    issuer, _ = await new_issuer(pool)
    await new_operator(pool, ["54"])
    client = aioredis.from_url(fault_settings.redis_url or "")
    try:

        async def polling() -> bool:  # the worker is up: arq keeps its health key while it polls
            return bool(await client.keys("arq:queue:health-check"))

        await wait_until(polling, timeout_s=60)
        pid = own_worker.proc.pid
        own_redis.kill()
        await client.aclose()  # its connection died with the server
        await asyncio.sleep(DOWN_S)  # down for several of the worker's polls, not just between two
        own_redis.start()
        client = aioredis.from_url(fault_settings.redis_url or "")
        [invoice_id] = await issue_postal(pool, issuing, issuer, 1, "54")
        queue = Queue(fault_settings.redis)
        try:
            assert await queue.enqueue(FULFIL_ORDERS, [invoice_id], job_id=f"fulfil:{invoice_id}")
        finally:
            await queue.close()

        async def done() -> bool:
            status = await pool.fetchval(
                "SELECT status FROM delivery_orders WHERE invoice_id = $1", uuid.UUID(invoice_id)
            )
            job_gone = not await client.exists(f"arq:job:fulfil:{invoice_id}")
            return status != "pending" and job_gone

        await wait_until(done, timeout_s=60)
        assert own_worker.proc.poll() is None and own_worker.proc.pid == pid
    finally:
        await client.aclose()


async def test_a_job_cancelled_as_redis_drops_does_not_end_the_worker(fault_settings: Settings) -> None:
    """arq's close cancels the running jobs and then gathers them. A job cancelled where it waited (for Redis,
    writing its result as Redis dropped; seen once in a full run under load) re-raised its cancellation into the
    reconnect, and the worker process ended silently: no reconnect, no jobs. Here a real worker, built as the
    command builds it, holds such a job when the reconnect closes it: the close finishes and the worker carries
    on, while a cancellation of the closing task itself (SIGTERM) still stops it."""
    worker = build_worker(fault_settings)
    job = asyncio.create_task(asyncio.sleep(3600))  # a job awaiting Redis
    worker.tasks["waiting"] = job
    await _close(worker)  # returns: the worker's loop sleeps and reconnects
    assert job.cancelled()

    stopping = build_worker(fault_settings)
    stopping.tasks["waiting"] = asyncio.create_task(asyncio.sleep(3600))
    closing = asyncio.create_task(_close(stopping))
    await asyncio.sleep(0)
    closing.cancel()  # SIGTERM while the reconnect closes the worker
    with pytest.raises(asyncio.CancelledError):
        await closing
    await stopping.pool.aclose(close_connection_pool=True)
