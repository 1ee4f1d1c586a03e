"""`invoiceloop audit`: re-check every chain record against what an insider cannot forge.

Series by series: every record hash, chain link, number and series head; every signature against the keyring
(never the database), keys revoked when they signed listed; every invoice's status against its chained voids
and credit notes. With a checkpoint kept outside the database (a witness's), also the log: the tree is
recomputed from the leaves and must have the checkpoint's root, every record must be in the log (or queued for
it) and every leaf must be a record, so a deleted record or a rewritten log shows."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from invoicing import chain_repository, formats, log_repository, merkle
from invoicing.checkpoint import Checkpoint
from invoicing.integrity import StoredRecord, record_problem, status_problem
from invoicing.keyring import Keyring

LEAVES_PER_READ = 10_000


@dataclass(frozen=True)
class Finding:
    """One thing wrong: where (a series and its chain place or head, or the log) and what."""

    series: str
    chain_seq: int | None
    ref: str
    problem: str

    def __str__(self) -> str:
        where = f"#{self.chain_seq}" if self.chain_seq is not None else "head"
        return f"{self.series} {where} ({self.ref}): {self.problem}"


def _columns_agree(row: Any, content: dict[str, Any]) -> bool:
    """The indexed columns of an invoice row say what its hashed content says."""
    return (
        row["kind"] == content["kind"]
        and row["invoice_code"] == content["invoice_code"]
        and row["invoice_number"] == content["invoice_number"]
        and row["issue_date"].isoformat() == content["issue_date"]
        and all(Decimal(content[k]) == row[k] for k in ("total_amount", "total_tax", "total"))
    )


def check_series(
    series: Any, rows: list[Any], ring: Keyring, credit_notes: Mapping[str, list[StoredRecord]]
) -> Iterator[Finding]:
    """Every way a series' records can disagree with themselves or with what the keyring vouches for, in chain
    order. `credit_notes` are every credit note by the id of the invoice it credits (they may be in another
    series)."""
    code = f"series {series['invoice_code']}"
    expected_prev = series["previous_year_head"] or formats.ZERO_HASH
    for missing in sorted(set(range(1, series["last_seq"] + 1)) - {r["chain_seq"] for r in rows}):
        yield Finding(code, missing, "-", "record missing from the chain (deleted?)")
    numbers = sorted(int(r["invoice_number"]) for r in rows if r["type"] == "record")
    if numbers != list(range(1, series["last_number"] + 1)):
        yield Finding(code, None, "-", f"invoice numbers are not exactly 1..{series['last_number']}")
    voids = {row["ref"]: StoredRecord.of(row) for row in rows if row["type"] == "void"}
    good: dict[tuple[str, str, str], bool] = {}
    for row in rows:
        content, ref, record = row["content"], f"{row['type']} {row['ref']}", StoredRecord.of(row)
        if content.get("prev_hash") != row["prev_hash"] or row["prev_hash"] != expected_prev:
            yield Finding(code, row["chain_seq"], ref, "does not link to the record before it (reordered or removed?)")
        problem = record_problem(ring, record, good)
        if problem:
            yield Finding(code, row["chain_seq"], ref, problem)
        elif row["type"] == "record":
            if not _columns_agree(row, content):
                yield Finding(code, row["chain_seq"], ref, "row columns differ from the hashed content (edited?)")
            notes = credit_notes.get(row["ref"], [])
            status = status_problem(ring, record, row["status"], voids.get(row["ref"]), notes, good)
            if status:
                yield Finding(code, row["chain_seq"], ref, status)
        expected_prev = row["record_hash"]
    if series["last_hash"] != expected_prev:
        yield Finding(code, None, "head", "series head does not match its last record (records removed at the end?)")


@dataclass
class AuditReport:
    """What the audit went through and every finding."""

    series: int = 0
    records: int = 0
    leaves: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No finding."""
        return not self.findings


async def check_log(conn: asyncpg.Connection, kept: Checkpoint) -> tuple[int, list[Finding]]:
    """The log against a checkpoint kept outside the database: the tree recomputed from the leaves must have its
    root; every leaf must be a record and every record a leaf (or queued for the log). (leaves read, findings)."""
    findings: list[Finding] = []
    head = await log_repository.head(conn)
    if head is None or head.size < kept.size:
        size = head.size if head else 0
        problem = f"the log has {size} entries, fewer than the kept checkpoint's {kept.size} (rolled back?)"
        findings.append(Finding("log", None, "head", problem))
    builder, gap = merkle.RootBuilder(), False
    while builder.size < kept.size and not gap:
        batch = await log_repository.leaves_from(conn, builder.size, min(LEAVES_PER_READ, kept.size - builder.size))
        if not batch:
            break
        for index, record_hash in batch:
            if index != builder.size:
                gap = True
                break
            builder.add(bytes.fromhex(record_hash))
    if builder.size < kept.size:
        findings.append(Finding("log", None, f"leaf {builder.size}", "leaf missing from the log (removed?)"))
    elif builder.root() != kept.root:
        findings.append(
            Finding("log", None, f"size {kept.size}", "the log's tree differs from the kept checkpoint (rewritten)")
        )
    for index, record_hash in await log_repository.leaves_without_records(conn):
        problem = f"record {record_hash} is in the log but not in the database (deleted?)"
        findings.append(Finding("log", None, f"leaf {index}", problem))
    for kind, ref in await log_repository.records_outside_log(conn):
        findings.append(Finding("log", None, f"{kind} {ref}", "record is neither in the log nor queued for it"))
    return builder.size, findings


async def audit(
    conn: asyncpg.Connection, ring: Keyring, issuer_id: str | None = None, kept: Checkpoint | None = None
) -> AuditReport:
    """Re-check every series (of one issuer, or all); with a checkpoint kept outside the database, the log too."""
    report = AuditReport()
    credit_notes = await chain_repository.credit_notes_by_original(conn, issuer_id)
    for series in await chain_repository.series_to_audit(conn, issuer_id):
        rows = await chain_repository.chain_records(conn, series["id"])
        report.series += 1
        report.records += len(rows)
        report.findings.extend(check_series(series, rows, ring, credit_notes))
    if kept is not None:
        report.leaves, findings = await check_log(conn, kept)
        report.findings.extend(findings)
    return report
