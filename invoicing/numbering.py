"""Numbering and sealing: how a draft becomes a numbered, hashed, chained and signed record. Two paths write
it: `issue_drafts` locks the series row (`UPDATE ... RETURNING`) inside the caller's transaction, for batches,
keyed requests, credit notes and new series; `append_one` appends a single record in one statement against
the head it last saw, and gives way to the locking path when the head moved."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

import asyncpg
from cachetools import LRUCache

from invoicing import chain_repository, formats
from invoicing.chain_repository import NewRecord, SeriesHead
from invoicing.errors import Conflict
from invoicing.keys import Signer
from invoicing.model import (
    DEFAULT_MAX_SERIES_PER_YEAR,
    DeliveryMethod,
    Invoice,
    InvoiceRequest,
    Kind,
    Line,
    Party,
    compute_line,
    compute_totals,
    local_date,
    new_series_refusal,
    series_year,
)
from invoicing.repository import Issuer


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SignerSource(Protocol):
    """Where the signer comes from: the keyring's active key (`invoicing.keyring.ActiveSigner`), or a fixed one."""

    def current(self) -> Signer:
        """The signer to use now; take it once per record, so its key id and signature go together."""
        ...


@dataclass(frozen=True)
class FixedSigner:
    """Always the same signer (tools and tests that need no rotation)."""

    signer: Signer

    def current(self) -> Signer:
        """The signer."""
        return self.signer


@dataclass(frozen=True)
class Issuing:
    """What issuing needs besides the database: the check-code secret, where the signer comes from, a clock."""

    secret: bytes
    signers: SignerSource
    max_series_per_year: int = DEFAULT_MAX_SERIES_PER_YEAR
    clock: Callable[[], datetime] = field(default=_utcnow)
    # Last known head per (issuer, label, year), so a single issue usually needs no read: a stale
    # entry only costs a retry (the insert checks the head), never a wrong number.
    heads: LRUCache[tuple[str, str, int], SeriesHead] = field(
        default_factory=lambda: LRUCache(maxsize=100_000), compare=False
    )
    # Issues under way per series in this process: a second one would only race the first, so it
    # takes the locking path and queues on the row instead.
    in_flight: dict[tuple[str, str, int], int] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Draft:
    """A record about to be numbered: figures computed, identity and proofs not yet given."""

    kind: Kind
    series: str
    buyer: Party
    lines: tuple[Line, ...]
    delivery: DeliveryMethod
    remarks: str
    original: Invoice | None = None


def seal(inv: Invoice, signer: Signer) -> tuple[Invoice, str]:
    """Give a numbered record (check code already set) its record hash, signature and key id; returns it with
    its canonical content as JSON text (what is stored, exactly as hashed)."""
    canonical = formats.canonical_bytes(formats.content_of(inv))
    rec_hash = formats.sha256_hex(canonical)
    core = formats.signing_core(
        inv.invoice_code,
        inv.invoice_number,
        inv.issue_date,
        inv.totals.total_amount,
        inv.totals.total_tax,
        inv.totals.total,
        inv.check_code,
        rec_hash,
    )
    return replace(inv, record_hash=rec_hash, signature=signer.sign(core), key_id=signer.key_id), canonical.decode()


def _numbered(
    draft: Draft, issuer: Issuer, code: str, number: int, now: datetime, prev_hash: str, issuing: Issuing
) -> Invoice:
    """The draft with its identity, check code and chain link (not yet hashed and signed)."""
    totals = compute_totals(draft.lines)
    original = draft.original
    issue_date, invoice_number = local_date(now), f"{number:08d}"
    return Invoice(
        id=str(uuid.uuid4()),
        issuer_id=issuer.id,
        kind=draft.kind,
        series=draft.series,
        invoice_code=code,
        invoice_number=invoice_number,
        issue_date=issue_date,
        issued_at=now,
        status="issued",
        seller=issuer.seller,
        buyer=draft.buyer,
        currency="CNY",
        lines=draft.lines,
        totals=totals,
        total_in_words=formats.amount_in_words(totals.total),
        check_code=formats.check_code(issuing.secret, code, invoice_number, issue_date, totals.total),
        record_hash="",
        prev_hash=prev_hash,
        signature="",
        key_id="",
        delivery_method=draft.delivery,
        remarks=draft.remarks,
        original_invoice_id=original.id if original else None,
        original_invoice_code=original.invoice_code if original else None,
        original_invoice_number=original.invoice_number if original else None,
        delivery_status="pending" if draft.delivery == "postal" and draft.kind == "invoice" else None,
    )


