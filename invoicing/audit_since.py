"""The incremental audit: what was added since a checkpoint kept outside the database, in seconds for a day's
records. The database's log must extend the kept checkpoint (its stored tiles at the kept size give the kept
root, and the leaves added since, appended to them, give the root of the latest signed checkpoint); every
record added since (in the log, or queued for it) is checked as the full audit checks a record: hash, key,
signature, columns, status, and its link to the record stored before it.

What it does not see: an edit to a record logged before the checkpoint (the log still holds its old hash, and
verification of that invoice says `tampered`); run the full audit for that, e.g. weekly."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg

from invoicing import chain_repository, log_repository, merkle
from invoicing.audit import AuditReport, Finding, check_row
from invoicing.checkpoint import Checkpoint, open_checkpoint
from invoicing.keyring import Keyring
from invoicing.note import NoteError, VerifierKey
from invoicing.transparency import stored_tiles

READ = 5_000  # leaves and records read at a time


async def _extends(conn: asyncpg.Connection, kept: Checkpoint, key: VerifierKey) -> tuple[list[str], list[Finding]]:
    """The record hashes the log added since `kept`, and what is wrong with the log itself."""
    head = await log_repository.head(conn)
    if head is None or head.size < kept.size:
        size = head.size if head else 0
        return [], [
            Finding("log", None, "head", f"the log has {size} entries, fewer than the kept {kept.size} (rolled back?)")
        ]
    try:
        open_checkpoint(head.checkpoint, key)
    except NoteError as exc:
        return [], [Finding("log", None, "head", f"the stored checkpoint does not open with the log key: {exc}")]
    edge = await stored_tiles(conn, merkle.tiles_for_append(kept.size))
    if merkle.root(kept.size, await stored_tiles(conn, merkle.tiles_for_root(kept.size))) != kept.root:
        return [], [
            Finding("log", None, f"size {kept.size}", "the stored tree differs from the kept checkpoint (rewritten)")
        ]
    added: list[str] = []
    while kept.size + len(added) < head.size:
        batch = await log_repository.leaves_from(conn, kept.size + len(added), READ)
        if not batch or batch[0][0] != kept.size + len(added):
            return added, [
                Finding("log", None, f"leaf {kept.size + len(added)}", "leaf missing from the log (removed?)")
            ]
        added.extend(h for _, h in batch[: head.size - kept.size - len(added)])
    grown = merkle.append(kept.size, edge, [bytes.fromhex(h) for h in added])
    if grown.root != head.root:
        return added, [
            Finding("log", None, f"size {head.size}", "the leaves added since do not give the checkpoint's root")
        ]
    return added, []


def _check(ring: Keyring, rows: list[asyncpg.Record], chained: dict[object, list[asyncpg.Record]]) -> Iterator[Finding]:
    good: dict[tuple[str, str, str], bool] = {}
    for row in rows:
        code = f"series {row['series_code']}"
        yield from check_row(ring, code, row, row["stored_prev"], chained.get(row["id"], []), good)


async def audit_since(conn: asyncpg.Connection, ring: Keyring, kept: Checkpoint, key: VerifierKey) -> AuditReport:
    """Audit the log's growth since `kept` and the records added since (logged or queued)."""
    added, findings = await _extends(conn, kept, key)
    report = AuditReport(leaves=len(added), findings=findings)
    hashes = added + await log_repository.queued_hashes(conn, 10_000_000)
    for start in range(0, len(hashes), READ):
        wanted = hashes[start : start + READ]
        rows = await chain_repository.records_by_hash(conn, wanted)
        missing = set(wanted) - {r["record_hash"] for r in rows}
        report.findings.extend(
            Finding("log", None, h, "record is in the log but not in the database (deleted?)") for h in sorted(missing)
        )
        chained: dict[object, list[asyncpg.Record]] = {}
        for record in await chain_repository.chained_records(conn, [r["id"] for r in rows if r["type"] == "record"]):
            chained.setdefault(record["of"], []).append(record)
        report.findings.extend(_check(ring, rows, chained))
        report.records += len(rows)
    return report
