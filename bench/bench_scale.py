"""Flat cost as data grows: the same measurements on the kept scale data sets (bench/scale_data.py), each size
in its own database, figures kept in that database (`scale_results`) so sizes measured on other days print
beside today's.

At each size, with uvicorn (2 workers) serving the app plus baseline routes of the same app and pool, wrk
generating the load, rounds alternating so load from elsewhere hits every case alike (medians):
- `bare`: a route touching nothing; `insert`: one INSERT+COMMIT of a stored invoice's size (bench_issue's);
- `issue16`: HTTP issue on 16 series (16 connections);
- `verify`: JSON verification of SAMPLE random stored invoices, drawn over the whole data set (so neither
  PostgreSQL's cache nor the signature cache is warm for them), 64 connections;
- `verify30`: the same, of invoices drawn from the last RECENT_DAYS days of the set: consumers verify an invoice
  when they receive it, so this is the workload a live service sees (`verify` is its worst case);
- manifest export: one operator's manifest of the last day built, as CSV, seconds (median of 5);
- the log sequencer: records/s moving what the issue load queued into the log;
- audit: records/s of the incremental audit of the last day's records (from a checkpoint of the log as it
  was before that day, signed with the log key);
- buffers: EXPLAIN (ANALYZE, BUFFERS) of the hot statements, as the app runs them (auto_explain, shared
  buffers hit + read, mean of QUERIES runs): the lock of the series heads and the one-statement insert of an
  issue (in transactions rolled back), the verification lookup. Buffers touched per query do not depend on
  the machine's load: the measure of flat cost on a shared machine.

Run: `python -m bench.bench_scale [--url URL --data-dir DIR] ...` (default: invoiceloop_scale_0 and
invoiceloop_scale); `make bench-scale` builds the data sets first (SCALE_TO records, default 1 M).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import re
import secrets
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from litestar import Response, get, post
from litestar.di import NamedDependency

from bench import load, scale_data
from invoiceloop.app import Services
from invoiceloop.metrics import shared_across_processes
from invoiceloop.settings import Settings
from invoicing import formats, merkle, numbering, repository, services, transparency, validation
from invoicing.model import DEFAULT_TAX_RATES
from verification.repository import FIND_INVOICES

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SAMPLE = int(os.environ.get("BENCH_SAMPLE", "20000"))  # invoices verified, at random over the whole set
RECENT_DAYS = 30  # `verify30` draws from the invoices of the set's last days
QUERIES = 40  # EXPLAIN runs per statement
ROW = os.environ.get("BENCH_ROW", "{}")
BENCH_ISSUER = scale_data.BENCH_ISSUER
PK_ID = uuid.UUID(os.environ.get("BENCH_INVOICE_ID", "00000000-0000-0000-0000-000000000000"))


# ---------------------------------------------------------------- baseline routes, in the same app


@get("/bench/bare")
async def bare() -> dict[str, bool]:
    """Touches nothing."""
    return {"ok": True}


@post("/bench/insert", status_code=201)
async def insert_route(services: NamedDependency[Services], data: dict[str, Any]) -> Response[bytes]:
    """One INSERT+COMMIT of a jsonb row the size of a stored invoice; answers that row."""
    async with services.pool.acquire() as conn:
        await conn.execute("INSERT INTO bench_rows (body) VALUES ($1::text::jsonb)", ROW)
    return Response(ROW.encode(), media_type="application/json", status_code=201)


def bench_app() -> Any:
    """The service with limits it cannot reach, plus the baseline routes (uvicorn factory)."""
    from invoiceloop.app import create_app

    settings = dataclasses.replace(Settings.from_env(), extra={"VERIFY_RATE_PER_WINDOW": "1000000000"})
    return create_app(settings, extra_routes=[bare, insert_route])


# ---------------------------------------------------------------- load (wrk)


def wrk(
    port: int, method: str, path: str, bodies: list[str], conns: int, key: str, seconds: float
) -> tuple[float, float, int]:
    """(req/s, p99 ms, non-2xx) from wrk."""
    return load.wrk(f"http://127.0.0.1:{port}{path}", method, bodies, conns, seconds, key)


# ---------------------------------------------------------------- preparing a data set for the run


@dataclasses.dataclass
class Prepared:
    stored: int
    issuer_key: str
    operator_key: str
    manifest_id: str
    manifest_items: int
    verify_bodies: list[str]
    recent_bodies: list[str]
    issue_bodies: list[str]
    row: str


async def prepare(url: str, settings: Settings) -> Prepared:
    """The bench's own issuer and an operator key (made per run), and SAMPLE random stored invoices' bodies."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_rows (id bigserial PRIMARY KEY, body jsonb NOT NULL)")
        # what earlier runs' verifications left (the builder writes none): every run verifies fresh invoices
        await conn.execute("TRUNCATE verifications, invoice_counts, sms_outbox, bench_rows")
        stored = await conn.fetchval("SELECT records FROM scale_build")
        from tests.conftest import valid_uscc

        _, issuer_key = await services.create_issuer(
            conn, name=f"{BENCH_ISSUER}{secrets.token_hex(3)}有限公司", tax_id=valid_uscc(), region="4401"
        )
        operator, manifest_id, items = await conn.fetchrow(
            """SELECT m.operator_id, m.id, (SELECT count(*) FROM delivery_orders d WHERE d.manifest_id = m.id)
                 FROM manifests m ORDER BY m.seq DESC LIMIT 1"""
        )
        operator_key = await repository.create_key(conn, "operator", str(operator))
        top = await conn.fetchval("SELECT max(seq) FROM invoices")
        # two disjoint draws (every verification a first one): over the whole set, and over its last days
        share = min(SAMPLE, top // 2)
        picks = random.Random(7).sample(range(1, top + 1), share)
        taken = set(picks)
        window = [seq for seq in range(max(1, top - RECENT_DAYS * scale_data.DAILY), top + 1) if seq not in taken]
        rows = await conn.fetch(PICKED, picks)
        recent = await conn.fetch(PICKED, random.Random(8).sample(window, min(share, len(window))))
    finally:
        await conn.close()
    verify, recent_bodies = _verify_bodies(settings, rows), _verify_bodies(settings, recent)
    from tests.samples import invoice_body

    issue = [json.dumps(invoice_body(series=f"till-{i}"), ensure_ascii=False) for i in range(16)]
    return Prepared(
        stored, issuer_key, operator_key, str(manifest_id), items, verify, recent_bodies, issue, rows[0]["content"]
    )


PICKED = """SELECT invoice_code, invoice_number, issue_date, total, content::text AS content FROM invoices
             WHERE seq = ANY($1::bigint[]) AND kind = 'invoice'"""


def _verify_bodies(settings: Settings, rows: list[asyncpg.Record]) -> list[str]:
    """Verification requests (code, number, date, last 6 of the check code) of these stored invoices."""
    secret = settings.secret_bytes()
    return [
        json.dumps(
            {
                "invoice_code": r["invoice_code"],
                "invoice_number": r["invoice_number"],
                "issue_date": r["issue_date"].isoformat(),
                "check_code_last6": formats.check_code(
                    secret, r["invoice_code"], r["invoice_number"], r["issue_date"], r["total"]
                )[-6:],
            }
        )
        for r in rows
    ]


# ---------------------------------------------------------------- one size


async def serve(url: str, data_dir: Path, row: str) -> tuple[asyncio.subprocess.Process, int]:
    from tests.conftest import free_port

    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": REDIS,
        "CHECK_CODE_SECRET": scale_data.SECRET,
        "INVOICELOOP_DATA_DIR": str(data_dir),
        "BENCH_ROW": row,
    }
    args = ["-m", "uvicorn", "bench.bench_scale:bench_app", "--factory", "--workers", "2", "--port", str(port)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, "--log-level", "warning", "--no-access-log", env=env
    )
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return proc, port
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the bench server did not start")


