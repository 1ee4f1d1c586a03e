"""Benchmark: JSON verifications per second and p99 at 64 connections, beside a bare route doing one
primary-key SELECT on the same pool and a bare route touching nothing, all served by the same uvicorn
setup (2 workers) in the same run; `verify_1st` is the same route on a second server that checks every
signature (the first verification of an invoice; `verify` repeats 300 invoices, whose good signatures are
remembered). Only 127.0.0.1; bounded in time (~80 s in all).

Run: `python -m bench.bench_verify` (DATABASE_URL/REDIS_URL default to the local servers; a throwaway
database is created and dropped).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from litestar import get
from litestar.di import NamedDependency

from bench import load
from invoiceloop.app import Services
from invoiceloop.metrics import shared_across_processes
from invoiceloop.settings import Settings
from invoicing import db, numbering, services, transparency

SERVER_PG = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
CONNECTIONS, SECONDS, WARMUP_S, INVOICES, ROUNDS = 64, 5.0, 1.5, 300, 3  # wrk warms up with a run of its own
DATA_DIR = Path("test-output/bench-data")
BENCH_INVOICE_ID = uuid.UUID(os.environ.get("BENCH_INVOICE_ID", "00000000-0000-0000-0000-000000000000"))


@get("/bench/bare")
async def bare() -> dict[str, bool]:
    """Touches nothing."""
    return {"ok": True}


@get("/bench/select")
async def select_one(services: NamedDependency[Services]) -> dict[str, Any]:
    """One primary-key SELECT on the app's pool."""
    async with services.pool.acquire() as conn:
        row = await conn.fetchval("SELECT status FROM invoices WHERE id = $1", BENCH_INVOICE_ID)
    return {"n": row}


def bench_app() -> Any:
    """The service (every route, limits on with a ceiling the bench cannot reach) plus the bare routes; with
    BENCH_SIGNATURE_CACHE=off the verifier checks every signature, as for an invoice's first verification."""
    settings = dataclasses.replace(Settings.from_env(), extra={"VERIFY_RATE_PER_WINDOW": "1000000000"})
    if os.environ.get("BENCH_SIGNATURE_CACHE") == "off":
        settings = dataclasses.replace(settings, signatures_kept=0)
    from invoiceloop.app import create_app

    return create_app(settings, extra_routes=[bare, select_one])


