"""Fulfilment on the real things: PostgreSQL, Redis and the arq worker in a subprocess.

Each test that relies on the operator of a province posts to one no other test here serves (34, 32, 33;
54 is served by none): the module's tests share one database, where the earliest operator of a province
takes its orders."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from delivery import services as delivery_services
from delivery.s10 import parse_tracking_number
from invoiceloop.settings import Settings
from invoicing import repository
from invoicing.numbering import Issuing
from invoicing.queue import Queue
from tests.conftest import ServerProcess, free_port, new_issuer
from tests.delivery_fixtures import issue_postal, new_operator, postal_body, wait_until

ORDERS = """
SELECT d.status, d.tracking_number, d.manifest_id, d.operator_id FROM delivery_orders d
 WHERE d.invoice_id = ANY($1::uuid[])"""


async def _orders(pool: asyncpg.Pool, ids: list[str]) -> list[asyncpg.Record]:
    return list(await pool.fetch(ORDERS, [uuid.UUID(i) for i in ids]))


async def test_fulfil_in_process_gives_s10_numbers_and_one_open_manifest(pool: asyncpg.Pool, issuing: Issuing) -> None:
    op, _ = await new_operator(pool, ["34"])
    issuer, _ = await new_issuer(pool)
    ids = await issue_postal(pool, issuing, issuer, 30, "34")
    async with pool.acquire() as conn:
        assert await delivery_services.fulfil_all(conn, ids) == 30
        assert await delivery_services.fulfil_all(conn, ids) == 0  # already fulfilled: a no-op
    rows = await _orders(pool, ids)
    assert {r["status"] for r in rows} == {"manifested"}
    assert {str(r["operator_id"]) for r in rows} == {op.id}
    assert len({r["manifest_id"] for r in rows}) == 1
    numbers = [r["tracking_number"] for r in rows]
    assert len(set(numbers)) == 30 and all(parse_tracking_number(n) for n in numbers)
    assert all(n.startswith("RR") and n.endswith("CN") for n in numbers)


@pytest.mark.slow
async def test_sigkill_three_times_every_order_gets_exactly_one_number(
    pool: asyncpg.Pool, issuing: Issuing, settings: Settings, start_worker: Any
) -> None:
    province = "32"
    await new_operator(pool, [province])
    issuer, _ = await new_issuer(pool)
    queue = Queue(settings.redis)
    ids: list[str] = []

    async def issue_stream() -> None:  # 40 issues of 10, each nudged as the issuer API does, over ~4 s
        for _ in range(40):
            batch = await issue_postal(pool, issuing, issuer, 10, province, batch=10)
            await queue.enqueue("fulfil_orders", batch, job_id=f"fulfil:{batch[0]}")
            ids.extend(batch)
            await asyncio.sleep(0.07)

    worker = start_worker()
    await asyncio.sleep(1.5)  # the worker is up
    stream = asyncio.create_task(issue_stream())
    for _ in range(3):  # SIGKILL while orders are arriving and being fulfilled
        await asyncio.sleep(1.2)
        worker.kill()
        worker = start_worker()
    await stream
    await queue.close()

    async def all_done() -> bool:
        return all(r["status"] == "manifested" for r in await _orders(pool, ids))

    await wait_until(all_done, timeout_s=60)
    rows = await _orders(pool, ids)
    numbers = [r["tracking_number"] for r in rows]
    assert len(rows) == 400 and len(set(numbers)) == 400 and None not in numbers
    assert all(parse_tracking_number(n) for n in numbers)


@pytest.mark.slow
async def test_redis_down_at_issue_then_the_sweep_fulfils(
    pool: asyncpg.Pool, settings: Settings, output_dir: Path, start_worker: Any
) -> None:
    province = "33"
    await new_operator(pool, [province])
    _, key = await new_issuer(pool)
    srv = ServerProcess(
        settings, output_dir / "delivery" / "server-no-redis.log", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"
    )
    try:
        async with httpx.AsyncClient(base_url=srv.base_url, headers={"Authorization": f"Bearer {key}"}) as client:
            answers = [await client.post("/v1/invoices", json=postal_body(province)) for _ in range(5)]
    finally:
        srv.stop()
    assert [a.status_code for a in answers] == [201] * 5
    ids = [a.json()["id"] for a in answers]
    assert {r["status"] for r in await _orders(pool, ids)} == {"pending"}
    start_worker()

    async def all_done() -> bool:
        return all(r["status"] == "manifested" for r in await _orders(pool, ids))

    await wait_until(all_done, timeout_s=30)


async def test_unserved_province_stays_pending_and_is_counted(pool: asyncpg.Pool, issuing: Issuing) -> None:
    issuer, _ = await new_issuer(pool)
    ids = await issue_postal(pool, issuing, issuer, 3, "54")  # no operator here serves 54
    async with pool.acquire() as conn:
        assert await delivery_services.fulfil_all(conn, ids) == 0
        months = await repository.stats(conn, issuer.id)
    assert {r["status"] for r in await _orders(pool, ids)} == {"pending"}
    assert sum(m["pending_without_operator"] for m in months) == 3


async def test_operator_ranges_never_overlap(pool: asyncpg.Pool) -> None:
    first, _ = await new_operator(pool, ["34"])
    second, _ = await new_operator(pool, ["34"])
    assert first.serial_last < second.serial_first
    async with pool.acquire() as conn:
        with pytest.raises(Exception, match="overlap"):
            await delivery_services.create_operator(
                conn, name="x", provinces=["34"], serial_first=first.serial_first, serial_last=first.serial_first + 5
            )
