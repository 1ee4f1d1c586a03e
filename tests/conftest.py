"""Fixtures on the real things: PostgreSQL (the local server, or an embedded one where none listens),
Redis, the app, and an HTTP server in a subprocess; and the suite's Hypothesis profile.

Scopes. The run migrates one template database; each test module gets a database of its own, a copy of the
template, and with it its own settings, pool, issuing and (when a test asks) server, all dropped or stopped
when the module is done. The run's Redis database is emptied for each module that uses it. Tests of one
module share the module's database: each makes its own issuer (tenants are isolated), and whatever else a
test must not share (a postal province, a client address, a phone number) it takes for itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import hypothesis
import pytest
import redis
from hypothesis import HealthCheck
from stdnum.cn import uscc

from invoiceloop.embedded import embedded_postgres, embedded_redis, port_open
from invoiceloop.settings import Settings
from invoicing import db, services
from invoicing.numbering import Issuing
from invoicing.repository import Issuer

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"
FORCE_EMBEDDED = os.environ.get("INVOICELOOP_TEST_EMBEDDED") == "1"  # as on a machine with no servers
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"

# One Hypothesis profile for the suite (HYPOTHESIS_PROFILE names another). Nothing in it depends on how busy
# the machine is: no deadline, and no "input generation is slow" health check, both of which fail correct
# tests on a loaded machine. The other health checks (too much filtering, too large data) do not depend on
# the clock and stay on: they point at strategies to fix. Strategies are kept cheap to draw, and the few
# expensive tests ask for fewer examples themselves.
hypothesis.settings.register_profile(
    "invoiceloop", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "invoiceloop"))


def valid_uscc(region: str = "440101") -> str:
    """A random unified social credit code with a correct check character."""
    body = "91" + region + "".join(secrets.choice(USCC_ALPHABET) for _ in range(9))  # not `random`: Hypothesis seeds it
    return body + uscc.calc_check_digit(body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The PostgreSQL server: 127.0.0.1:5432 when it answers (CI, dev machines), else embedded."""
    if os.environ.get("TEST_PG_SERVER_URL"):
        yield os.environ["TEST_PG_SERVER_URL"]
    elif port_open("127.0.0.1", 5432) and not FORCE_EMBEDDED:
        yield "postgresql://postgres@127.0.0.1:5432/postgres"
    else:
        with embedded_postgres(tmp_path_factory.mktemp("pg")) as url:
            yield url


def _with_db(url: str, name: str) -> str:
    if "@/" in url:  # unix socket form: postgresql://user:@/db?host=...
        head, _, tail = url.partition("@/")
        return f"{head}@/{name}?{tail.partition('?')[2]}"
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def run_id() -> str:
    """This run's mark in the names of what it creates (databases), so runs never meet."""
    return secrets.token_hex(4)


