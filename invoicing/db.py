"""The PostgreSQL pool and the migration runner (plain SQL files, applied once each, in order)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import asyncpg
import msgspec

_MIGRATION_LOCK = 0x1A5C_0001  # advisory lock key: one migrator at a time

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    checksum   char(64) NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


# Our statements are index lookups and small writes; PostgreSQL JIT-compiles a statement once its estimated cost
# passes `jit_above_cost`, and estimates grow with the tables: on a million invoices the audit's batch lookups paid
# 0.2-1.8 s of compilation each for a few hundred milliseconds of work (docs/scale-data.md). Never worth it here.
SERVER_SETTINGS = {"jit": "off"}

# How long a connection keeps a prepared statement before it prepares it again (asyncpg's default, written here
# because the service relies on it). PostgreSQL keeps the generic plan a prepared statement settles on until a table
# it reads is analysed, so a plan made while the tables were small (a new database) goes on hashing a whole table
# once it is large. With autovacuum on, its ANALYZE replaces such plans in the first minute of traffic; this bounds
# them where nothing analyses (autovacuum off, as on the machine the tests share). Measured (docs/issuing.md): a
# connection that issued on empty tables took 31.5 ms an issue once 20,000 series existed, a fresh one 5.6 ms; once
# its statements were prepared again, 4.5 ms. Each renewal plans the statement again (`INSERT_RECORDS`: five custom
# plans of 1.4-1.7 ms, then its generic one), on every connection: shorter would bound the hazard sooner at a cost
# paid all the time.
STATEMENT_LIFETIME_S = 300.0


async def init_connection(conn: asyncpg.Connection) -> None:
    """jsonb to and from Python values (msgspec decodes them as json.loads would, faster: every invoice row)."""
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=msgspec.json.decode, schema="pg_catalog")


async def connect(url: str) -> asyncpg.Connection:
    """One connection (for commands) that reads and writes jsonb as the pool's connections do."""
    conn = await asyncpg.connect(
        url, server_settings=SERVER_SETTINGS, max_cached_statement_lifetime=STATEMENT_LIFETIME_S
    )
    await init_connection(conn)
    return conn


async def _no_reset(conn: asyncpg.Connection) -> None:
    """We keep no session state (advisory locks are transaction-scoped, no LISTEN, no SET), so the
    default reset on release (one more round trip per request) is not needed."""


async def create_pool(
    url: str, *, min_size: int = 2, max_size: int = 20, statement_lifetime: float = STATEMENT_LIFETIME_S
) -> asyncpg.Pool:
    """A pool whose connections decode jsonb to Python objects and prepare each statement again after
    `statement_lifetime` seconds (`STATEMENT_LIFETIME_S`)."""
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        reset=_no_reset,
        server_settings=SERVER_SETTINGS,
        max_inactive_connection_lifetime=300,
        max_cached_statement_lifetime=statement_lifetime,
    )
    assert pool is not None
    return pool


@dataclass(frozen=True)
class MigrationResult:
    """Which migrations one run applied, and which were applied before."""

    applied: list[str]
    already: list[str]


class MigrationChanged(Exception):
    """An already-applied migration file differs from what was applied: refuse to go on."""


class NoMigrations(Exception):
    """No migration file was found: the installation is broken (the SQL did not ship with the package)."""


def migrations_dir() -> Path:
    """Where the migrations are: the package data `invoicing.migrations` (the checkout's `migrations/`)."""
    return Path(str(resources.files("invoicing.migrations")))


def migration_files(directory: Path | None = None) -> list[Path]:
    """The migration files in name order; `NoMigrations` when there are none."""
    directory = directory or migrations_dir()
    files = sorted(p for p in directory.glob("*.sql") if p.is_file())
    if not files:
        raise NoMigrations(f"no migrations (*.sql) in {directory}: the installation is incomplete")
    return files


async def migrate(conn: asyncpg.Connection, directory: Path | None = None) -> MigrationResult:
    """Apply each `*.sql` in name order once, each in its own transaction, under an advisory lock.

    Refuses (MigrationChanged) when a file already applied has another checksum now."""
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(CREATE_MIGRATIONS_TABLE)
        done = {r["name"]: r["checksum"] for r in await conn.fetch("SELECT name, checksum FROM schema_migrations")}
        applied, already = [], []
        for path in migration_files(directory):
            checksum = hashlib.sha256(path.read_bytes()).hexdigest()
            if path.name in done:
                if done[path.name] != checksum:
                    raise MigrationChanged(f"{path.name} was changed after it was applied; add a new migration instead")
                already.append(path.name)
                continue
            async with conn.transaction():
                await conn.execute(path.read_text(encoding="utf-8"))
                await conn.execute(
                    "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)", path.name, checksum
                )
            applied.append(path.name)
        return MigrationResult(applied, already)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)


async def migrate_url(url: str, directory: Path | None = None) -> MigrationResult:
    """`migrate` on a connection of its own."""
    conn = await asyncpg.connect(url)
    try:
        return await migrate(conn, directory)
    finally:
        await conn.close()
