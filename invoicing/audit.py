"""`invoiceloop audit`: re-check every chain record against what an insider cannot forge.

Series by series: every record hash, chain link, number and series head; every signature against the keyring
(never the database), keys revoked when they signed listed; every invoice's status against its chained voids
and credit notes. With a checkpoint kept outside the database (a witness's), also the log: the tree is
recomputed from the leaves and must have the checkpoint's root, every record must be in the log (or queued for
it) and every leaf must be a record, so a deleted record or a rewritten log shows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from invoicing import chain_repository, formats, log_repository, merkle
from invoicing.checkpoint import Checkpoint
from invoicing.integrity import StoredRecord, record_problem, status_problem
from invoicing.keyring import Keyring

LEAVES_PER_READ = 10_000
SEGMENT = 20_000  # chain places per unit of work


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


@dataclass(frozen=True)
class Segment:
    """A run of one series' chain, places `first`..`last`: the unit of work of the audit (a long series is cut
    into several, checked in parallel). `start_hash`: what the first record must link to when the run starts the
    chain (the same label's head of the year before, or zeros); None: the record before it, as stored.
    `head_hash`: the series head, checked after the last record when the run ends the chain."""

    series_id: int
    code: str
    first: int
    last: int
    start_hash: str | None
    head_hash: str | None

    @property
    def size(self) -> int:
        """How many chain places the run covers."""
        return self.last - self.first + 1


def plan(series: list[Any], size: int = SEGMENT) -> list[Segment]:
    """The segments of these series (rows of `chain_repository.series_to_audit`), each at most `size` places."""
    out = []
    for s in series:
        code, last_seq = f"series {s['invoice_code']}", s["last_seq"]
        start = s["previous_year_head"] or formats.ZERO_HASH
        if last_seq == 0:
            out.append(Segment(s["id"], code, 1, 0, start, s["last_hash"]))
        for first in range(1, last_seq + 1, size):
            last = min(first + size - 1, last_seq)
            out.append(
                Segment(
                    s["id"],
                    code,
                    first,
                    last,
                    start if first == 1 else None,
                    s["last_hash"] if last == last_seq else None,
                )
            )
    return out


async def check_segment(conn: asyncpg.Connection, ring: Keyring, seg: Segment) -> tuple[int, list[Finding]]:
    """Every way a run of a chain can disagree with itself or with what the keyring vouches for: missing places,
    broken links, edited records, signatures, columns, and each invoice's status against its chained void and
    credit notes (wherever they are). (records read, findings)."""
    rows = await chain_repository.chain_records(conn, seg.series_id, seg.first, seg.last)
    chained: dict[Any, list[Any]] = {}
    for record in await chain_repository.chained_records(conn, [r["id"] for r in rows if r["type"] == "record"]):
        chained.setdefault(record["of"], []).append(record)
    found = [
        Finding(seg.code, m, "-", "record missing from the chain (deleted?)")
        for m in sorted(set(range(seg.first, seg.last + 1)) - {r["chain_seq"] for r in rows})
    ]
    expected = (
        seg.start_hash
        if seg.start_hash is not None
        else await chain_repository.hash_at(conn, seg.series_id, seg.first - 1)
    )
    good: dict[tuple[str, str, str], bool] = {}
    for row in rows:
        found.extend(check_row(ring, seg.code, row, expected, chained.get(row["id"], []), good))
        expected = row["record_hash"]
    if seg.head_hash is not None and seg.head_hash != expected:
        found.append(
            Finding(seg.code, None, "head", "series head does not match its last record (records removed at the end?)")
        )
    return len(rows), found


def check_row(
    ring: Keyring,
    code: str,
    row: Any,
    expected_prev: str | None,
    chained: list[Any],
    good: dict[tuple[str, str, str], bool],
) -> Iterator[Finding]:
    """What is wrong with one stored record: its link to `expected_prev`, its hash, key and signature, its
    columns, and (an invoice) its status against its `chained` void and credit notes."""
    content, ref, record = row["content"], f"{row['type']} {row['ref']}", StoredRecord.of(row)
    if content.get("prev_hash") != row["prev_hash"] or row["prev_hash"] != expected_prev:
        yield Finding(code, row["chain_seq"], ref, "does not link to the record before it (reordered or removed?)")
    problem = record_problem(ring, record, good)
    if problem:
        yield Finding(code, row["chain_seq"], ref, problem)
        return
    if row["type"] != "record":
        return
    if not _columns_agree(row, content):
        yield Finding(code, row["chain_seq"], ref, "row columns differ from the hashed content (edited?)")
    void = next((StoredRecord.of(c) for c in chained if c["void"]), None)
    notes = [StoredRecord.of(c) for c in chained if not c["void"]]
    status = status_problem(ring, record, row["status"], void, notes, good)
    if status:
        yield Finding(code, row["chain_seq"], ref, status)


async def check_numbers(conn: asyncpg.Connection, issuer_id: str | None) -> list[Finding]:
    """Each series' invoice numbers are exactly 1..its counter: none skipped, none repeated."""
    found = []
    for s in await chain_repository.number_summaries(conn, issuer_id):
        n = s["last_number"]
        gapless = s["n"] == s["distinct_n"] == n and (n == 0 or (int(s["lo"]) == 1 and int(s["hi"]) == n))
        if not gapless:
            found.append(Finding(f"series {s['invoice_code']}", None, "-", f"invoice numbers are not exactly 1..{n}"))
    return found


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
    """Re-check every series (of one issuer, or all), segment after segment on this connection; with a checkpoint
    kept outside the database, the log too. (`invoiceloop audit` runs the segments in parallel processes.)"""
    series = await chain_repository.series_to_audit(conn, issuer_id)
    report = AuditReport(series=len(series), findings=await check_numbers(conn, issuer_id))
    for seg in plan(series):
        count, findings = await check_segment(conn, ring, seg)
        report.records += count
        report.findings.extend(findings)
    if kept is not None:
        report.leaves, findings = await check_log(conn, kept)
        report.findings.extend(findings)
    return report
