"""Costs that must not grow with the data: the service's connections never JIT-compile a query. PostgreSQL
compiles a query once its estimated cost passes `jit_above_cost`, and estimates grow with the tables, so the
same lookup that runs in a millisecond on a young database paid hundreds of milliseconds of compilation on one
of a million invoices (docs/scale-data.md)."""

from __future__ import annotations

import asyncpg

from invoicing import db


async def test_pool_connections_do_not_jit(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await conn.fetchval("SHOW jit") == "off"


async def test_command_connections_do_not_jit(database_url: str) -> None:
    conn = await db.connect(database_url)
    try:
        assert await conn.fetchval("SHOW jit") == "off"
    finally:
        await conn.close()
