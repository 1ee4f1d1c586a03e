"""Several nodes: two `serve` processes and two workers against one PostgreSQL and one Redis issue on the same
series at once, fulfil each postal order once, sequence each record into the log once, and carry on when one
of each is killed with SIGKILL (a client whose node died retries on the other with the same Idempotency-Key)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from invoiceloop.settings import Settings
from tests.conftest import ServerProcess, new_issuer, server_log
from tests.delivery_fixtures import WorkerProcess, new_operator, postal_body, wait_until
from tests.samples import invoice_body

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PROVINCE = "33"
CLIENTS = 8  # concurrent issuers' connections, spread over both nodes
PER_CLIENT = 25
KILL_AFTER = 40  # answers before one node and one worker are killed


async def issue_somewhere(nodes: list[httpx.AsyncClient], start: int, body: dict[str, Any]) -> dict[str, Any]:
    """Issue on one node; when it is unreachable (killed), the same request with the same key on the next."""
    key = str(uuid.uuid4())
    for attempt in range(20):
        client = nodes[(start + attempt) % len(nodes)]
        try:
            response = await client.post("/v1/invoices", json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError:  # the node died under us: the answer is lost, not necessarily the invoice
            await asyncio.sleep(0.2)
            continue
        assert response.status_code == 201, response.text
        return dict(response.json())
    raise AssertionError("no node answered")


async def test_two_nodes_and_two_workers_survive_one_of_each_killed(
    settings: Settings, pool: asyncpg.Pool, output_dir: Path, request: pytest.FixtureRequest
) -> None:
    await new_operator(pool, [PROVINCE])
    _, key = await new_issuer(pool)
    servers = [ServerProcess(settings, server_log(output_dir, request, f"node{i}")) for i in (1, 2)]
    workers = [WorkerProcess(settings, server_log(output_dir, request, f"worker{i}")) for i in (1, 2)]
    headers = {"Authorization": f"Bearer {key}"}
    nodes = [httpx.AsyncClient(base_url=s.base_url, timeout=60, headers=headers) for s in servers]
    try:
        counter = itertools.count()

        answered = itertools.count(1)

        async def client(n: int) -> list[dict[str, Any]]:
            issued = []
            for i in range(PER_CLIENT):
                body = postal_body(PROVINCE) if (n + i) % 3 == 0 else invoice_body()
                issued.append(await issue_somewhere(nodes, next(counter), body))
                if next(answered) == KILL_AFTER:
                    # One node and one worker killed (SIGKILL) by the clients' own progress, not by a poll that a
                    # loaded machine may run only after every request was answered: the other clients' requests
                    # are in flight on both nodes at this moment, and 160 more are still to come.
                    servers[0].kill()
                    workers[0].kill()
            return issued

        results = await asyncio.gather(*(client(n) for n in range(CLIENTS)))
        invoices = [inv for batch in results for inv in batch]
        assert servers[0].proc.poll() is not None and workers[0].proc.poll() is not None  # the kills happened
    finally:
        for c in nodes:
            await c.aclose()

    try:
        wanted = CLIENTS * PER_CLIENT
        assert len({inv["id"] for inv in invoices}) == wanted  # one invoice per request, retries included
        async with pool.acquire() as conn:
            numbers = await conn.fetch(
                "SELECT invoice_code, invoice_number::bigint AS n FROM invoices WHERE id = ANY($1::uuid[]) ORDER BY n",
                [inv["id"] for inv in invoices],
            )
            stored = await conn.fetchval(
                "SELECT count(*) FROM invoices WHERE issuer_id = (SELECT issuer_id FROM invoices WHERE id = $1)",
                invoices[0]["id"],
            )
        assert stored == wanted  # nothing issued that no client holds
        assert len({r["invoice_code"] for r in numbers}) == 1  # one series
        assert [r["n"] for r in numbers] == list(range(1, wanted + 1))  # gapless, none twice

        postal = [inv["id"] for inv in invoices if inv["delivery"]["method"] == "postal"]

        async def fulfilled() -> bool:
            async with pool.acquire() as conn:
                pending = await conn.fetchval(
                    "SELECT count(*) FROM delivery_orders WHERE invoice_id = ANY($1::uuid[]) AND tracking_number IS NULL",
                    postal,
                )
            return bool(pending == 0)

        await wait_until(fulfilled, timeout_s=120)  # the surviving worker (and the sweep) take over
        hashes = [inv["record_hash"] for inv in invoices]

        async def sequenced() -> bool:
            async with pool.acquire() as conn:
                n = await conn.fetchval("SELECT count(*) FROM log_leaves WHERE record_hash = ANY($1::text[])", hashes)
            return bool(n == len(hashes))

        await wait_until(sequenced, timeout_s=120)
        async with pool.acquire() as conn:
            orders = await conn.fetch(
                "SELECT tracking_number FROM delivery_orders WHERE invoice_id = ANY($1::uuid[])", postal
            )
            twice = await conn.fetchval(
                "SELECT count(*) FROM (SELECT record_hash FROM log_leaves GROUP BY 1 HAVING count(*) > 1) AS t"
            )
            leaves = await conn.fetchval("SELECT count(*) FROM log_leaves")
            size = await conn.fetchval("SELECT size FROM log_head")
        assert len(orders) == len(postal) and len({o["tracking_number"] for o in orders}) == len(postal)
        assert twice == 0 and size == leaves  # each record in the log once, the tree holds every leaf
    finally:
        for process in [*servers, *workers]:
            process.stop()
