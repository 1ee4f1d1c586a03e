"""`invoiceloop audit`: recompute every record hash, chain link and signature, series by series."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from invoicing import chain_repository, formats, repository
from invoicing.keys import verify_signature


@dataclass(frozen=True)
class Finding:
    """One thing wrong in a series: where (chain place or head) and what."""

    series: str
    chain_seq: int | None
    ref: str
    problem: str

    def __str__(self) -> str:
        where = f"#{self.chain_seq}" if self.chain_seq is not None else "head"
        return f"series {self.series} {where} ({self.ref}): {self.problem}"


def _columns_agree(row: Any, content: dict[str, Any]) -> bool:
    """The indexed columns of an invoice row say what its hashed content says."""
    return (
        row["kind"] == content["kind"]
        and row["invoice_code"] == content["invoice_code"]
        and row["invoice_number"] == content["invoice_number"]
        and row["issue_date"].isoformat() == content["issue_date"]
        and all(Decimal(content[k]) == row[k] for k in ("total_amount", "total_tax", "total"))
    )


def _signature_ok(row: Any, content: dict[str, Any], public_keys: dict[str, bytes]) -> bool:
    key = public_keys.get(row["key_id"])
    if key is None:
        return False
    if row["type"] == "void":
        core = formats.void_signing_core(content, row["record_hash"])
    else:
        inv = formats.invoice_from_content(
            content,
            id=row["ref"],
            issuer_id="",
            series="",
            status="issued",
            record_hash=row["record_hash"],
            signature=row["signature"],
            key_id=row["key_id"],
        )
        core = formats.invoice_signing_core(inv)
    return verify_signature(key, core, row["signature"])


def check_series(series: Any, rows: list[Any], public_keys: dict[str, bytes]) -> Iterator[Finding]:
    """Every way a series' records can disagree with themselves, in chain order."""
    code = series["invoice_code"]
    expected_prev = series["previous_year_head"] or formats.ZERO_HASH
    seqs = [r["chain_seq"] for r in rows]
    for missing in sorted(set(range(1, series["last_seq"] + 1)) - set(seqs)):
        yield Finding(code, missing, "-", "record missing from the chain (deleted?)")
    numbers = sorted(int(r["invoice_number"]) for r in rows if r["type"] == "record")
    if numbers != list(range(1, series["last_number"] + 1)):
        yield Finding(code, None, "-", f"invoice numbers are not exactly 1..{series['last_number']}")
    for row in rows:
        content, ref = row["content"], f"{row['type']} {row['ref']}"
        if formats.record_hash(content) != row["record_hash"]:
            yield Finding(code, row["chain_seq"], ref, "record hash does not match its content (edited?)")
        if content.get("prev_hash") != row["prev_hash"] or row["prev_hash"] != expected_prev:
            yield Finding(code, row["chain_seq"], ref, "does not link to the record before it (reordered or removed?)")
        if row["type"] == "record" and not _columns_agree(row, content):
            yield Finding(code, row["chain_seq"], ref, "row columns differ from the hashed content (edited?)")
        if not _signature_ok(row, content, public_keys):
            yield Finding(code, row["chain_seq"], ref, "signature does not verify against the published key")
        expected_prev = row["record_hash"]
    if series["last_hash"] != expected_prev:
        yield Finding(code, None, "head", "series head does not match its last record (records removed at the end?)")


@dataclass
class AuditReport:
    """What the audit went through and every finding."""

    series: int = 0
    records: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No finding."""
        return not self.findings


async def audit(conn: asyncpg.Connection, issuer_id: str | None = None) -> AuditReport:
    """Re-check every series (of one issuer, or all): hashes, links, numbering, signatures and the heads."""
    public_keys = await repository.signing_keys(conn)
    report = AuditReport()
    for series in await chain_repository.series_to_audit(conn, issuer_id):
        rows = await chain_repository.chain_records(conn, series["id"])
        report.series += 1
        report.records += len(rows)
        report.findings.extend(check_series(series, rows, public_keys))
    return report
