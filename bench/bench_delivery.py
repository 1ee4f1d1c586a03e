"""Postal delivery speed, beside baselines measured in the same run on the same PostgreSQL.

Prints: orders fulfilled/s by the real arq worker (jobs of 1000 orders) against a plain batched
`UPDATE ... FROM unnest` of the same size; issue -> manifested latency (p50/p95) for single HTTP issues while
the worker runs; manifest CSV rows/s (in process and over HTTP) for 100,000 orders with the server's peak
RSS; tracking events ingested/s in batches of 1000. Run: `python -m bench.bench_delivery` (about a minute).
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import load
from delivery import export
from delivery import services as delivery_services
from invoiceloop.app import load_issuing
from invoiceloop.embedded import port_open
from invoiceloop.settings import Settings
from invoicing import db
from invoicing.queue import Queue
from tests.conftest import ServerProcess, new_issuer
from tests.delivery_fixtures import WorkerProcess, issue_postal, postal_body
from tests.integration.test_manifest_memory import BULK_INVOICES, BULK_ORDERS, vm_hwm_kb

FULFIL_ORDERS = 20_000
MANIFEST_ORDERS = 100_000
PROVINCE = "44"


async def baseline_update(pool: asyncpg.Pool) -> float:
    """Rows/s of a batched UPDATE ... FROM unnest (1000 rows a transaction), the floor of fulfilment's work."""
    async with pool.acquire() as conn:
        await conn.execute("CREATE TABLE bench_orders (id uuid PRIMARY KEY, status text, tn text)")
        ids = [uuid.uuid4() for _ in range(FULFIL_ORDERS)]
        await conn.execute("INSERT INTO bench_orders (id, status) SELECT unnest($1::uuid[]), 'pending'", ids)
        start = time.perf_counter()
        for k in range(0, len(ids), 1000):
            part = ids[k : k + 1000]
            async with conn.transaction():
                await conn.execute(
                    """UPDATE bench_orders b SET status = 'manifested', tn = u.tn
                                        FROM unnest($1::uuid[], $2::text[]) AS u(id, tn) WHERE b.id = u.id""",
                    part,
                    [str(i) for i in part],
                )
        return len(ids) / (time.perf_counter() - start)


async def count_status(pool: asyncpg.Pool, ids: list[str], status: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM delivery_orders WHERE invoice_id = ANY($1::uuid[]) AND status = $2",
            [uuid.UUID(i) for i in ids],
            status,
        )
    )


async def fulfil_rate(pool: asyncpg.Pool, settings: Settings, ids: list[str]) -> float:
    """Enqueue the backlog as the issuer API would (one job per 1000-invoice batch); time until all manifested."""
    queue = Queue(settings.redis)
    start = time.perf_counter()
    for k in range(0, len(ids), 1000):
        await queue.enqueue("fulfil_orders", ids[k : k + 1000], job_id=f"fulfil:{ids[k]}")
    while await count_status(pool, ids, "manifested") < len(ids):  # noqa: ASYNC110 - polling the database
        await asyncio.sleep(0.05)
    await queue.close()
    return len(ids) / (time.perf_counter() - start)


async def latency(pool: asyncpg.Pool, base_url: str, key: str, count: int = 200) -> list[float]:
    """Seconds from issue (order created) to manifested, for `count` single HTTP issues, 8 at a time."""
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        sem = asyncio.Semaphore(8)

        async def one() -> str:
            async with sem:
                answer = await client.post("/v1/invoices", json=postal_body(PROVINCE))
                return str(answer.json()["id"])

        ids = await asyncio.gather(*(one() for _ in range(count)))
    while await count_status(pool, ids, "manifested") < count:  # noqa: ASYNC110 - polling the database
        await asyncio.sleep(0.1)
    rows = await pool.fetch(
        "SELECT extract(epoch FROM manifested_at - created_at) AS s FROM delivery_orders "
        "WHERE invoice_id = ANY($1::uuid[])",
        [uuid.UUID(i) for i in ids],
    )
    return sorted(float(r["s"]) for r in rows)


async def big_manifest(pool: asyncpg.Pool, issuing: Any) -> str:
    issuer, _ = await new_issuer(pool)  # a series of its own: the bulk numbers cannot collide
    await pool.execute("UPDATE manifests SET status = 'closed'")  # the 100,000 go to a manifest of their own
    [seed] = await issue_postal(pool, issuing, issuer, 1, PROVINCE)
    async with pool.acquire() as conn:
        await delivery_services.fulfil_all(conn, [seed])
        manifest_id = await conn.fetchval("SELECT manifest_id FROM delivery_orders WHERE invoice_id = $1", seed)
        await conn.execute(BULK_INVOICES, seed, MANIFEST_ORDERS - 1)
        await conn.execute(
            BULK_ORDERS.replace("i.chain_seq > 1000", "i.chain_seq > 1000 AND i.series_id = $2"),
            seed,
            await conn.fetchval("SELECT series_id FROM invoices WHERE id = $1", uuid.UUID(seed)),
        )
        await conn.execute("UPDATE manifests SET status = 'closed' WHERE id = $1", manifest_id)
        await conn.execute("ANALYZE")
    return str(manifest_id)


