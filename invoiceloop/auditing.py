"""`invoiceloop audit` at scale: the chains cut into segments and checked in parallel processes (one per core by
default), streamed from the database a segment at a time, with a progress bar on a terminal and the rate at the
end. The incremental audit (`--since`) checks only what was added after a checkpoint kept outside."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from invoicing import chain_repository, db, keyring
from invoicing.audit import AuditReport, Finding, Segment, check_log, check_numbers, check_segment, plan
from invoicing.audit_since import audit_since
from invoicing.checkpoint import Checkpoint
from invoicing.note import VerifierKey

WORK_UNITS_PER_PROCESS = 8  # small enough units that the processes finish together


@dataclass(frozen=True)
class Timed:
    """An audit's report, how long it took and with how many processes."""

    report: AuditReport
    seconds: float
    processes: int

    @property
    def rate(self) -> float:
        """Records checked per second."""
        return self.report.records / self.seconds if self.seconds > 0 else 0.0


def _check_segments(url: str, keyring_dir: str, segments: list[Segment]) -> tuple[int, list[Finding]]:
    """In a child process: check these segments on a connection of its own."""

    async def run() -> tuple[int, list[Finding]]:
        ring = keyring.load(Path(keyring_dir))
        conn = await db.connect(url)
        try:
            count, findings = 0, list[Finding]()
            for seg in segments:
                n, found = await check_segment(conn, ring, seg)
                count, findings = count + n, findings + found
            return count, findings
        finally:
            await conn.close()

    return asyncio.run(run())


def _units(segments: list[Segment], processes: int) -> list[list[Segment]]:
    """The segments dealt into work units of about equal size, largest first."""
    count = max(1, min(len(segments), processes * WORK_UNITS_PER_PROCESS))
    units: list[list[Segment]] = [[] for _ in range(count)]
    sizes = [0] * count
    for seg in sorted(segments, key=lambda s: -s.size):
        i = sizes.index(min(sizes))
        units[i].append(seg)
        sizes[i] += max(seg.size, 1)
    return [u for u in units if u]


async def _plan(url: str, issuer_id: str | None) -> tuple[int, list[Finding], list[Segment]]:
    conn = await db.connect(url)
    try:
        series = await chain_repository.series_to_audit(conn, issuer_id)
        return len(series), await check_numbers(conn, issuer_id), plan(series)
    finally:
        await conn.close()


async def _log(url: str, kept: Checkpoint) -> tuple[int, list[Finding]]:
    conn = await db.connect(url)
    try:
        return await check_log(conn, kept)
    finally:
        await conn.close()


def full_audit(url: str, keyring_dir: Path, issuer_id: str | None, kept: Checkpoint | None, processes: int) -> Timed:
    """Every series (of one issuer, or all), in `processes` processes; the log against `kept` when given."""
    start = time.perf_counter()
    series, findings, segments = asyncio.run(_plan(url, issuer_id))
    report = AuditReport(series=series, findings=findings)
    units = _units(segments, processes)
    total = sum(s.size for s in segments)
    with (
        ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn")) as pool,
        tqdm(total=total, unit=" records", disable=not sys.stderr.isatty(), file=sys.stderr) as bar,
    ):
        futures = {pool.submit(_check_segments, url, str(keyring_dir), unit): unit for unit in units}
        for future in as_completed(futures):
            count, found = future.result()
            report.records += count
            report.findings.extend(found)
            bar.update(sum(s.size for s in futures[future]))  # chain places covered, missing records included
    if kept is not None:
        report.leaves, found = asyncio.run(_log(url, kept))
        report.findings.extend(found)
    report.findings.sort(key=lambda f: (f.series, f.chain_seq or 0))
    return Timed(report, time.perf_counter() - start, processes)


def incremental_audit(url: str, keyring_dir: Path, kept: Checkpoint, key: VerifierKey) -> Timed:
    """What was added since the kept checkpoint."""

    async def run() -> AuditReport:
        conn = await db.connect(url)
        try:
            return await audit_since(conn, keyring.load(keyring_dir), kept, key)
        finally:
            await conn.close()

    start = time.perf_counter()
    report = asyncio.run(run())
    return Timed(report, time.perf_counter() - start, 1)


def default_processes() -> int:
    """One process per core."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