async def http_figures(port: int, prep: Prepared) -> dict[str, Any]:
    """Alternating rounds of every HTTP case; medians, and each round's rate."""
    cases = [
        ("bare", "GET", "/bench/bare", [], 16, ""),
        ("insert", "POST", "/bench/insert", prep.issue_bodies, 16, ""),
        ("issue16", "POST", "/v1/invoices", prep.issue_bodies, 16, prep.issuer_key),
        ("verify", "POST", "/v1/verifications", prep.verify_bodies, 64, ""),
        ("verify30", "POST", "/v1/verifications", prep.recent_bodies, 64, ""),
    ]
    # each round verifies invoices nobody verified before: first verifications
    fresh = {"verify": prep.verify_bodies, "verify30": prep.recent_bodies}
    share = {name: len(bodies) // (ROUNDS + 1) for name, bodies in fresh.items()}
    for name, method, path, bodies, conns, key in cases:  # warm-up: series opened, pools connected
        if name in fresh:
            bodies = fresh[name][-share[name] :]
        await asyncio.to_thread(wrk, port, method, path, bodies, conns, key, 1)
    runs: dict[str, list[tuple[float, float, int]]] = {c[0]: [] for c in cases}
    for n in range(ROUNDS):
        for name, method, path, bodies, conns, key in cases:
            if name in fresh:
                bodies = fresh[name][n * share[name] : (n + 1) * share[name]]
            runs[name].append(await asyncio.to_thread(wrk, port, method, path, bodies, conns, key, SECONDS))
    return {
        name: {
            "rate": statistics.median(r[0] for r in rs),
            "p99_ms": statistics.median(r[1] for r in rs),
            "non_2xx": sum(r[2] for r in rs),
            "rounds": [round(r[0]) for r in rs],
        }
        for name, rs in runs.items()
    }


async def manifest_export(port: int, prep: Prepared) -> dict[str, Any]:
    """Seconds to stream one operator's manifest of a day as CSV (median of 5)."""
    times = []
    async with httpx.AsyncClient(timeout=120) as client:
        for _ in range(5):
            start = time.perf_counter()
            answer = await client.get(
                f"http://127.0.0.1:{port}/v1/postal/manifests/{prep.manifest_id}?format=csv",
                headers={"Authorization": f"Bearer {prep.operator_key}"},
            )
            answer.raise_for_status()
            times.append(time.perf_counter() - start)
    lines = answer.text.count("\n") - 1
    return {"seconds": statistics.median(times), "items": lines}


async def sequence_queued(url: str, settings: Settings) -> dict[str, Any]:
    """Move what the issue load queued into the log (the sequencer's own function); records/s."""
    from invoiceloop.app import log_signer
    from invoicing import db

    pool = await db.create_pool(url, max_size=2)
    try:
        start, total = time.perf_counter(), 0
        while taken := await transparency.sequence(pool, log_signer(settings)):
            total += taken
        return {"records": total, "rate": total / max(time.perf_counter() - start, 1e-9)}
    finally:
        await pool.close()


def audit_day(url: str, settings: Settings, day_records: int) -> dict[str, Any]:
    """The incremental audit of the last `day_records` leaves, from a checkpoint of the log before them."""
    from invoiceloop.app import log_signer
    from invoiceloop.auditing import incremental_audit
    from invoicing.checkpoint import open_checkpoint
    from invoicing.note import parse_verifier_key

    signer = log_signer(settings)

    async def checkpoint_before() -> str:
        conn = await asyncpg.connect(url)
        try:
            size = (await conn.fetchval("SELECT size FROM log_head")) - day_records
            tiles = await transparency.stored_tiles(conn, merkle.tiles_for_root(size))
            return signer.sign(size, merkle.root(size, tiles))
        finally:
            await conn.close()

    key = parse_verifier_key(signer.verifier_key)
    kept = open_checkpoint(asyncio.run(checkpoint_before()), key)
    timed = incremental_audit(url, settings.keyring, kept, key)
    assert timed.report.ok, timed.report.findings[:5]
    return {"records": timed.report.records, "seconds": timed.seconds, "rate": timed.rate}


# ---------------------------------------------------------------- buffers per hot statement


def _buffer_count(line: str) -> int:
    hit, read = re.search(r"shared hit=(\d+)", line), re.search(r"shared (?:hit=\d+ )?read=(\d+)", line)
    return (int(hit[1]) if hit else 0) + (int(read[1]) if read else 0)


def _wal_bytes(line: str) -> int:
    found = re.search(r"bytes=(\d+)", line)
    return int(found[1]) if found else 0


def _total(plan: str, what: str = "Buffers:") -> int:
    """Shared buffers hit + read (or WAL bytes, `what="WAL:"`) of a whole statement: its top node's (which
    counts its tree, subplans and the CTEs it reads) plus those of the CTEs nothing reads (data-modifying ones,
    run after the main query)."""
    count = _buffer_count if what == "Buffers:" else _wal_bytes
    lines = [line for line in plan.splitlines() if line.strip() and "Planning" not in line]
    start = next((i for i, line in enumerate(lines) if "(actual" in line or "(cost=" in line), len(lines))
    top = [i for i, line in enumerate(lines[start:], start) if "(actual" in line]
    first = top[0] if top else start
    nxt = top[1] if len(top) > 1 else len(lines)
    total = next((count(x) for x in lines[first:nxt] if what in x), 0)
    for i, line in enumerate(lines):
        cte = re.match(r"\s*CTE (\w+)$", line)
        if cte and f"CTE Scan on {cte[1]}" not in plan:
            total += next((count(x) for x in lines[i + 2 : i + 4] if what in x), 0)
    return total


def _buffers(plan: str) -> int:
    return _total(plan)


AUTO_EXPLAIN = [
    "LOAD 'auto_explain'",
    "SET auto_explain.log_min_duration = 0",
    "SET auto_explain.log_analyze = on",
    "SET auto_explain.log_buffers = on",
    "SET auto_explain.log_wal = on",
    "SET auto_explain.log_timing = off",
    "SET auto_explain.log_nested_statements = on",
    "SET auto_explain.log_level = notice",
]


async def explain_figures(url: str, settings: Settings) -> dict[str, Any]:
    """Mean shared buffers touched by the issue statements (one invoice, rolled back) and the verification
    lookup (random stored invoices), and one plan of each."""
    from invoiceloop.app import load_issuing
    from tests.samples import invoice_body

    conn = await asyncpg.connect(url)
    notes: list[str] = []
    conn.add_log_listener(lambda _c, msg: notes.append(msg.message))
    try:
        issuer_row = await conn.fetchrow(
            f"SELECT * FROM issuers WHERE name LIKE '{BENCH_ISSUER}%' ORDER BY created_at DESC LIMIT 1"
        )
        issuer = repository.Issuer(
            str(issuer_row["id"]),
            issuer_row["name"],
            issuer_row["tax_id"],
            issuer_row["region"],
            issuer_row["address"],
            issuer_row["phone"],
        )
        issuing = load_issuing(settings)
        draft = numbering.draft_of(validation.invoice_request(invoice_body(series="till-0"), DEFAULT_TAX_RATES))
        for statement in AUTO_EXPLAIN:
            await conn.execute(statement)
        found: dict[str, list[int]] = {"lock_heads": [], "insert_records": [], "verify_lookup": []}
        wal: list[int] = []
        plans: dict[str, str] = {}
        for _ in range(QUERIES):
            notes.clear()
            tr = conn.transaction()
            await tr.start()
            try:
                await numbering.issue_drafts(conn, issuing, issuer, [draft])
            finally:
                await tr.rollback()
            await asyncio.sleep(0)
            for note in notes:
                name = (  # INSERT_RECORDS locks the heads too (checking them), so it is told apart first
                    "insert_records"
                    if "INSERT INTO invoices" in note
                    else "lock_heads"
                    if "FOR UPDATE" in note
                    else None
                )
                if name:
                    found[name].append(_buffers(note))
                    plans[name] = note
                if name == "insert_records":
                    wal.append(_total(note, "WAL:"))
        await conn.execute("SET auto_explain.log_min_duration = -1")
        top = await conn.fetchval("SELECT max(seq) FROM invoices")
        rng = random.Random(11)
        for _ in range(QUERIES):
            row = await conn.fetchrow(
                "SELECT invoice_code, invoice_number FROM invoices WHERE seq >= $1 ORDER BY seq LIMIT 1",
                rng.randint(1, top),
            )
            plan = "\n".join(
                r[0]
                for r in await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + FIND_INVOICES, [row[0]], [row[1]])
            )
            found["verify_lookup"].append(_buffers(plan))
            plans["verify_lookup"] = plan
        found["verify_lookup_64"] = []
        for _ in range(QUERIES // 4):  # a batch of 64 verifications, as the coalescer makes under load
            rows = await conn.fetch(
                "SELECT invoice_code, invoice_number FROM invoices WHERE seq = ANY($1::bigint[])",
                [rng.randint(1, top) for _ in range(64)],
            )
            plan = "\n".join(
                r[0]
                for r in await conn.fetch(
                    "EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + FIND_INVOICES,
                    [r[0] for r in rows],
                    [r[1] for r in rows],
                )
            )
            found["verify_lookup_64"].append(_buffers(plan))
            plans["verify_lookup_64"] = plan
    finally:
        await conn.close()
    return {
        "buffers": {k: (statistics.mean(v) if v else None) for k, v in found.items()},
        "insert_wal_bytes": statistics.mean(wal) if wal else None,
        "plans": plans,
    }


async def measure(url: str, data_dir: Path, explain_only: bool = False) -> dict[str, Any]:
    settings = scale_data.settings(url)
    settings = dataclasses.replace(settings, data_dir=data_dir)
    prep = await prepare(url, settings)
    figures: dict[str, Any] = {"stored": prep.stored, "cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
    if not explain_only:
        load.empty_redis(REDIS)
        proc, port = await serve(url, data_dir, prep.row)
        try:
            figures["http"] = await http_figures(port, prep)
            figures["manifest"] = await manifest_export(port, prep)
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 15)
        figures["sequencer"] = await sequence_queued(url, settings)
        day = round(prep.stored / max(1, await _days(url)))
        figures["audit"] = await asyncio.to_thread(audit_day, url, settings, day)
    else:
        await sequence_queued(url, settings)
    figures["explain"] = await explain_figures(url, settings)
    figures["sizes"] = await sizes(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO scale_results (stored, figures) VALUES ($1, $2::jsonb)", prep.stored, json.dumps(figures)
        )
    finally:
        await conn.close()
    return figures


async def _days(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT days_done FROM scale_build"))
    finally:
        await conn.close()


async def sizes(url: str) -> dict[str, Any]:
    """Bytes per stored record (heap, indexes, TOAST) of every table, and the build's WAL per record."""
    conn = await asyncpg.connect(url)
    try:
        records, wal = await conn.fetchrow("SELECT records, wal_bytes FROM scale_build")
        rows = await conn.fetch(
            """SELECT c.relname, pg_table_size(c.oid) AS heap, pg_indexes_size(c.oid) AS idx
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname NOT LIKE 'bench%'
                  AND c.relname NOT LIKE 'scale%' AND c.relname NOT IN ('verifications', 'invoice_counts', 'sms_outbox')
                ORDER BY 2 DESC"""
        )
        tables = {r["relname"]: {"heap": r["heap"], "indexes": r["idx"]} for r in rows}
        total = sum(t["heap"] + t["indexes"] for t in tables.values())
        return {
            "records": records,
            "tables": tables,
            "bytes_per_record": total / max(records, 1),
            "wal_per_record": float(wal) / max(records, 1),
        }
    finally:
        await conn.close()


# ---------------------------------------------------------------- report


async def stored_results(urls: list[str]) -> list[dict[str, Any]]:
    out = []
    for url in urls:
        conn = await asyncpg.connect(url)
        try:
            for r in await conn.fetch("SELECT stored, measured_at, figures::text FROM scale_results ORDER BY id"):
                out.append({"stored": r["stored"], "at": r["measured_at"], **json.loads(r["figures"])})
        finally:
            await conn.close()
    return out


def report(results: list[dict[str, Any]]) -> None:
    """One line per measurement, then the largest size against the smallest (latest of each)."""
    print(
        f"{'stored':>11} {'measured':16} {'bare/s':>7} {'insert/s':>8} {'issue16/s':>9} {'p99':>6} "
        f"{'verify/s':>8} {'p99':>6} {'v30/s':>6} {'p99':>6} {'issue/ins':>9} {'verify/bare':>11} {'manifest':>9} {'seq/s':>7} "
        f"{'audit/s':>7} {'buf lock':>8} {'buf ins':>7} {'WAL ins':>7} {'buf verify':>10} {'buf v64':>7} {'B/rec':>6} "
        f"{'WAL/rec':>7}"
    )
    for r in results:
        h, b, sz = r.get("http"), r["explain"]["buffers"], r["sizes"]
        recent = (h or {}).get("verify30", {})  # runs before it was measured have none
        line = f"{r['stored']:>11,} {r['at']:%Y-%m-%d %H:%M} "
        if h:
            line += (
                f"{h['bare']['rate']:7.0f} {h['insert']['rate']:8.0f} {h['issue16']['rate']:9.0f} "
                f"{h['issue16']['p99_ms']:6.1f} {h['verify']['rate']:8.0f} {h['verify']['p99_ms']:6.1f} "
                f"{recent.get('rate', float('nan')):6.0f} {recent.get('p99_ms', float('nan')):6.1f} "
                f"{h['issue16']['rate'] / h['insert']['rate']:9.2f} {h['verify']['rate'] / h['bare']['rate']:11.3f} "
                f"{r['manifest']['seconds']:8.2f}s {r['sequencer']['rate']:7.0f} {r['audit']['rate']:7.0f} "
            )
        else:
            line += " " * 124
        line += (
            f"{b['lock_heads'] or 0:8.1f} {b['insert_records'] or 0:7.1f} {r['explain'].get('insert_wal_bytes') or 0:7.0f} "
            f"{b['verify_lookup'] or 0:10.1f} {b.get('verify_lookup_64') or 0:7.0f} "
            f"{sz['bytes_per_record']:6.0f} {sz['wal_per_record']:7.0f}"
        )
        print(line)
    timed = [r for r in results if r.get("http")]
    if len({r["stored"] for r in timed}) >= 2:
        small = min(timed, key=lambda r: (r["stored"], -r["at"].timestamp()))
        large = max(timed, key=lambda r: (r["stored"], r["at"].timestamp()))
        s, g = small["http"], large["http"]
        print(
            f"{large['stored']:,} stored against {small['stored']:,}: issue16 {g['issue16']['rate'] / s['issue16']['rate']:.2f} "
            f"(against its insert baseline {(g['issue16']['rate'] / g['insert']['rate']) / (s['issue16']['rate'] / s['insert']['rate']):.2f}), "
            f"verify {g['verify']['rate'] / s['verify']['rate']:.2f} (against bare "
            f"{(g['verify']['rate'] / g['bare']['rate']) / (s['verify']['rate'] / s['bare']['rate']):.2f}), "
            f"verify p99 {g['verify']['p99_ms'] / s['verify']['p99_ms']:.2f}x; target: issue and verify >= 0.90"
        )
        if "verify30" in g and "verify30" in s:
            a, z = s["verify30"], g["verify30"]
            print(
                f"  verify30 (the last {RECENT_DAYS} days' invoices) {z['rate'] / a['rate']:.2f} (against bare "
                f"{(z['rate'] / g['bare']['rate']) / (a['rate'] / s['bare']['rate']):.2f}), "
                f"p99 {z['p99_ms'] / a['p99_ms']:.2f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", action="append", help="a scale database (default: the 0 and the grown one)")
    parser.add_argument("--data-dir", action="append", type=Path, help="its key folder, in the same order")
    parser.add_argument("--explain-only", action="store_true", help="only the buffers per statement (quick)")
    parser.add_argument("--report", action="store_true", help="only print the stored figures")
    args = parser.parse_args()
    base = scale_data.DB_URL
    urls = args.url or [base + "_0", base]
    dirs = args.data_dir or [Path(str(scale_data.DATA_DIR) + "-0"), scale_data.DATA_DIR]
    if not args.report:
        for url, data_dir in zip(urls, dirs, strict=True):
            print(f"measuring {url.rsplit('/', 1)[1]} ...", flush=True)
            asyncio.run(measure(url, data_dir, args.explain_only))
    report(asyncio.run(stored_results(urls)))


if __name__ == "__main__":
    # the figures of uvicorn's 2 workers kept as `invoiceloop serve --workers 2` keeps them
    with shared_across_processes(2):
        main()
