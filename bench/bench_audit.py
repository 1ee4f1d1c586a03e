"""The audit's speed: records/s of the full audit with one process and with one per core, beside the rate at which
the same rows are merely read back (the baseline, measured in the same run), and how long the incremental audit
takes for a day's records added after a checkpoint. Builds its own data (BENCH_AUDIT_RECORDS, default 60,000
invoices over many series and issuers) in a throwaway database. Run: `python -m bench.bench_audit`."""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from pathlib import Path

import asyncpg

from invoiceloop.app import load_issuing, log_signer
from invoiceloop.auditing import default_processes, full_audit, incremental_audit
from invoiceloop.settings import Settings
from invoicing import db, keyring, numbering, services, transparency, validation
from invoicing.checkpoint import open_checkpoint
from invoicing.model import DEFAULT_TAX_RATES
from invoicing.note import parse_verifier_key
from tests.conftest import new_issuer, scratch_database
from tests.samples import invoice_body

SERVER = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RECORDS = int(os.environ.get("BENCH_AUDIT_RECORDS", "60000"))
DAY = int(os.environ.get("BENCH_AUDIT_DAY", "10000"))  # records "of a day" for the incremental audit


async def fill(settings: Settings, count: int) -> None:
    """`count` invoices in batches of 1000 across 10 issuers and 5 series each, then all of them in the log."""
    issuing = load_issuing(settings)
    pool = await db.create_pool(settings.require_database_url(), max_size=4)
    try:
        issuers = [(await new_issuer(pool))[0] for _ in range(10)]
        for n in range(0, count, 1000):
            body = invoice_body(lines=1 + n % 5, series=f"till-{n // 1000 % 5}")
            draft = numbering.draft_of(validation.invoice_request(body, DEFAULT_TAX_RATES))
            async with pool.acquire() as conn:
                await services.issue(conn, issuing, issuers[n // 1000 % 10], [draft] * min(1000, count - n))
        while await transparency.sequence(pool, log_signer(settings), 5000):
            pass
    finally:
        await pool.close()


async def read_rate(url: str) -> float:
    """Rows/s of reading back every chain record's stored content (what the audit must at least do)."""
    conn = await db.connect(url)
    try:
        start, rows = time.perf_counter(), 0
        async with conn.transaction():
            async for _ in conn.cursor("SELECT content, record_hash, signature FROM invoices", prefetch=2000):
                rows += 1
        return rows / (time.perf_counter() - start)
    finally:
        await conn.close()


def run(settings: Settings) -> None:
    url = settings.require_database_url()
    asyncio.run(fill(settings, RECORDS))
    keyring_dir = settings.keyring
    base = asyncio.run(read_rate(url))
    one = full_audit(url, keyring_dir, None, None, 1)
    many = full_audit(url, keyring_dir, None, None, default_processes())
    note = asyncio.run(_checkpoint(url))
    key = parse_verifier_key(log_signer(settings).verifier_key)
    asyncio.run(fill(settings, DAY))
    since = incremental_audit(url, keyring_dir, open_checkpoint(note, key), key)
    assert one.report.ok and many.report.ok and since.report.ok, (one.report.findings, since.report.findings)
    print(f"audit of {one.report.records} records, baseline: reading them back {base:,.0f} rows/s")
    print(f"  full audit, 1 process      {one.rate:9,.0f} records/s   ratio {one.rate / base:.2f} of reading")
    print(
        f"  full audit, {many.processes} processes    {many.rate:9,.0f} records/s   ratio {many.rate / base:.2f} "
        f"of reading, {many.rate / one.rate:.2f}x one process"
    )
    print(
        f"  incremental audit of {since.report.records} records added since a checkpoint: {since.seconds:.1f} s "
        f"({since.rate:,.0f} records/s)"
    )


async def _checkpoint(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SELECT checkpoint FROM log_head"))
    finally:
        await conn.close()


def main() -> None:
    name = f"invoiceloop_bench_audit_{secrets.token_hex(3)}"

    with scratch_database(SERVER, name) as url:
        asyncio.run(db.migrate_url(url))
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(database_url=url, data_dir=Path(tmp), check_code_secret="bench")
            keyring.bootstrap(settings.keyring, settings.key_file)
            run(settings)


if __name__ == "__main__":
    main()
