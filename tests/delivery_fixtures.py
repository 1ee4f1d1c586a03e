"""Fixtures of the delivery tests (registered by conftest's pytest_plugins).

Operators serve provinces for the whole database, and the earliest-created operator of a province takes
its orders, so within a test module (one database) every test that needs "the operator of a province"
posts to a province no other test of the module serves, and asserts on its own orders."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from delivery import services as delivery_services
from invoiceloop.settings import Settings
from invoicing import numbering, services
from invoicing.model import DEFAULT_TAX_RATES, PROVINCES
from invoicing.repository import Issuer
from invoicing.validation import invoice_request
from tests.conftest import CliProcess, ServerProcess
from tests.samples import invoice_body


def postal_body(province: str, *, phone: str | None = "+8613800138000") -> dict[str, Any]:
    """A postal InvoiceRequest body to an address in `province` (a code)."""
    body = invoice_body(delivery="postal")
    body["buyer"]["address"]["province"] = PROVINCES[province][0]
    body["buyer"]["phone"] = phone
    return body


async def issue_postal(
    pool: asyncpg.Pool, issuing: numbering.Issuing, issuer: Issuer, count: int, province: str, batch: int = 500
) -> list[str]:
    """Issue `count` postal invoices in batches (services directly: fast); returns their ids."""
    draft = numbering.draft_of(invoice_request(postal_body(province), DEFAULT_TAX_RATES))
    ids: list[str] = []
    async with pool.acquire() as conn:
        for start in range(0, count, batch):
            n = min(batch, count - start)
            issued = await services.issue(conn, issuing, issuer, [draft] * n)
            ids.extend(inv.id for inv in issued.invoices)
    return ids


async def new_operator(pool: asyncpg.Pool, provinces: list[str], name: str = "测试邮政") -> tuple[Any, str]:
    async with pool.acquire() as conn:
        return await delivery_services.create_operator(conn, name=name, provinces=provinces)


class WorkerProcess(CliProcess):
    """`invoiceloop worker` in a subprocess (the real arq worker); its log is appended to across restarts."""

    def __init__(self, settings: Settings, log_path: Path, **extra_env: str) -> None:
        super().__init__(settings, log_path, ["worker"], log_mode="a", **extra_env)


@pytest.fixture
def start_worker(settings: Settings, output_dir: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers (`start_worker()`); every one still running is stopped after the test."""
    started: list[WorkerProcess] = []
    (output_dir / "delivery").mkdir(exist_ok=True)

    def start(**extra_env: str) -> WorkerProcess:
        worker = WorkerProcess(settings, output_dir / "delivery" / "worker.log", **extra_env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


async def wait_until(check: Callable[[], Any], timeout_s: float = 60, every_s: float = 0.3) -> Any:
    """Poll the async `check()` until it returns something truthy; fail after `timeout_s`."""
    import asyncio

    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s} s waiting for {check.__name__}")
        await asyncio.sleep(every_s)


@pytest.fixture
async def operator_factory(server: ServerProcess, pool: asyncpg.Pool) -> AsyncIterator[Callable[..., Any]]:
    """`await operator_factory([provinces])` -> an httpx client authenticated as a new operator (`.operator`)."""
    clients: list[httpx.AsyncClient] = []

    async def make(provinces: list[str], name: str = "测试邮政") -> httpx.AsyncClient:
        op, key = await new_operator(pool, provinces, name)
        client = httpx.AsyncClient(base_url=server.base_url, timeout=60, headers={"Authorization": f"Bearer {key}"})
        client.operator = op  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