async def issue_drafts(
    conn: asyncpg.Connection, issuing: Issuing, issuer: Issuer, drafts: list[Draft]
) -> list[Invoice]:
    """Number, seal and write `drafts` inside the caller's transaction, in order within each series.

    Series are locked in label order so concurrent batches over several labels cannot deadlock."""
    now, signer = issuing.clock(), issuing.signers.current()
    year = series_year(now)
    by_label: dict[str, list[int]] = {}
    for i, draft in enumerate(drafts):
        by_label.setdefault(draft.series, []).append(i)
    records: list[NewRecord | None] = [None] * len(drafts)
    heads: dict[int, str] = {}
    for label in sorted(by_label):
        indices = by_label[label]
        head = await chain_repository.bump_series(conn, issuer.id, label, year, len(indices))
        if head is None:
            await _open_series(conn, issuing, issuer, label, year)
            head = await chain_repository.bump_series(conn, issuer.id, label, year, len(indices))
            assert head is not None
        prev = head.last_hash
        for k, index in enumerate(indices):
            number = head.last_number - len(indices) + 1 + k
            inv, content = seal(_numbered(drafts[index], issuer, head.invoice_code, number, now, prev, issuing), signer)
            records[index] = NewRecord(inv, head.id, head.last_seq - len(indices) + 1 + k, content)
            prev = inv.record_hash
        heads[head.id] = prev
    done = [r for r in records if r is not None]
    await chain_repository.insert_records(conn, issuer.id, signer.key_id, done, heads)
    return [r.invoice for r in done]


async def _open_series(conn: asyncpg.Connection, issuing: Issuing, issuer: Issuer, label: str, year: int) -> None:
    """Open the issuer's series for `label` unless it is open: refused (409) past the issuer's yearly cap of new
    series, or when the region has no invoice codes left this year."""
    await chain_repository.lock_series_creation(conn, issuer.id, year)
    if await chain_repository.series_exists(conn, issuer.id, label, year):
        return
    why = new_series_refusal(await chain_repository.count_series(conn, issuer.id, year), issuing.max_series_per_year)
    if why:
        raise Conflict(why)
    serial = await chain_repository.next_code_serial(conn, issuer.region, year)
    if serial is None:
        raise Conflict(f"region {issuer.region} has no invoice codes left for {year}; write to the tax bureau")
    await chain_repository.insert_series(conn, issuer, label, year, serial)


def draft_of(request: InvoiceRequest) -> Draft:
    """The draft of a validated issue request: each line's figures computed."""
    lines = tuple(compute_line(item) for item in request.lines)
    return Draft("invoice", request.series, request.buyer, lines, request.delivery, request.remarks)


OPTIMISTIC_TRIES = 2


async def append_one(conn: asyncpg.Connection, issuing: Issuing, issuer: Issuer, draft: Draft) -> Invoice | None:
    """Number, seal and sign one record against the series head as last seen, outside any lock, then
    append it in one statement that checks the head is unchanged (its own transaction). None when the series
    does not exist yet, is busy in this process, or its head kept moving: the caller takes the locking path."""
    now = issuing.clock()
    key = (issuer.id, draft.series, series_year(now))
    if issuing.in_flight.get(key):
        return None
    issuing.in_flight[key] = 1
    try:
        return await _append_optimistic(conn, issuing, issuer, draft, now, key)
    finally:
        del issuing.in_flight[key]


async def _append_optimistic(
    conn: asyncpg.Connection, issuing: Issuing, issuer: Issuer, draft: Draft, now: datetime, key: tuple[str, str, int]
) -> Invoice | None:
    head = issuing.heads.get(key) or await chain_repository.read_head(conn, issuer.id, draft.series, key[2])
    signer = issuing.signers.current()
    for _ in range(OPTIMISTIC_TRIES):
        if head is None:
            return None
        numbered = _numbered(draft, issuer, head.invoice_code, head.last_number + 1, now, head.last_hash, issuing)
        inv, content = seal(numbered, signer)
        if await chain_repository.insert_one_if_head(conn, NewRecord(inv, head.id, head.last_seq + 1, content)):
            issuing.heads[key] = SeriesHead(
                head.id, head.invoice_code, head.last_number + 1, head.last_seq + 1, inv.record_hash
            )
            return inv
        head = await chain_repository.read_head(conn, issuer.id, draft.series, key[2])
    issuing.heads.pop(key, None)
    return None
