"""Read replicas on PostgreSQL's own streaming replication (DATABASE_REPLICA_URL), against a real primary and
hot standby: reads served by the standby, the primary asked when the standby lags, writes never sent to it,
the service carrying on when the standby stops."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from invoiceloop.settings import Settings
from invoicing import db, log_repository, merkle
from invoicing.replicas import PRIMARY_LSN, REPLAYED_UP_TO, Reads
from invoicing.transparency import LogReader
from tests.conftest import CliProcess, ServerProcess, new_issuer, server_log
from tests.replication import Cluster, postgres_bin, primary_and_standby
from tests.samples import invoice_body
from tests.verification_fixtures import query_of

pytestmark = [
    pytest.mark.skipif(postgres_bin() is None, reason="needs Debian's PostgreSQL binaries"),
    pytest.mark.timeout(600),  # two servers are made (initdb, base backup) on a machine that may be loaded
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with primary_and_standby() as c:
        asyncio.run(db.migrate_url(c.primary_url))
        yield c


@pytest.fixture(scope="module")
def replica_settings(cluster: Cluster, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        database_url=cluster.primary_url,
        database_replica_url=cluster.standby_url,
        redis_url=redis_url,
        data_dir=tmp_path_factory.mktemp("replicas"),
        check_code_secret="replica-test-secret",
    )


@pytest.fixture(scope="module")
def service(replica_settings: Settings, output_dir: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """The API and the worker (which sequences the public log), both on the primary and the standby."""
    worker = CliProcess(replica_settings, server_log(output_dir, request, "worker"), ["worker"])
    srv = ServerProcess(replica_settings, server_log(output_dir, request))
    yield srv
    srv.stop()
    worker.stop()


@pytest.fixture
async def primary(cluster: Cluster) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(cluster.primary_url, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def seller(service: ServerProcess, primary: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    _, key = await new_issuer(primary)
    async with httpx.AsyncClient(
        base_url=service.base_url, timeout=60, headers={"Authorization": f"Bearer {key}"}
    ) as c:
        yield c


async def issue(seller: httpx.AsyncClient) -> dict[str, Any]:
    response = await seller.post("/v1/invoices", json=invoice_body())
    assert response.status_code == 201, response.text
    return dict(response.json())


async def verify(service: ServerProcess, invoice: dict[str, Any]) -> str:
    async with httpx.AsyncClient(base_url=service.base_url, timeout=60) as client:
        response = await client.post("/v1/verifications", json=query_of(invoice))
    assert response.status_code == 200, response.text
    return str(response.json()["result"])


async def reads_served(service: ServerProcess, by: str) -> float:
    async with httpx.AsyncClient(base_url=service.base_url, timeout=60) as client:
        text = (await client.get("/metrics")).text
    found = re.search(rf'^invoiceloop_reads_total{{served_by="{by}"}} (\S+)$', text, re.M)
    return float(found[1]) if found else 0.0


async def on_standby(cluster: Cluster, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(cluster.standby_url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def pause_replay(cluster: Cluster) -> None:
    """Pause the standby's replay and wait until it has (a pause is only requested at first)."""
    await on_standby(cluster, "SELECT pg_wal_replay_pause()")
    for _ in range(600):
        if await on_standby(cluster, "SELECT pg_get_wal_replay_pause_state()") == "paused":
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("the standby's replay never paused")


async def replayed(cluster: Cluster, invoice_id: str, status: str = "issued") -> None:
    """Wait until the standby shows the invoice with this status."""
    for _ in range(600):
        if await on_standby(cluster, "SELECT status FROM invoices WHERE id = $1", invoice_id) == status:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the standby never showed {invoice_id} {status}")


async def test_lookups_go_to_the_standby_and_to_the_primary_for_what_it_lacks(
    cluster: Cluster, service: ServerProcess, seller: httpx.AsyncClient
) -> None:
    older = await issue(seller)
    await replayed(cluster, older["id"])
    await pause_replay(cluster)  # the standby lags from here on
    try:
        voided = await seller.post(f"/v1/invoices/{older['id']}/void", json={"reason": "开错了"})
        assert voided.status_code == 200, voided.text
        newer = await issue(seller)
        served = await reads_served(service, "replica")
        # The standby still has the invoice as issued: the answer came from it (the lag the docs state) ...
        assert await verify(service, older) == "valid"
        assert await reads_served(service, "replica") > served
        # ... and what it does not have yet is looked up on the primary: verifiable the moment it is issued.
        assert await verify(service, newer) == "valid"
    finally:
        await on_standby(cluster, "SELECT pg_wal_replay_resume()")
    await replayed(cluster, older["id"], "voided")
    assert await verify(service, older) == "voided"
    stats = await seller.get("/v1/stats")
    assert stats.status_code == 200 and stats.json()["months"], stats.text
    # Writes (the verification log, the counts) went to the primary: the standby refused none.
    assert "read-only transaction" not in (cluster.root / "standby.log").read_text()