async def _load(port: int, make: Any) -> tuple[float, list[float], int]:
    """64 keep-alive connections sending requests for SECONDS after WARMUP_S; (req/s, latencies, errors)."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, stop_at = start + WARMUP_S, start + WARMUP_S + SECONDS

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (now := time.perf_counter()) < stop_at:
            writer.write(make())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            if now >= measure_from:
                latencies.append(time.perf_counter() - now)
                errors += not head.startswith(b"HTTP/1.1 200")
        writer.close()

    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return len(latencies) / SECONDS, latencies, errors


def _wrk(port: int, method: str, path: str, bodies: list[bytes], seconds: float = SECONDS) -> tuple[float, float, int]:
    """(req/s, p99 ms, non-2xx) from `wrk`."""
    return load.wrk(f"http://127.0.0.1:{port}{path}", method, bodies, CONNECTIONS, seconds)


def _maker(method: str, path: str, bodies: list[bytes]) -> Any:
    """A function giving the next raw request (rotating bodies and client addresses)."""
    counter = iter(range(10**9))

    def make() -> bytes:
        n = next(counter)
        return _request(
            method, path, bodies[n % len(bodies)] if bodies else b"", f"10.0.{n % 250}.{n // 250 % 250 + 1}"
        )

    return make


def _request(method: str, path: str, body: bytes = b"", address: str = "127.0.0.1") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: {address}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _prepare(url: str) -> tuple[list[bytes], str]:
    """A migrated database with one issuer and INVOICES invoices; the verification bodies."""
    from invoiceloop.app import load_issuing, log_signer
    from invoicing.validation import invoice_request
    from tests.conftest import valid_uscc

    await db.migrate_url(url)
    pool = await db.create_pool(url, max_size=4)
    settings = Settings(database_url=url, check_code_secret="bench-secret", data_dir=DATA_DIR)
    issuing = load_issuing(settings)
    line = {"description": "办公椅", "unit": "把", "quantity": "2", "unit_price": "100.00", "tax_rate": "0.13"}
    request = invoice_request(
        {"buyer": {"name": "张三", "phone": "+8613800138000"}, "lines": [line]}, settings.tax_rates
    )
    async with pool.acquire() as conn:
        issuer, _ = await services.create_issuer(conn, name="基准测试有限公司", tax_id=valid_uscc(), region="4401")
        issued = await services.issue(conn, issuing, issuer, [numbering.draft_of(request)] * INVOICES)
    while await transparency.sequence(pool, log_signer(settings)):  # in the log: answers carry their proofs
        pass
    await pool.close()
    bodies = [
        json.dumps(
            {
                "invoice_code": i.invoice_code,
                "invoice_number": i.invoice_number,
                "issue_date": i.issue_date.isoformat(),
                "check_code_last6": i.check_code[-6:],
            }
        ).encode()
        for i in issued.invoices
    ]
    return bodies, issued.invoices[0].id


def _p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[int(len(ordered) * 0.99)] * 1000 if ordered else float("nan")


async def _run(url: str) -> dict[str, list[tuple[float, float, int]]]:
    load.empty_redis(REDIS)
    bodies, invoice_id = await _prepare(url)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": REDIS,
        "CHECK_CODE_SECRET": "bench-secret",
        "INVOICELOOP_DATA_DIR": str(DATA_DIR),
        "BENCH_INVOICE_ID": invoice_id,
    }
    port, uncached = random.sample(range(20000, 40000), 2)  # the second server checks every signature
    servers = [await _serve(port, env), await _serve(uncached, {**env, "BENCH_SIGNATURE_CACHE": "off"})]
    try:
        await _wait(port)
        await _wait(uncached)
        cases = [
            ("bare", "GET", "/bench/bare", [], port),
            ("pk_select", "GET", "/bench/select", [], port),
            ("verify", "POST", "/v1/verifications", bodies, port),
            ("verify_1st", "POST", "/v1/verifications", bodies, uncached),
            ("proof", "GET", f"/v1/log/proof/inclusion?leaf_index={INVOICES // 3}&tree_size={INVOICES}", [], port),
        ]
        rounds: dict[str, list[tuple[float, float, int]]] = {name: [] for name, *_ in cases}
        for round_ in range(ROUNDS):  # alternating, so that load from elsewhere hits every route alike
            for name, method, path, payloads, at in cases:
                if shutil.which("wrk"):
                    if round_ == 0:
                        await asyncio.to_thread(_wrk, at, method, path, payloads, 2)  # warm-up run, discarded
                    rounds[name].append(await asyncio.to_thread(_wrk, at, method, path, payloads))
                else:  # a Python load loop (it takes a good part of the CPU itself)
                    rate, latencies, errors = await _load(at, _maker(method, path, payloads))
                    rounds[name].append((rate, _p99(latencies), errors))
        return rounds
    finally:
        for server in servers:
            server.terminate()
            await asyncio.wait_for(server.wait(), 15)


async def _serve(port: int, env: dict[str, str]) -> asyncio.subprocess.Process:
    """`uvicorn` with 2 workers serving `bench_app` on `port`."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "bench.bench_verify:bench_app",
        "--factory",
        "--workers",
        "2",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        env=env,
    )


async def _wait(port: int) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(150):
            try:
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    raise RuntimeError("the bench server did not start")


async def main() -> None:
    """Create a throwaway database, measure the three routes, print the figures and ratios, drop it."""
    name = f"invoiceloop_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(SERVER_PG)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        results = await _run(SERVER_PG.rsplit("/", 1)[0] + "/" + name)
    finally:
        conn = await asyncpg.connect(SERVER_PG)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
    load = "wrk" if shutil.which("wrk") else "python"
    print(
        f"{CONNECTIONS} connections, uvicorn 2 workers, load from {load}; {ROUNDS} alternating rounds of "
        f"{SECONDS:.0f} s per route, medians"
    )
    medians = {
        name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), sum(r[2] for r in runs))
        for name, runs in results.items()
    }
    for name, (rate, p99, errors) in medians.items():
        each = " ".join(f"{r[0]:.0f}" for r in results[name])
        print(f"  {name:10} {rate:9.0f} req/s   p99 {p99:7.1f} ms   non-200: {errors}   (rounds: {each})")
    verify, select, first = medians["verify"], medians["pk_select"], medians["verify_1st"]
    print(
        f"  verify / pk_select = {verify[0] / select[0]:.2f} (target >= 0.6), p99 verify / pk_select = "
        f"{verify[1] / select[1]:.2f} (target <= 1.5); verify / bare = {verify[0] / medians['bare'][0]:.2f}\n"
        f"  verify_1st (every signature checked, as for an invoice's first verification) / pk_select = "
        f"{first[0] / select[0]:.2f}, p99 {first[1] / select[1]:.2f}\n"
        f"  proof (an inclusion proof computed per request from cached tiles) / verify = "
        f"{medians['proof'][0] / verify[0]:.2f}"
    )


if __name__ == "__main__":
    # the figures of uvicorn's 2 workers kept as `invoiceloop serve --workers 2` keeps them
    with shared_across_processes(2):
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        asyncio.run(main())
