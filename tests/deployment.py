"""A deployment of a test module's own (registered by conftest's pytest_plugins): a database (migrated), a data
folder (its keyring, signing key and log key), for modules that rewrite history or rotate keys and must not disturb
the rest of the suite. A module binds `deployment = own_deployment("tag")`; `own_pool` and `own_issuing` follow."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import pytest

from invoiceloop.app import load_issuing
from invoiceloop.settings import Settings
from invoicing import db
from invoicing.numbering import Issuing
from tests.conftest import scratch_database


def own_deployment(tag: str) -> Callable[..., Any]:
    """A module-scoped fixture giving the module its own database and data folder (as `Settings`)."""

    @pytest.fixture(scope="module")
    def deployment(server_url: str, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
        with scratch_database(server_url, f"invoiceloop_{tag}_{uuid.uuid4().hex[:8]}") as url:
            asyncio.run(db.migrate_url(url))
            yield Settings(
                database_url=url,
                redis_url=settings.redis_url,
                data_dir=tmp_path_factory.mktemp(tag),
                check_code_secret=f"{tag}-test-secret",
            )

    return deployment


@pytest.fixture(scope="module")
async def own_pool(deployment: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the module's own database (the module binds `deployment = own_deployment(...)`)."""
    pool = await db.create_pool(deployment.require_database_url(), max_size=5)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
def own_issuing(deployment: Settings) -> Issuing:
    """The module's issuing, with its own keyring."""
    return load_issuing(deployment)