async def test_the_public_log_is_read_from_the_standby_with_the_primary_behind_it(
    cluster: Cluster, service: ServerProcess, seller: httpx.AsyncClient
) -> None:
    invoice = await issue(seller)
    async with httpx.AsyncClient(base_url=service.base_url, timeout=60) as client:
        for _ in range(600):  # the worker sequences it within seconds
            leaf = await client.get(f"/v1/log/leaves/{invoice['record_hash']}")
            if leaf.status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert leaf.status_code == 200, leaf.text
        checkpoint = await client.get("/v1/log/checkpoint")
        assert checkpoint.status_code == 200
        size = int(checkpoint.text.splitlines()[1])
        index = leaf.json()["leaf_index"]
        if index < size:
            proof = await client.get("/v1/log/proof/inclusion", params={"leaf_index": index, "tree_size": size})
            assert proof.status_code == 200, proof.text


async def test_the_logs_first_checkpoint_comes_from_the_primary_until_the_standby_has_it(cluster: Cluster) -> None:
    """A new log (a database of its own on the same cluster): the standby has replayed its empty schema but not its
    first checkpoint, which the primary has. The public side reads the primary's, as it finds a leaf sequenced a
    moment ago on the primary: neither a replica's miss nor "no checkpoint" read a moment before is "the log has no
    checkpoint yet" (seen in CI: a leaf found, then a 404 for the checkpoint)."""
    name = f"invoiceloop_head_{secrets.token_hex(4)}"
    primary_url, standby_url = (
        url.rsplit("/", 1)[0] + "/" + name for url in (cluster.primary_url, cluster.standby_url)
    )
    admin = await asyncpg.connect(cluster.primary_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    pools: list[asyncpg.Pool] = []
    try:
        await db.migrate_url(primary_url)
        lsn = await admin.fetchval(PRIMARY_LSN)
        for _ in range(600):
            if await on_standby(cluster, REPLAYED_UP_TO, lsn):
                break
            await asyncio.sleep(0.1)
        await pause_replay(cluster)
        try:
            primary = await db.create_pool(primary_url, min_size=0, max_size=2)
            replica = await db.create_pool(standby_url, min_size=0, max_size=2)
            pools += [primary, replica]
            reads = Reads(primary, replica, acquire_timeout_s=30.0)
            reader = LogReader(reads, head_ttl_s=3600.0)  # a checkpoint read is kept for the whole test
            assert await reader.head() is None  # none anywhere yet
            async with primary.acquire() as conn:
                await log_repository.set_head(conn, 0, merkle.EMPTY_ROOT, "the first checkpoint")
            assert await reads.run(log_repository.head) is None  # the standby has not replayed it
            head = await reader.head()
            assert head is not None and head.checkpoint == "the first checkpoint"
        finally:
            await on_standby(cluster, "SELECT pg_wal_replay_resume()")
    finally:
        for pool in pools:
            await pool.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_manifest_reads_use_the_standby_only_once_it_has_replayed_the_request(
    cluster: Cluster, primary: asyncpg.Pool
) -> None:
    replica = await db.create_pool(cluster.standby_url, min_size=0, max_size=2)
    # Generous timeouts: on a loaded machine a new standby connection alone can take more than the default 1 s,
    # which the pool counts as a failed replica (and then rightly uses the primary).
    reads = Reads(primary, replica, catch_up_s=30.0, acquire_timeout_s=30.0)
    try:
        await pause_replay(cluster)
        async with primary.acquire() as conn:
            # The WAL writer made slow, so that the write position stays behind an asynchronous commit for seconds.
            await conn.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
            await conn.execute("SELECT pg_reload_conf()")
            # An asynchronous commit, as the cluster is set up: visible on the primary before its WAL is written.
            await conn.execute("SET synchronous_commit = off; CREATE TABLE IF NOT EXISTS replica_probe (n int)")
            await conn.execute("INSERT INTO replica_probe VALUES (1)")
        reads.catch_up_s = 1.0
        assert await reads.caught_up_pool() is primary  # the standby has not replayed that commit
    finally:
        await on_standby(cluster, "SELECT pg_wal_replay_resume()")
        async with primary.acquire() as conn:
            await conn.execute("ALTER SYSTEM RESET wal_writer_delay")
            await conn.execute("SELECT pg_reload_conf()")
    try:
        reads.catch_up_s = 30.0
        assert await reads.caught_up_pool() is replica  # replay resumed: the standby has it
        async with replica.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM replica_probe") >= 1
    finally:
        await reads.close()


async def test_the_service_carries_on_when_the_standby_stops(
    cluster: Cluster, service: ServerProcess, seller: httpx.AsyncClient
) -> None:
    invoice = await issue(seller)
    await replayed(cluster, invoice["id"])
    cluster.stop_standby()
    try:
        assert await verify(service, invoice) == "valid"
        assert await verify(service, await issue(seller)) == "valid"
        assert (await seller.get("/v1/stats")).status_code == 200
        async with httpx.AsyncClient(base_url=service.base_url, timeout=60) as client:
            assert (await client.get("/v1/log/checkpoint")).status_code in (200, 404)
    finally:
        cluster.start_standby()
    served = await reads_served(service, "replica")
    for _ in range(300):  # back on the standby once it answers again (after the service's retry pause)
        assert await verify(service, invoice) == "valid"
        if await reads_served(service, "replica") > served:
            break
        await asyncio.sleep(0.2)
    assert await reads_served(service, "replica") > served
