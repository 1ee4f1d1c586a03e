"""A deployment of a test module's own: a database (migrated), a data folder (its keyring, signing key and log
key), for modules that rewrite history or rotate keys and must not disturb the rest of the suite."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest

from invoiceloop.settings import Settings
from invoicing import db
from tests.conftest import _with_db


def own_deployment(tag: str) -> Callable[..., Any]:
    """A module-scoped fixture giving the module its own database and data folder (as `Settings`)."""

    @pytest.fixture(scope="module")
    def deployment(server_url: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
        name = f"invoiceloop_{tag}_{uuid.uuid4().hex[:8]}"

        async def admin(sql: str) -> None:
            conn = await asyncpg.connect(server_url)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
        url = _with_db(server_url, name)
        asyncio.run(db.migrate_url(url))
        yield Settings(
            database_url=url,
            redis_url=settings.redis_url,
            data_dir=tmp_path_factory.mktemp(tag),
            check_code_secret=f"{tag}-test-secret",
        )
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return deployment
