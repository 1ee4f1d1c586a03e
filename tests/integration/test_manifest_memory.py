"""Exporting a 100,000-order manifest keeps the server's memory flat (streamed from a server-side cursor).

The bulk rows (filled with generate_series) stay in this module's database, which no other test shares."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from delivery import services as delivery_services
from invoiceloop.settings import Settings
from invoicing.numbering import Issuing
from tests.conftest import ServerProcess, new_issuer
from tests.delivery_fixtures import issue_postal

ORDERS = 100_000

BULK_INVOICES = """
INSERT INTO invoices (id, issuer_id, series_id, chain_seq, kind, invoice_code, invoice_number, issue_date, issued_at,
                      status, total_amount, total_tax, total, delivery_method, content, record_hash, prev_hash,
                      signature, key_id)
SELECT gen_random_uuid(), i.issuer_id, i.series_id, 1000 + g, 'invoice', i.invoice_code, lpad((g + 10)::text, 8, '0'),
       i.issue_date, i.issued_at, 'issued', i.total_amount, i.total_tax, i.total, 'postal', '{}'::jsonb,
       md5(g::text) || md5('x' || g), i.prev_hash, i.signature, i.key_id
  FROM invoices i, generate_series(1, $2::int) AS g WHERE i.id = $1"""

BULK_ORDERS = """
INSERT INTO delivery_orders (id, invoice_id, issuer_id, status, province_code, address, phone, tracking_number,
                             operator_id, manifest_id, invoice_code, invoice_number)
SELECT gen_random_uuid(), i.id, i.issuer_id, 'manifested', d.province_code, d.address, d.phone,
       'RR' || lpad((50000000 + i.chain_seq)::text, 9, '0') || 'CN', d.operator_id, d.manifest_id, i.invoice_code,
       i.invoice_number
  FROM invoices i, delivery_orders d WHERE i.chain_seq > 1000 AND d.invoice_id = $1"""


def vm_hwm_kb(pid: int) -> int:
    """The process's peak resident set size (VmHWM) in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.fixture
async def big_manifest(
    settings: Settings, pool: asyncpg.Pool, issuing: Issuing, output_dir: Path
) -> AsyncIterator[tuple[ServerProcess, str, str]]:
    """A fresh server (its memory measured from start) on a database holding one manifest of 100,000 orders:
    (server, operator key, manifest id)."""
    manifest_id, key = await _fill(pool, issuing)
    (output_dir / "delivery").mkdir(exist_ok=True)
    srv = ServerProcess(settings, output_dir / "delivery" / "server-memory.log")
    try:
        yield srv, key, manifest_id
    finally:
        srv.stop()


async def _fill(pool: asyncpg.Pool, issuing: Issuing) -> tuple[str, str]:
    province = "37"
    async with pool.acquire() as conn:
        _, key = await delivery_services.create_operator(conn, name="大邮政", provinces=[province])
    issuer, _ = await new_issuer(pool)
    [seed] = await issue_postal(pool, issuing, issuer, 1, province)
    async with pool.acquire() as conn:
        await delivery_services.fulfil_all(conn, [seed])
        await conn.execute(BULK_INVOICES, seed, ORDERS - 1)
        await conn.execute(BULK_ORDERS, seed)
        await conn.execute("ANALYZE")
        manifest_id = await conn.fetchval("SELECT manifest_id FROM delivery_orders WHERE invoice_id = $1", seed)
    return str(manifest_id), key


async def _download(client: httpx.AsyncClient, path: str, fmt: str) -> tuple[int, int, float]:
    """(bytes, lines, seconds) of a streamed download, read chunk by chunk."""
    size = lines = 0
    start = time.perf_counter()
    async with client.stream("GET", path, params={"format": fmt}) as answer:
        assert answer.status_code == 200
        async for chunk in answer.aiter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")  # a CRLF may be split between two chunks
    return size, lines, time.perf_counter() - start


@pytest.mark.slow
async def test_exporting_100k_orders_keeps_memory_flat(big_manifest: Any) -> None:
    srv, key, manifest_id = big_manifest
    path = f"/v1/postal/manifests/{manifest_id}"
    async with httpx.AsyncClient(
        base_url=srv.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as client:
        listing = (await client.get("/v1/postal/manifests")).json()["items"]
        assert listing[0]["item_count"] == ORDERS
        await client.get("/v1/postal/manifests", params={"status": "open"})  # warm up the route and pool
        before = vm_hwm_kb(srv.proc.pid)
        size, lines, seconds = await _download(client, path, "csv")
        assert lines == ORDERS + 1
        json_size, _, _ = await _download(client, path, "json")
        after = vm_hwm_kb(srv.proc.pid)
    growth_mb = (after - before) / 1024
    print(
        f"CSV {ORDERS / seconds:,.0f} rows/s, {size / 1e6:.1f} MB; JSON {json_size / 1e6:.1f} MB; "
        f"server VmHWM {before / 1024:.0f} -> {after / 1024:.0f} MB"
    )
    assert size > 10_000_000 and json_size > size
    assert growth_mb < 60, f"server peak RSS grew {growth_mb:.0f} MB exporting {ORDERS} orders"