async def csv_rates(pool: asyncpg.Pool, srv: ServerProcess, key: str, manifest_id: str) -> dict[str, float]:
    async with pool.acquire() as conn:
        manifest = await conn.fetchrow(
            "SELECT m.*, (SELECT 0) AS item_count, '' AS operator_name FROM manifests m WHERE id = $1",
            uuid.UUID(manifest_id),
        )
    start = time.perf_counter()
    rows = sum([chunk.count(b"\r\n") async for chunk in export.csv_stream(pool, manifest)]) - 1
    in_process = rows / (time.perf_counter() - start)
    before = vm_hwm_kb(srv.proc.pid)
    async with httpx.AsyncClient(base_url=srv.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
        start = time.perf_counter()
        async with c.stream("GET", f"/v1/postal/manifests/{manifest_id}", params={"format": "csv"}) as answer:
            size = sum([len(chunk) async for chunk in answer.aiter_raw()])
        over_http = MANIFEST_ORDERS / (time.perf_counter() - start)
    return {
        "rows": rows,
        "in_process": in_process,
        "http": over_http,
        "mb": size / 1e6,
        "rss_before": before / 1024,
        "rss_after": vm_hwm_kb(srv.proc.pid) / 1024,
    }


async def event_rate(pool: asyncpg.Pool, srv: ServerProcess, key: str, ids: list[str]) -> float:
    numbers = [
        r["tracking_number"]
        for r in await pool.fetch(
            "SELECT tracking_number FROM delivery_orders WHERE invoice_id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in ids],
        )
    ]
    await pool.execute(
        "UPDATE delivery_orders SET status = 'dispatched' WHERE invoice_id = ANY($1::uuid[])",
        [uuid.UUID(i) for i in ids],
    )
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 3600))
    batches = [
        [
            {
                "event_id": f"b{k + j}",
                "tracking_number": n,
                "status": "in_transit",
                "occurred_at": stamp,
                "location": "广州",
            }
            for j, n in enumerate(numbers[k : k + 1000])
        ]
        for k in range(0, len(numbers), 1000)
    ]
    async with httpx.AsyncClient(base_url=srv.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        start = time.perf_counter()
        for batch in batches:
            answer = (await c.post("/v1/postal/events", json={"events": batch})).json()
            assert answer["accepted"] == len(batch), answer
        return len(numbers) / (time.perf_counter() - start)


async def bench(settings: Settings) -> None:
    load.empty_redis(settings.redis_url or "")
    pool = await db.create_pool(settings.database_url or "", max_size=10)
    issuing = load_issuing(settings)
    issuer, issuer_key = await new_issuer(pool)
    base = await baseline_update(pool)
    # The backlog is issued while nobody serves the province, so the worker cannot start on it early.
    ids = await issue_postal(pool, issuing, issuer, FULFIL_ORDERS, PROVINCE, batch=1000)
    log = Path(tempfile.gettempdir())
    worker = WorkerProcess(settings, log / "bench-worker.log")
    srv = ServerProcess(settings, log / "bench-delivery-server.log")
    try:
        await asyncio.sleep(2)  # the worker connects
        async with pool.acquire() as conn:
            _, op_key = await delivery_services.create_operator(conn, name="Bench Post", provinces=[PROVINCE])
        fulfil = await fulfil_rate(pool, settings, ids)
        lat = await latency(pool, srv.base_url, issuer_key)
        events = await event_rate(pool, srv, op_key, ids)
        manifest_id = await big_manifest(pool, issuing)
        csv_r = await csv_rates(pool, srv, op_key, manifest_id)
    finally:
        worker.stop()
        srv.stop()
        await pool.close()
    report(base, fulfil, lat, events, csv_r)


def report(base: float, fulfil: float, lat: list[float], events: float, csv_r: dict[str, float]) -> None:
    p95 = lat[int(len(lat) * 0.95) - 1]
    print(f"delivery benchmark ({FULFIL_ORDERS} orders, one operator; server and worker on the same 2 cores)")
    print(f"  baseline batched UPDATE ... FROM unnest   {base:9.0f} rows/s")
    print(
        f"  worker fulfilment (1000-order jobs)       {fulfil:9.0f} orders/s  ratio {fulfil / base:.2f} "
        f"(target >= 2000/s)"
    )
    print(
        f"  issue -> manifested, {len(lat)} single issues   p50 {statistics.median(lat):.2f} s, p95 {p95:.2f} s "
        f"(target p95 < 2 s)"
    )
    print(
        f"  manifest CSV, {int(csv_r['rows'])} rows            {csv_r['in_process']:9.0f} rows/s in process, "
        f"{csv_r['http']:.0f} rows/s over HTTP ({csv_r['mb']:.1f} MB; target >= 100000/s)"
    )
    print(f"  server peak RSS (VmHWM) before/after      {csv_r['rss_before']:.0f} / {csv_r['rss_after']:.0f} MB")
    print(f"  tracking events, batches of 1000          {events:9.0f} events/s  ratio {events / base:.2f}")


async def main_async() -> None:
    admin_url = "postgresql://postgres@127.0.0.1:5432/postgres"
    if not port_open("127.0.0.1", 5432) or not port_open("127.0.0.1", 6379):
        print("bench_delivery needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379")
        return
    name = f"invoiceloop_bench_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                database_url=admin_url.rsplit("/", 1)[0] + "/" + name,
                redis_url="redis://127.0.0.1:6379/13",
                data_dir=Path(tmp),
                check_code_secret="bench",
            )
            await db.migrate_url(settings.database_url or "")
            await bench(settings)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main_async())
    sys.exit(0)