async def _admin(server_url: str, sql: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _database(server_url: str, name: str, template: str | None = None) -> AsyncIterator[str]:
    """A new database `name` (a copy of `template` when given) on the server; dropped on the way out, whatever
    happened inside. Yields its URL."""
    # a template must have no open connection; PostgreSQL waits a few seconds for closing ones
    await _admin(server_url, f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield _with_db(server_url, name)
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_database(server_url: str, name: str) -> Iterator[str]:
    """`_database` for code outside an event loop (a sync fixture, a benchmark's main): yields the URL."""
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_db(server_url, name)
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
async def template_database(server_url: str, run_id: str) -> AsyncIterator[str]:
    """The run's migrated database, never used directly: every module's database is a copy of it, so the
    migrations run once a run. Its name; dropped at the end."""
    name = f"invoiceloop_test_{run_id}_template"
    async with _database(server_url, name) as url:
        await db.migrate_url(url)  # on a connection of its own, closed when done
        yield name


_MODULE_NUMBERS = itertools.count(1)


@pytest.fixture(scope="module")
async def database_url(
    server_url: str, template_database: str, run_id: str, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """A database of this test module's own, cloned from the migrated template; dropped when the module is
    done (WITH (FORCE): a connection a test left open must not keep it). The tests of one module share it."""
    name = f"invoiceloop_test_{run_id}_{next(_MODULE_NUMBERS):02d}_{request.path.stem.removeprefix('test_')}"[:63]
    async with _database(server_url, name, template=template_database) as url:
        yield url


REDIS_TEST_DBS = range(1, 13)  # 13-15 are left to benchmarks and people
REDIS_MARKER = "invoiceloop:test-run"  # in a claimed database: the pid of the run holding it
# Deletes every key but the marker (ARGV[1]) in one step, so the database is never unclaimed meanwhile.
_EMPTY_BUT_MARKER = """
for _, key in ipairs(redis.call('KEYS', '*')) do
  if key ~= ARGV[1] then redis.call('DEL', key) end
end
return 0
"""


@dataclass
class RunRedis:
    """The run's Redis database: `url`, and `empty()` to drop every key but the run's marker."""

    url: str
    client: redis.Redis

    def empty(self) -> None:
        self.client.eval(_EMPTY_BUT_MARKER, 0, REDIS_MARKER)
        self.client.expire(REDIS_MARKER, 3600)  # held for another hour (a no-op on an embedded Redis: no marker)


def _claim_redis_db() -> tuple[int, redis.Redis]:
    """A Redis database no other test run is using: its marker key is set only when absent (it expires
    after an hour, so a crashed run's database is taken over)."""
    for number in random.sample(REDIS_TEST_DBS, len(REDIS_TEST_DBS)):
        client = redis.Redis(host="127.0.0.1", port=6379, db=number)
        if client.set(REDIS_MARKER, os.getpid(), nx=True, ex=3600):
            return number, client
        client.close()
    raise RuntimeError(f"every Redis database in {REDIS_TEST_DBS} is held by another test run")


@pytest.fixture(scope="session")
def run_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunRedis]:
    """Redis on 127.0.0.1:6379 (a database number of its own for this run, emptied for each module that uses
    it and at the end), else embedded."""
    if port_open("127.0.0.1", 6379) and not FORCE_EMBEDDED:
        number, client = _claim_redis_db()
        try:
            yield RunRedis(f"redis://127.0.0.1:6379/{number}", client)
        finally:
            client.flushdb()  # the marker too: the database is free again
            client.close()
    else:
        with embedded_redis(tmp_path_factory.mktemp("redis")) as url:
            client = redis.Redis.from_url(url)
            try:
                yield RunRedis(url, client)
            finally:
                client.close()


@pytest.fixture(scope="module")
def redis_url(run_redis: RunRedis) -> str:
    """The run's Redis, emptied when a module first asks for it (its marker kept). Keys are not per database,
    and every module's fresh database starts invoice codes and numbers over, so an earlier module's limits,
    locks and arq jobs would meet this module's. The earlier module's servers and workers are stopped by now:
    pytest ends a module's fixtures before it sets up the next module's."""
    run_redis.empty()
    return run_redis.url


@pytest.fixture(scope="module")
def settings(database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The module's settings: its database, the run's Redis, a data folder (signing key) of its own."""
    data = tmp_path_factory.mktemp("data")
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        data_dir=data,
        public_base_url="http://127.0.0.1:8000",
        check_code_secret="test-secret-" + secrets.token_hex(8),
    )


@pytest.fixture(scope="module")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(settings.require_database_url(), max_size=30)
    yield p
    await p.close()


@pytest.fixture(scope="module")
async def issuing(settings: Settings, pool: asyncpg.Pool) -> Issuing:
    from invoiceloop.app import load_issuing

    return load_issuing(settings)


async def new_issuer(pool: asyncpg.Pool, region: str = "4401") -> tuple[Issuer, str]:
    async with pool.acquire() as conn:
        return await services.create_issuer(
            conn,
            name="广州测试贸易有限公司",
            tax_id=valid_uscc(region + "01"),
            region=region,
            address="广州市天河区体育西路 100 号",
            phone="+862087654321",
        )


@pytest.fixture
async def issuer(pool: asyncpg.Pool) -> tuple[Issuer, str]:
    """A new issuer for each test: tenants are isolated, so tests never see each other's data."""
    return await new_issuer(pool)


# ---------------------------------------------------------------- a real HTTP server


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(
        {
            "DATABASE_URL": settings.database_url or "",
            "DATABASE_REPLICA_URL": settings.database_replica_url or "",
            "REDIS_URL": settings.redis_url or "",
            "INVOICELOOP_DATA_DIR": str(settings.data_dir),
            "CHECK_CODE_SECRET": settings.check_code_secret or "",
            "INVOICELOOP_KEY_CACHE_TTL_S": "0.2",
            **extra,
        }
    )
    return env


class CliProcess:
    """An `invoiceloop ...` command in a subprocess against the test settings, output to `log_path`."""

    def __init__(
        self, settings: Settings, log_path: Path, args: list[str], *, log_mode: str = "w", **extra_env: str
    ) -> None:
        self.log_path = log_path
        self.log = open(log_path, log_mode)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "invoiceloop", *args],
            env=_env(settings, **extra_env),
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        """Terminate (a worker finishes its running jobs first), after 10 s kill; always reaped, so no process is
        left for the garbage collector to warn about in a later test."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


class ServerProcess(CliProcess):
    """`invoiceloop serve` on a free port, ready (healthz answers) when constructed."""

    def __init__(self, settings: Settings, log_path: Path, *, workers: int = 1, **extra_env: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            settings,
            log_path,
            ["serve", "--port", str(self.port), "--workers", str(workers)],
            PUBLIC_BASE_URL=self.base_url,
            **extra_env,
        )
        try:
            self._wait()
        except BaseException:
            self.stop()  # a server that never answered is not left running
            raise

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not start")


def server_log(output_dir: Path, request: pytest.FixtureRequest, kind: str = "server") -> Path:
    """Where a module's server writes: test-output/servers/<kind>-<module>.log, rewritten each run."""
    folder = output_dir / "servers"
    folder.mkdir(exist_ok=True)
    return folder / f"{kind}-{request.path.stem}.log"


@pytest.fixture(scope="module")
def server(settings: Settings, output_dir: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """`invoiceloop serve` in a subprocess on a free port, against the module's database; started by the
    first test of a module that asks for it, stopped when the module is done."""
    srv = ServerProcess(settings, server_log(output_dir, request))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def stats_server(settings: Settings, output_dir: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A module's server whose public figures are never kept (PUBLIC_STATS_TTL_S=0): each answer is read afresh."""
    srv = ServerProcess(settings, server_log(output_dir, request, "stats-server"), PUBLIC_STATS_TTL_S="0")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        yield client


@pytest.fixture
async def issuer_client(server: ServerProcess, pool: asyncpg.Pool) -> AsyncIterator[Any]:
    """An HTTP client authenticated as a new issuer; `.issuer` is the Issuer."""
    issuer, key = await new_issuer(pool)
    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=60, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        client.issuer = issuer  # type: ignore[attr-defined]
        client.api_key = key  # type: ignore[attr-defined]
        yield client


pytest_plugins = [
    "tests.fake_twilio",
    "tests.verification_fixtures",
    "tests.delivery_fixtures",
    "tests.browser",
    "tests.deployment",
]
