"""Issuing speed, as ratios against baselines measured in the same run on the same PostgreSQL.

Prints: HTTP issue throughput with 16 concurrent clients on 16 series and on one series, the batch
endpoint's invoices/s, and beside them a plain asyncpg INSERT+COMMIT at 16 concurrent and a
one-statement gapless counter+insert on one series. Run: `python -m bench.bench_issue`.
Everything runs on this machine (loopback only) and stops by itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from invoiceloop.embedded import embedded_postgres, embedded_redis, port_open
from invoiceloop.settings import Settings
from invoicing import db
from tests.conftest import ServerProcess, new_issuer
from tests.delivery_fixtures import WorkerProcess
from tests.samples import invoice_body

CONCURRENCY = 16
SECONDS = float(os.environ.get("BENCH_SECONDS", "6"))


async def run_for(seconds: float, workers: int, one: Callable[[int], Awaitable[int]]) -> float:
    """Operations per second of `workers` loops calling `one(worker)` (which returns how many ops it did)."""
    done = 0
    stop = time.perf_counter() + seconds

    async def loop(i: int) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            n = await one(i)  # not `done += await ...`: that reads `done` before the await and loses updates
            done += n

    start = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(workers)))
    return done / (time.perf_counter() - start)


async def baselines(url: str) -> dict[str, float]:
    conn = await asyncpg.connect(url)
    await conn.execute("""CREATE TABLE IF NOT EXISTS bench_rows (id bigserial PRIMARY KEY, body text NOT NULL);
                          CREATE TABLE IF NOT EXISTS bench_counter (id int PRIMARY KEY, n int NOT NULL);
                          CREATE TABLE IF NOT EXISTS bench_numbered (n int PRIMARY KEY, body text NOT NULL);
                          INSERT INTO bench_counter VALUES (1, 0) ON CONFLICT DO NOTHING""")
    await conn.close()
    conns = [await asyncpg.connect(url) for _ in range(CONCURRENCY)]
    body = json.dumps(invoice_body(lines=3), ensure_ascii=False)

    async def insert(i: int) -> int:
        await conns[i].execute("INSERT INTO bench_rows (body) VALUES ($1)", body)
        return 1

    async def gapless(i: int) -> int:
        await conns[i].execute(
            """WITH c AS (UPDATE bench_counter SET n = n + 1 WHERE id = 1 RETURNING n)
                                  INSERT INTO bench_numbered SELECT n, $1 FROM c""",
            body,
        )
        return 1

    result = {
        "insert": await run_for(SECONDS, CONCURRENCY, insert),
        "gapless": await run_for(SECONDS, CONCURRENCY, gapless),
    }
    for c in conns:
        await c.close()
    return result


WRK_SCRIPT = """
local bodies = {}
local i = 0
for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
request = function()
  i = i + 1
  return wrk.format(nil, os.getenv("BENCH_PATH"), nil, bodies[(i % #bodies) + 1])
end
"""


def wrk(
    base_url: str, key: str, path: str, bodies: list[dict[str, object]], connections: int, seconds: float
) -> tuple[float, int]:
    """Requests/s and non-2xx count from `wrk` (C, so the load generator costs little CPU)."""
    with tempfile.TemporaryDirectory() as tmp:
        script, lines = Path(tmp) / "post.lua", Path(tmp) / "bodies.jsonl"
        script.write_text(WRK_SCRIPT)
        lines.write_text("\n".join(json.dumps(b, ensure_ascii=False) for b in bodies) + "\n")
        env = {**os.environ, "BENCH_BODIES": str(lines), "BENCH_KEY": key, "BENCH_PATH": path}
        out = subprocess.run(
            [
                "wrk",
                "-t",
                "2",
                "-c",
                str(connections),
                "-d",
                f"{seconds:.0f}s",
                "--timeout",
                "30s",
                "-s",
                str(script),
                base_url + path,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, int(bad[1]) if bad else 0


async def http_rates(base_url: str, key: str) -> dict[str, float]:
    many = [invoice_body(series=f"till-{i}") for i in range(CONCURRENCY)]
    batch = {"invoices": [invoice_body(series="batch") for _ in range(1000)]}
    await asyncio.to_thread(wrk, base_url, key, "/v1/invoices", many, CONCURRENCY, 1)  # open series, warm up
    results = {}
    for name, path, bodies, conns in [
        ("http16", "/v1/invoices", many, CONCURRENCY),
        ("http1", "/v1/invoices", [invoice_body(series="one")], CONCURRENCY),
        ("batch", "/v1/invoices/batch", [batch], 2),
    ]:
        rate, bad = await asyncio.to_thread(wrk, base_url, key, path, bodies, conns, SECONDS)
        if bad:
            print(f"  ({name}: {bad} answers were not 2xx)")
        results[name] = rate * (1000 if name == "batch" else 1)
    return results


def report(base: dict[str, float], rates: dict[str, float]) -> None:
    print(f"issuing, {CONCURRENCY} concurrent, {SECONDS:.0f} s each, 2 uvicorn workers, wrk on the same 2 cores")
    print(f"  baseline asyncpg INSERT+COMMIT            {base['insert']:9.0f} /s")
    print(f"  baseline gapless counter+insert, 1 series {base['gapless']:9.0f} /s")
    print(
        f"  HTTP issue, 16 series                     {rates['http16']:9.0f} /s   "
        f"ratio {rates['http16'] / base['insert']:.2f} of INSERT (target >= 0.5)"
    )
    print(
        f"  HTTP issue, 1 series                      {rates['http1']:9.0f} /s   "
        f"ratio {rates['http1'] / base['gapless']:.2f} of gapless (target >= 0.5)"
    )
    print(
        f"  batch endpoint (1000 per request)         {rates['batch']:9.0f} invoices/s (target >= 10000)   "
        f"ratio {rates['batch'] / base['insert']:.1f} of INSERT"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        if port_open("127.0.0.1", 5432):
            server_url = "postgresql://postgres@127.0.0.1:5432/postgres"
            run(server_url, data)
        else:
            with embedded_postgres(data / "pg") as server_url:
                run(server_url, data)


def run(server_url: str, data: Path) -> None:
    name = f"invoiceloop_bench_{secrets.token_hex(3)}"
    redis_url = "redis://127.0.0.1:6379/14" if port_open("127.0.0.1", 6379) else None
    with embedded_redis(data / "redis") if redis_url is None else _null(redis_url) as r_url:
        settings = Settings(
            database_url=server_url.rsplit("/", 1)[0] + "/" + name,
            redis_url=r_url,
            data_dir=data,
            check_code_secret="bench",
        )
        asyncio.run(_with_db(settings, server_url, name))


async def _with_db(settings: Settings, server_url: str, name: str) -> None:
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        await db.migrate_url(settings.database_url or "")
        pool = await db.create_pool(settings.database_url or "")
        _, key = await new_issuer(pool)
        await pool.close()
        server = await asyncio.to_thread(
            ServerProcess, settings, Path(tempfile.gettempdir()) / "bench-server.log", workers=2
        )
        worker = WorkerProcess(settings, Path(tempfile.gettempdir()) / "bench-worker.log")
        try:
            base = await baselines(settings.database_url or "")
            rates = await http_rates(server.base_url, key)
            latency = await log_latency(settings.database_url or "")
        finally:
            server.stop()
            worker.stop()
        report(base, rates)
        print(
            f"  into the public log after issue, {latency['count']} records: p50 {latency['p50']:.2f} s, "
            f"p99 {latency['p99']:.2f} s, max {latency['max']:.2f} s (target p99 <= 2 s)"
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def log_latency(url: str, drain_s: float = 60.0) -> dict[str, float]:
    """How long after its issue each record of the run reached the public log (the worker's sequencer ran
    beside the load): waits for the queue to drain, then p50, p99 and max of sequenced_at - issued_at."""
    conn = await asyncpg.connect(url)
    try:
        for _ in range(int(drain_s / 0.5)):
            if not await conn.fetchval("SELECT count(*) FROM log_queue"):
                break
            await asyncio.sleep(0.5)
        rows = await conn.fetch(
            """SELECT CASE WHEN label LIKE 'till-%' THEN 'http16' ELSE label END AS phase, count(*) AS count,
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS p50,
                      percentile_cont(0.99) WITHIN GROUP (ORDER BY s) AS p99, max(s) AS max
                 FROM (SELECT s.label, extract(epoch FROM l.sequenced_at - i.issued_at)::float8 AS s
                         FROM invoices i JOIN series s ON s.id = i.series_id
                         JOIN log_leaves l ON l.record_hash = i.record_hash) t
                GROUP BY ROLLUP (1) ORDER BY 1 NULLS LAST"""
        )
        for row in rows:
            print(
                f"    {row['phase'] or 'all':7} {row['count']:7} records: p50 {row['p50']:.2f} s, p99 {row['p99']:.2f} s"
            )
        return {k: float(rows[-1][k] or 0) for k in ("count", "p50", "p99", "max")}
    finally:
        await conn.close()


class _null:
    def __init__(self, value: str) -> None:
        self.value = value

    def __enter__(self) -> str:
        return self.value

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    sys.exit(main())
