"""Issuing speed, as ratios against baselines measured in the same run, on the same app, pool and PostgreSQL.

Routes served side by side by one uvicorn setup (2 workers, the worker process sequencing the log beside them):
- `insert`: a route of the same app that does one INSERT+COMMIT of a jsonb row the size of a stored invoice;
- `gapless`: a route that does the one-statement gapless counter+insert on one series;
- `http16`: HTTP issue on 16 series (16 connections), `http1`: HTTP issue on one series;
- `batch`: the batch endpoint (1000 invoices per request, 2 connections, a series each, as two tills or two
  businesses would send them), beside `copy`: asyncpg COPY of the same rows (1000 per COPY, 2 connections) into a
  table of the invoices' shape: its indexes and foreign keys. `batch1` is the batch endpoint with both connections
  on one series, so that each batch waits while the other holds the series: what that wait costs.
Rounds alternate, so load from elsewhere hits every case alike; medians are printed with each round's figure.
Each batch round also prints the two serve workers' CPU seconds: a connection stays on the worker that accepted it,
and both land on one worker in about half the rounds, which then has one core for the Python of both batches (about
0.7 of the rate). BENCH_BATCH_CONNECTIONS=4 makes that rarer, but its intake outruns the log's sequencer on these
two cores, whose backlog then takes CPU from the cases after it (docs/issuing.md).
Then how long after its issue each record reached the public log. Loopback only; it stops by itself.

Run: `python -m bench.bench_issue` (BENCH_SECONDS, BENCH_ROUNDS, BENCH_PHONES, BENCH_BATCH_CONNECTIONS).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from litestar import Response, post
from litestar.di import NamedDependency

from bench import load
from invoiceloop.app import Services
from invoiceloop.embedded import embedded_postgres, embedded_redis, port_open
from invoiceloop.metrics import shared_across_processes
from invoiceloop.settings import Settings
from invoicing import db
from tests.conftest import free_port, new_issuer
from tests.delivery_fixtures import WorkerProcess
from tests.samples import invoice_body

CONCURRENCY = 16
SECONDS = float(os.environ.get("BENCH_SECONDS", "6"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BATCH = 1000
BATCH_CONNECTIONS = int(os.environ.get("BENCH_BATCH_CONNECTIONS", "2"))  # of the batch cases and the COPY beside them
# Whether the bench's buyers give a phone. With one, each record also writes the buyer's text (in the issue's
# statement) and the worker sends it (ConsoleSms here), on the same two cores as the server and PostgreSQL.
PHONES = os.environ.get("BENCH_PHONES", "1") == "1"


def bench_body(series: str) -> dict[str, Any]:
    """The sample invoice on `series`, its buyer with or without a phone (`BENCH_PHONES`)."""
    body = invoice_body(series=series)
    if not PHONES:
        body["buyer"]["phone"] = None
    return body


ROW = os.environ.get("BENCH_ROW", "{}")  # a stored invoice's content, the size the baselines write

# ---------------------------------------------------------------- the baseline routes, in the same app


@post("/bench/insert", status_code=201)
async def insert_route(services: NamedDependency[Services], data: dict[str, Any]) -> Response[bytes]:
    """One INSERT+COMMIT of a jsonb row the size of a stored invoice; answers that row."""
    async with services.pool.acquire() as conn:
        await conn.execute("INSERT INTO bench_rows (body) VALUES ($1::text::jsonb)", ROW)
    return Response(ROW.encode(), media_type="application/json", status_code=201)


@post("/bench/gapless", status_code=201)
async def gapless_route(services: NamedDependency[Services], data: dict[str, Any]) -> Response[bytes]:
    """The one-statement gapless counter+insert on one series; answers the row."""
    async with services.pool.acquire() as conn:
        await conn.execute(
            """WITH c AS (UPDATE bench_counter SET n = n + 1 WHERE id = 1 RETURNING n)
               INSERT INTO bench_numbered SELECT n, $1::text::jsonb FROM c""",
            ROW,
        )
    return Response(ROW.encode(), media_type="application/json", status_code=201)


def bench_app() -> Any:
    """The service (every route) plus the baseline routes (uvicorn factory)."""
    from invoiceloop.app import create_app

    return create_app(Settings.from_env(), extra_routes=[insert_route, gapless_route])


BASELINE_TABLES = """
CREATE TABLE bench_rows (id bigserial PRIMARY KEY, body jsonb NOT NULL);
CREATE TABLE bench_counter (id int PRIMARY KEY, n int NOT NULL);
CREATE TABLE bench_numbered (n int PRIMARY KEY, body jsonb NOT NULL);
INSERT INTO bench_counter VALUES (1, 0);
CREATE TABLE bench_copy (LIKE invoices INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
ALTER TABLE bench_copy ADD FOREIGN KEY (issuer_id) REFERENCES issuers (id),
                       ADD FOREIGN KEY (series_id) REFERENCES series (id),
                       ADD FOREIGN KEY (original_invoice_id) REFERENCES invoices (id);
"""

# ---------------------------------------------------------------- load


def wrk(
    base_url: str,
    key: str,
    path: str,
    bodies: list[dict[str, Any]],
    connections: int,
    seconds: float,
    per_thread: bool = False,
) -> tuple[float, float, int]:
    """(requests/s, p99 ms, non-2xx count) of POSTs of `bodies` to `path` as the key's issuer (with `per_thread`,
    each connection sends its own body)."""
    lines = [json.dumps(b, ensure_ascii=False) for b in bodies]
    return load.wrk(base_url + path, "POST", lines, connections, seconds, key, per_thread)


class CopyRows:
    """Rows of the invoices' shape, each with its own id, number and hash, 1000 per COPY into `bench_copy`."""

    COLUMNS = (
        "id issuer_id series_id chain_seq kind invoice_code invoice_number issue_date issued_at status total_amount "
        "total_tax total delivery_method content record_hash prev_hash signature key_id"
    ).split()

    def __init__(self, sample: asyncpg.Record) -> None:
        self.sample = [sample[c] for c in self.COLUMNS]
        self.count = 0

    def next_batch(self) -> list[tuple[Any, ...]]:
        rows = []
        for _ in range(BATCH):
            self.count += 1
            row = list(self.sample)
            row[0], row[3] = uuid.UUID(int=self.count), 10**9 + self.count
            row[6], row[15] = f"{self.count:08d}", f"{self.count:064x}"
            rows.append(tuple(row))
        return rows


