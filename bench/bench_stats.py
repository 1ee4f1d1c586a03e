"""The closed-loop figures at scale: `/v1/stats/public`, `/stats` and an issuer's `/v1/stats?by=province` beside a
bare route of the same app, on a small database and on a scale database (bench/scale_data.py), as ratios.

Each database is served by the same uvicorn setup (2 workers) twice: with PUBLIC_STATS_TTL_S=0, so every request
reads the rollup (the worst case: no answer kept between requests), and with the default 60 s (`*_kept`). The scale data is written by COPY, around the
issuing path, so the rollup is refilled from the invoices first (`rollup_repository.rebuild`, which the migration
also does) and its build time is printed. Then the scan that figures used to be (every invoice, joined) is timed
once on each database, for comparison. Load: wrk, 16 connections for SECONDS, ROUNDS rounds alternating the
routes. Only 127.0.0.1.

Run: `python -m bench.bench_stats --url SMALL_URL --url BIG_URL` (BENCH_SECONDS, BENCH_ROUNDS).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any

import httpx
from litestar import get

from bench.bench_scale import wrk
from invoiceloop.metrics import shared_across_processes
from invoicing import db, rollup_repository
from tests.conftest import free_port, new_issuer

CONNECTIONS = 16
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))

# The figures as they were computed before the rollup: every invoice, with its counts and delivery order.
OLD_SCAN = """
SELECT to_char(i.issue_date, 'YYYY-MM') AS month, count(*) FILTER (WHERE i.kind = 'invoice'),
       coalesce(sum(i.total) FILTER (WHERE i.kind = 'invoice' AND i.status <> 'voided'), 0),
       count(*) FILTER (WHERE i.kind = 'invoice' AND i.status <> 'voided' AND k.times_verified > 0),
       count(d.id) FILTER (WHERE d.status = 'delivered')
  FROM invoices i LEFT JOIN delivery_orders d ON d.invoice_id = i.id LEFT JOIN invoice_counts k ON k.invoice_id = i.id
 GROUP BY 1"""


@get("/bench/bare")
async def bare() -> dict[str, bool]:
    """Touches nothing."""
    return {"ok": True}


def bench_app() -> Any:
    """The service with the bare route."""
    from invoiceloop.app import create_app
    from invoiceloop.settings import Settings

    return create_app(Settings.from_env(), extra_routes=[bare])


async def _load(port: int, path: str, key: str) -> tuple[float, float]:
    """(requests/s, p99 ms) of GET `path` from wrk at CONNECTIONS connections; a non-2xx answer fails the run."""
    rate, p99, bad = await asyncio.to_thread(wrk, port, "GET", path, [], CONNECTIONS, key, SECONDS)
    if bad:
        raise RuntimeError(f"{bad} answers of {path} were not 2xx")
    return rate, p99


async def _prepare(url: str) -> tuple[str, int, float, float]:
    """Migrate, refill the rollup, make a bench issuer in the busiest province; (its key, invoices, rebuild s,
    old scan s)."""
    await db.migrate_url(url)
    pool = await db.create_pool(url)
    try:
        async with pool.acquire() as conn:
            began = time.perf_counter()
            await rollup_repository.rebuild(conn)
            rebuilt = time.perf_counter() - began
            await conn.execute("ANALYZE loop_rollups")
            invoices = await conn.fetchval("SELECT coalesce(sum(issued + credit_notes), 0) FROM loop_rollups")
            region = await conn.fetchval("SELECT region FROM issuers GROUP BY region ORDER BY count(*) DESC LIMIT 1")
            began = time.perf_counter()
            await conn.fetch(OLD_SCAN)
            scanned = time.perf_counter() - began
        _, key = await new_issuer(pool, region or "4401")
        return key, int(invoices), rebuilt, scanned
    finally:
        await pool.close()


async def _serve(url: str, ttl_s: str) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "PUBLIC_STATS_TTL_S": ttl_s, "CHECK_CODE_SECRET": "bench"}
    env.pop("REDIS_URL", None)
    args = ["-m", "uvicorn", "bench.bench_stats:bench_app", "--factory", "--workers", "2", "--port", str(port)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, "--log-level", "warning", "--no-access-log", env=env
    )
    base_url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(base_url + "/healthz")).status_code == 200:
                    return proc, port
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the bench server did not start")


async def measure(url: str) -> dict[str, Any]:
    """Each route's median requests/s and p99 over ROUNDS alternating rounds, with the set-up figures."""
    key, invoices, rebuilt, scanned = await _prepare(url)
    routes = {
        "bare": ("/bench/bare", ""),
        "public_json": ("/v1/stats/public", ""),
        "page": ("/stats", ""),
        "issuer_split": ("/v1/stats?by=province", key),
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in [*routes, "json_kept", "page_kept"]}
    fresh, kept = await _serve(url, "0"), await _serve(url, "60")  # every request reads; the deployed default
    try:
        for _ in range(ROUNDS):
            for name, (path, bearer) in routes.items():
                runs[name].append(await _load(fresh[1], path, bearer))
            runs["json_kept"].append(await _load(kept[1], "/v1/stats/public", ""))
            runs["page_kept"].append(await _load(kept[1], "/stats", ""))
    finally:
        for proc, _ in (fresh, kept):
            proc.terminate()
            await proc.wait()
    rates = {name: statistics.median(r for r, _ in got) for name, got in runs.items()}
    p99s = {name: statistics.median(p for _, p in got) for name, got in runs.items()}
    return {"invoices": invoices, "rebuild_s": rebuilt, "old_scan_s": scanned, "rate": rates, "p99_ms": p99s}


def report(results: list[dict[str, Any]]) -> None:
    print(f"{'invoices':>10} {'rebuild s':>9} {'scan s':>7} " + " ".join(f"{n + '/s':>15}" for n in results[0]["rate"]))
    for r in results:
        cells = [f"{r['rate'][n]:8.0f} ({r['rate'][n] / r['rate']['bare']:.2f})" for n in r["rate"]]
        print(
            f"{r['invoices']:>10} {r['rebuild_s']:9.2f} {r['old_scan_s']:7.2f} " + " ".join(f"{c:>15}" for c in cells)
        )
    print(
        "p99 ms: "
        + "; ".join(f"{r['invoices']}: " + ", ".join(f"{n} {v:.1f}" for n, v in r["p99_ms"].items()) for r in results)
    )
    if len(results) == 2:
        small, big = results
        ratios = {
            n: (big["rate"][n] / big["rate"]["bare"]) / (small["rate"][n] / small["rate"]["bare"])
            for n in small["rate"]
        }
        print("big/small, each against its bare route: " + ", ".join(f"{n} {v:.2f}" for n, v in ratios.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", action="append", required=True, help="a database: the small one, then the big one")
    args = parser.parse_args()

    async def run() -> list[dict[str, Any]]:
        return [await measure(url) for url in args.url]

    report(asyncio.run(run()))


if __name__ == "__main__":
    # the figures of uvicorn's 2 workers kept as `invoiceloop serve --workers 2` keeps them
    with shared_across_processes(2):
        main()
