"""`invoiceloop serve --workers 2`: a scrape reaches one of the two processes. Each used to answer its own figures,
so the issued count a scraper saw jumped between the two processes' parts (and Prometheus reads a counter that goes
down as a restart). Now every scrape answers the sum of both, and a new run starts from zero again."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from invoiceloop.metrics import MULTIPROCESS_DIR, shared_across_processes
from invoiceloop.settings import Settings
from tests.conftest import ServerProcess, new_issuer, server_log
from tests.samples import invoice_body

ISSUED = "invoiceloop_records_issued_total"


def issued_by_process(folder: Path) -> dict[str, float]:
    """Invoices issued, as each serve process's own file in the folder holds them (by file name: one per pid)."""
    counts: dict[str, float] = {}
    for path in folder.glob("counter_*.db"):
        for family in MultiProcessCollector.merge([str(path)], accumulate=False):  # type: ignore[no-untyped-call]
            for sample in family.samples:
                if sample.name == ISSUED and sample.labels.get("kind") == "invoice":
                    counts[path.name] = counts.get(path.name, 0.0) + sample.value
    return counts


def scraped_issued(text: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == ISSUED and s.labels.get("kind") == "invoice"
    )


async def issue_on_both(server: ServerProcess, key: str, folder: Path) -> int:
    """Issue over new connections, 16 at a time, until both processes have issued some; how many were issued."""
    issued = 0
    limits = httpx.Limits(max_keepalive_connections=0)  # a new connection each: the kernel hands it to either
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30, limits=limits) as client:
        for _ in range(30):
            answers = await asyncio.gather(
                *(
                    client.post("/v1/invoices", json=invoice_body(), headers={"Authorization": f"Bearer {key}"})
                    for _ in range(16)
                )
            )
            assert all(a.status_code == 201 for a in answers), [a.text for a in answers if a.status_code != 201]
            issued += len(answers)
            if sum(1 for count in issued_by_process(folder).values() if count > 0) >= 2:
                return issued
    pytest.fail(f"one process took every connection: {issued_by_process(folder)}")


async def test_every_scrape_answers_what_both_processes_issued_and_a_new_run_starts_from_zero(
    settings: Settings, pool: asyncpg.Pool, output_dir: Path, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    _, key = await new_issuer(pool)
    folder = tmp_path / "metrics"
    folder.mkdir()
    log = server_log(output_dir, request)
    for run in range(2):  # the second run finds the first one's files in the folder
        server = ServerProcess(settings, log, workers=2, **{MULTIPROCESS_DIR: str(folder)})
        try:
            issued = await issue_on_both(server, key, folder)
            async with httpx.AsyncClient(
                base_url=server.base_url, limits=httpx.Limits(max_keepalive_connections=0)
            ) as c:
                for _ in range(8):  # each scrape on a new connection, reaching either process
                    scrape = await c.get("/metrics")
                    assert scrape.status_code == 200
                    assert scraped_issued(scrape.text) == issued, f"run {run}"
        finally:
            server.stop()


def test_several_processes_share_a_folder_of_their_own_that_goes_with_them() -> None:
    assert MULTIPROCESS_DIR not in os.environ
    with shared_across_processes(1):
        assert MULTIPROCESS_DIR not in os.environ  # one process keeps its figures in memory
    with shared_across_processes(2):
        folder = Path(os.environ[MULTIPROCESS_DIR])
        assert folder.is_dir()
    assert MULTIPROCESS_DIR not in os.environ and not folder.exists()