async def copy_rate(url: str, rows: CopyRows, seconds: float) -> tuple[float, float, int]:
    """Rows/s of BATCH_CONNECTIONS connections each COPYing 1000 rows at a time (the rows are made before the clock
    starts)."""
    conns = [await asyncpg.connect(url) for _ in range(BATCH_CONNECTIONS)]
    batches = [rows.next_batch() for _ in range(int(seconds * 60) + 10)]  # more than the connections can copy
    done = 0
    stop = time.perf_counter() + seconds

    async def loop(conn: asyncpg.Connection) -> None:
        nonlocal done
        while time.perf_counter() < stop and batches:
            await conn.copy_records_to_table("bench_copy", records=batches.pop(), columns=CopyRows.COLUMNS)
            done += BATCH

    start = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in conns))
    rate = done / (time.perf_counter() - start)
    for c in conns:
        await c.close()
    return rate, float("nan"), 0


def workers_cpu(server_pid: int) -> dict[int, float]:
    """CPU seconds used so far by each process under uvicorn's supervisor (its serve workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds: dict[int, float] = {}
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            seconds[int(child)] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return seconds


# Per batch case, per round: the serve workers' CPU seconds, busiest first. wrk's connections are accepted by
# whichever worker is waiting in accept(): when one worker takes them all, the batches' Python runs on one core.
BATCH_SPLITS: dict[str, list[list[float]]] = {"batch": [], "batch1": []}


async def measure(
    base_url: str, key: str, url: str, rows: CopyRows, server_pid: int
) -> dict[str, list[tuple[float, float, int]]]:
    """Every case, ROUNDS alternating rounds: {case: [(per second, p99 ms, non-2xx), ...]}."""
    many = [bench_body(f"till-{i}") for i in range(CONCURRENCY)]
    one = [bench_body("one")]
    apart = [{"invoices": [bench_body(f"batch-{c}") for _ in range(BATCH)]} for c in range(BATCH_CONNECTIONS)]
    together = [{"invoices": [bench_body("batch1") for _ in range(BATCH)]}]
    # (name, path, bodies, connections, each connection its own body)
    cases: list[tuple[str, str, list[dict[str, Any]], int, bool]] = [
        ("insert", "/bench/insert", many, CONCURRENCY, False),
        ("http16", "/v1/invoices", many, CONCURRENCY, False),
        ("gapless", "/bench/gapless", one, CONCURRENCY, False),
        ("http1", "/v1/invoices", one, CONCURRENCY, False),
        ("batch", "/v1/invoices/batch", apart, BATCH_CONNECTIONS, True),
        ("batch1", "/v1/invoices/batch", together, BATCH_CONNECTIONS, False),
        ("copy", "", [], BATCH_CONNECTIONS, False),
    ]
    for _, path, bodies, conns, own in cases:  # warm up: series opened, caches filled, pools connected
        if path:
            await asyncio.to_thread(wrk, base_url, key, path, bodies, conns, 1, own)
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name, *_ in cases}
    for _ in range(ROUNDS):
        for name, path, bodies, conns, own in cases:
            if not path:
                results[name].append(await copy_rate(url, rows, SECONDS))
                continue
            before = workers_cpu(server_pid)
            async with sessions(url, name):
                rate, p99, bad = await asyncio.to_thread(wrk, base_url, key, path, bodies, conns, SECONDS, own)
            if name in BATCH_SPLITS:
                used = [cpu - before.get(pid, 0.0) for pid, cpu in workers_cpu(server_pid).items()]
                BATCH_SPLITS[name].append(sorted(used, reverse=True)[:2])  # the two serve workers
            results[name].append((rate * (BATCH if name in BATCH_SPLITS else 1), p99, bad))
    return results


SESSIONS: dict[str, Counter[str]] = {}  # case: what the app's PostgreSQL sessions were doing, sampled


@asynccontextmanager
async def sessions(url: str, case: str) -> AsyncIterator[None]:
    """Sample, every 50 ms while the block runs, what the busy sessions of the bench database are doing: running,
    waiting for a lock, or idle in a transaction (holding its locks while the app works or waits its turn)."""
    conn = await asyncpg.connect(url)
    seen = SESSIONS.setdefault(case, Counter())
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            for row in await conn.fetch(
                """SELECT CASE WHEN state LIKE 'idle in transaction%' THEN 'idle in transaction'
                               WHEN wait_event_type = 'Lock' THEN 'waiting for a lock' ELSE 'running' END AS doing
                     FROM pg_stat_activity
                    WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'"""
            ):
                seen[row["doing"]] += 1
            await asyncio.sleep(0.05)

    task = asyncio.create_task(sample())
    try:
        yield
    finally:
        done.set()
        await task
        await conn.close()


def report(results: dict[str, list[tuple[float, float, int]]]) -> None:
    median = {
        name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        for name, runs in results.items()
    }
    print(
        f"issuing: {ROUNDS} alternating rounds of {SECONDS:.0f} s per case, medians; 2 uvicorn workers, the worker "
        f"sequencing the log, PostgreSQL and wrk all on this machine's {os.cpu_count()} cores"
    )
    for name, runs in results.items():
        rate, p99 = median[name]
        each = " ".join(f"{r[0]:.0f}" for r in runs)
        bad = sum(r[2] for r in runs)
        unit = "rows/s" if name in BATCH_SPLITS or name == "copy" else "req/s "
        print(f"  {name:8} {rate:9.0f} {unit}  p99 {p99:7.1f} ms  non-2xx {bad:3}   (rounds: {each})")

    def ratio(a: str, b: str) -> float:
        return median[a][0] / median[b][0]

    print("  PostgreSQL sessions of the issue cases, sampled every 50 ms (locks held while idle in transaction):")
    for name in ("http16", "http1", "batch", "batch1"):
        seen = SESSIONS.get(name, Counter())
        total = sum(seen.values()) or 1
        print(f"    {name:7} " + ", ".join(f"{doing} {100 * seen[doing] / total:.0f} %" for doing in sorted(seen)))
    print("  serve workers' CPU seconds in each batch round (one near 0: every connection on one worker):")
    for name, rounds in BATCH_SPLITS.items():
        print(f"    {name:7} " + ", ".join(" / ".join(f"{s:.1f}" for s in split) for split in rounds))
    print(
        f"  http16 / insert  = {ratio('http16', 'insert'):.2f} (target >= 0.6), p99 http16 / insert = "
        f"{median['http16'][1] / median['insert'][1]:.2f} (target <= 1.5)\n"
        f"  http1 / gapless  = {ratio('http1', 'gapless'):.2f} (target >= 0.6)\n"
        f"  batch / copy     = {ratio('batch', 'copy'):.2f} (target >= 0.3; batch1 / copy = "
        f"{ratio('batch1', 'copy'):.2f}, both batches on one series)"
    )


async def log_latency(url: str, drain_s: float = 60.0) -> None:
    """How long after its issue each record of the run reached the public log (the worker's sequencer ran
    beside the load, and still runs): waits for the queue to drain, then p50, p99 and max of sequenced_at -
    issued_at. Records still queued after `drain_s` are said, not left out silently."""
    conn = await asyncpg.connect(url)
    try:
        for _ in range(int(drain_s / 0.5)):
            if not (queued := await conn.fetchval("SELECT count(*) FROM log_queue")):
                break
            await asyncio.sleep(0.5)
        if queued:
            print(f"  {queued} records still queued for the log after {drain_s:.0f} s: not in the figures below")
        rows = await conn.fetch(
            """SELECT CASE WHEN label LIKE 'till-%' THEN 'http16' WHEN label LIKE 'batch-%' THEN 'batch' ELSE label END
                      AS phase, count(*) AS count,
                      percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS p50,
                      percentile_cont(0.99) WITHIN GROUP (ORDER BY s) AS p99, max(s) AS max
                 FROM (SELECT s.label, extract(epoch FROM l.sequenced_at - i.issued_at)::float8 AS s
                         FROM invoices i JOIN series s ON s.id = i.series_id
                         JOIN log_leaves l ON l.record_hash = i.record_hash) t
                GROUP BY ROLLUP (1) ORDER BY 1 NULLS LAST"""
        )
        print("  into the public log after issue (target p99 <= 2 s):")
        for row in rows:
            print(
                f"    {row['phase'] or 'all':7} {row['count']:7} records: p50 {row['p50']:.2f} s, "
                f"p99 {row['p99']:.2f} s, max {row['max']:.2f} s"
            )
    finally:
        await conn.close()


# ---------------------------------------------------------------- set-up


def main() -> None:
    """A throwaway database on the local PostgreSQL (an embedded one when none runs), measured, dropped."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        with _postgres(data) as server_url, _redis(data) as redis_url:
            settings = Settings(
                database_url=server_url.rsplit("/", 1)[0] + f"/invoiceloop_bench_{secrets.token_hex(3)}",
                redis_url=redis_url,
                data_dir=data,
                check_code_secret="bench",
            )
            asyncio.run(_with_db(settings, server_url))


@contextmanager
def _postgres(data: Path) -> Iterator[str]:
    if port_open("127.0.0.1", 5432):
        yield "postgresql://postgres@127.0.0.1:5432/postgres"
    else:
        with embedded_postgres(data / "pg") as url:
            yield url


@contextmanager
def _redis(data: Path) -> Iterator[str]:
    if port_open("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/14"
    else:
        with embedded_redis(data / "redis") as url:
            yield url


async def _with_db(settings: Settings, server_url: str) -> None:
    url = settings.database_url or ""
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        await db.migrate_url(url)
        conn = await asyncpg.connect(url)
        await conn.execute(BASELINE_TABLES)
        await conn.close()
        pool = await db.create_pool(url)
        _, key = await new_issuer(pool)
        await pool.close()
        load.empty_redis(settings.redis_url or "")
        server, worker = await _start(settings, key)
        try:
            try:
                rows = await _sample(url)
                results = await measure(server[1], key, url, rows, server[0].pid)
            finally:
                server[0].terminate()
                await asyncio.wait_for(server[0].wait(), 15)
            report(results)
            await log_latency(url)  # the worker's sequencer, still running, logs what the load left queued
        finally:
            worker.stop()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _start(settings: Settings, key: str) -> tuple[tuple[asyncio.subprocess.Process, str], WorkerProcess]:
    """The bench app under uvicorn (2 workers) and the worker; one invoice issued first gives the row size."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "CHECK_CODE_SECRET": "bench",
        "INVOICELOOP_DATA_DIR": str(settings.data_dir),
    }
    worker = WorkerProcess(settings, Path(tempfile.gettempdir()) / "bench-worker.log")
    row = await _first_row(env, key)
    port = free_port()
    args = ["-m", "uvicorn", "bench.bench_issue:bench_app", "--factory", "--workers", "2", "--port", str(port)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, "--log-level", "warning", "--no-access-log", env={**env, "BENCH_ROW": row}
    )
    base_url = f"http://127.0.0.1:{port}"
    await _wait(base_url)
    return (proc, base_url), worker


async def _first_row(env: dict[str, str], key: str) -> str:
    """Issue one invoice through a short-lived server and read back its stored content (the baselines' row)."""
    port = free_port()
    args = ["-m", "uvicorn", "bench.bench_issue:bench_app", "--factory", "--port", str(port), "--log-level", "warning"]
    proc = await asyncio.create_subprocess_exec(sys.executable, *args, env=env)
    try:
        base_url = f"http://127.0.0.1:{port}"
        await _wait(base_url)
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                base_url + "/v1/invoices",
                json=invoice_body(series="sample"),
                headers={"Authorization": f"Bearer {key}"},
            )
            answer.raise_for_status()
    finally:
        proc.terminate()
        await proc.wait()
    conn = await asyncpg.connect(env["DATABASE_URL"])
    try:
        return str(
            await conn.fetchval("SELECT content::text FROM invoices WHERE id = $1", uuid.UUID(answer.json()["id"]))
        )
    finally:
        await conn.close()


async def _sample(url: str) -> CopyRows:
    conn = await asyncpg.connect(url)
    try:
        return CopyRows(await conn.fetchrow("SELECT * FROM invoices ORDER BY seq LIMIT 1"))
    finally:
        await conn.close()


async def _wait(base_url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(base_url + "/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the bench server did not start")


if __name__ == "__main__":
    # the figures of uvicorn's 2 workers kept as `invoiceloop serve --workers 2` keeps them
    with shared_across_processes(2):
        main()
