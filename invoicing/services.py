"""Use cases. Each runs in one `async with conn.transaction()`: load -> model -> save -> mark work."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import asyncpg
from cachetools import LRUCache

from invoicing import chain_repository, formats, orders, repository
from invoicing.chain_repository import NewRecord, NewVoid, SeriesHead
from invoicing.errors import Conflict, IdempotencyMismatch, NotFound
from invoicing.keys import Signer
from invoicing.model import (
    CreditRequestLine,
    DeliveryMethod,
    Invoice,
    InvoiceRequest,
    Kind,
    Line,
    Party,
    compute_line,
    compute_totals,
    credit_lines,
    local_date,
    series_year,
    status_after_credit,
    sum_credited,
    void_refusal,
)
from invoicing.repository import Issuer


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Issuing:
    """What issuing needs besides the database: the check-code secret, the signer and a clock."""

    secret: bytes
    signer: Signer
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


@dataclass(frozen=True)
class Idempotency:
    key: str
    request_hash: str


@dataclass(frozen=True)
class Issued:
    invoices: list[Invoice]
    replayed: bool = False


# ---------------------------------------------------------------- issuers and keys


async def create_issuer(
    conn: asyncpg.Connection, *, name: str, tax_id: str, region: str, address: str = "", phone: str | None = None
) -> tuple[Issuer, str]:
    """A new issuer and its first API key (returned once; only its hash is stored)."""
    issuer = Issuer(str(uuid.uuid4()), name, tax_id, region, address, phone)
    async with conn.transaction():
        await repository.insert_issuer(conn, issuer)
        api_key = await repository.create_key(conn, "issuer", issuer.id)
    return issuer, api_key


# ---------------------------------------------------------------- issuing


def seal(inv: Invoice, issuing: Issuing) -> tuple[Invoice, str]:
    """Give a numbered record (check code already set) its record hash and signature; returns it with
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
    return replace(inv, record_hash=rec_hash, signature=issuing.signer.sign(core)), canonical.decode()


def _number(
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
        key_id=issuing.signer.key_id,
        delivery_method=draft.delivery,
        remarks=draft.remarks,
        original_invoice_id=original.id if original else None,
        original_invoice_code=original.invoice_code if original else None,
        original_invoice_number=original.invoice_number if original else None,
        delivery_status="pending" if draft.delivery == "postal" and draft.kind == "invoice" else None,
    )


async def _issue_drafts(
    conn: asyncpg.Connection, issuing: Issuing, issuer: Issuer, drafts: list[Draft]
) -> list[Invoice]:
    """Number, seal and write `drafts` inside the caller's transaction, in order within each series.

    Series are locked in label order so concurrent batches over several labels cannot deadlock."""
    now = issuing.clock()
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
            await chain_repository.ensure_series(conn, issuer, label, year)
            head = await chain_repository.bump_series(conn, issuer.id, label, year, len(indices))
            assert head is not None
        prev = head.last_hash
        for k, index in enumerate(indices):
            number = head.last_number - len(indices) + 1 + k
            inv, content = seal(_number(drafts[index], issuer, head.invoice_code, number, now, prev, issuing), issuing)
            records[index] = NewRecord(inv, head.id, head.last_seq - len(indices) + 1 + k, content)
            prev = inv.record_hash
        heads[head.id] = prev
    done = [r for r in records if r is not None]
    await chain_repository.insert_records(conn, issuer.id, issuing.signer.key_id, done, heads)
    return [r.invoice for r in done]


def draft_of(request: InvoiceRequest) -> Draft:
    lines = tuple(compute_line(item) for item in request.lines)
    return Draft("invoice", request.series, request.buyer, lines, request.delivery, request.remarks)


async def _replay(conn: asyncpg.Connection, issuer: Issuer, idem: Idempotency | None) -> Issued | None:
    """Claim the Idempotency-Key as the first statement of the transaction (waiting while another request holds
    it); when it was used before, the answer it gave (or 422 for another body). None: go on and issue."""
    if idem is None or await repository.claim_idempotency_key(conn, issuer.id, idem.key, idem.request_hash):
        return None
    request_hash, ids = await repository.idempotency_key(conn, issuer.id, idem.key)
    if request_hash != idem.request_hash:
        raise IdempotencyMismatch(f"Idempotency-Key {idem.key!r} was already used with another request body")
    return Issued(await repository.get_invoices(conn, issuer.id, ids), replayed=True)


async def _remember(conn: asyncpg.Connection, issuer: Issuer, idem: Idempotency | None, issued: list[Invoice]) -> None:
    """Store what a keyed request issued, in its transaction, for its retries."""
    if idem is not None:
        await repository.set_idempotency_ids(conn, issuer.id, idem.key, [inv.id for inv in issued])


OPTIMISTIC_TRIES = 2


async def _issue_one_optimistic(
    conn: asyncpg.Connection, issuing: Issuing, issuer: Issuer, draft: Draft
) -> Invoice | None:
    """Number, seal and sign one record against the series head as last seen, outside any lock, then
    append it in one statement that checks the head is unchanged. None when the series does not
    exist yet, is busy in this process, or its head kept moving: the caller takes the locking path."""
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
    for _ in range(OPTIMISTIC_TRIES):
        if head is None:
            return None
        inv, content = seal(
            _number(draft, issuer, head.invoice_code, head.last_number + 1, now, head.last_hash, issuing), issuing
        )
        if await chain_repository.insert_one_if_head(
            conn, issuing.signer.key_id, NewRecord(inv, head.id, head.last_seq + 1, content)
        ):
            issuing.heads[key] = SeriesHead(
                head.id, head.invoice_code, head.last_number + 1, head.last_seq + 1, inv.record_hash
            )
            return inv
        head = await chain_repository.read_head(conn, issuer.id, draft.series, key[2])
    issuing.heads.pop(key, None)
    return None


async def issue(
    conn: asyncpg.Connection, issuing: Issuing, issuer: Issuer, drafts: list[Draft], idem: Idempotency | None = None
) -> Issued:
    """Issue 1 to 1000 records all or nothing; with an Idempotency-Key a retry gets the same records.

    A single record without a key first tries the one-round-trip optimistic append; batches, keyed
    requests, new series and contended series lock the series row (UPDATE … RETURNING) instead."""
    if idem is None and len(drafts) == 1:
        inv = await _issue_one_optimistic(conn, issuing, issuer, drafts[0])
        if inv is not None:
            return Issued([inv])
    async with conn.transaction():
        if replay := await _replay(conn, issuer, idem):
            return replay
        invoices = await _issue_drafts(conn, issuing, issuer, drafts)
        await _remember(conn, issuer, idem, invoices)
    return Issued(invoices)


# ---------------------------------------------------------------- reading


async def get_invoice(conn: asyncpg.Connection, issuer_id: str, invoice_id: str) -> Invoice:
    row = await repository.get_invoice_row(conn, issuer_id, invoice_id)
    if row is None:
        raise NotFound(f"no invoice {invoice_id} for this issuer")
    return repository.to_invoice(row)


# ---------------------------------------------------------------- void and credit


async def void(conn: asyncpg.Connection, issuing: Issuing, issuer: Issuer, invoice_id: str, reason: str) -> Invoice:
    """Void an invoice of this month that nobody verified and the post has not taken; the void is
    appended to the series' chain as a record of its own."""
    async with conn.transaction():
        row = await repository.get_invoice_row(conn, issuer.id, invoice_id, lock=True)
        if row is None:
            raise NotFound(f"no invoice {invoice_id} for this issuer")
        inv = repository.to_invoice(row)
        now = issuing.clock()
        delivery = await chain_repository.delivery_status(conn, row["id"])
        why = void_refusal(
            inv,
            now,
            times_verified=row["times_verified"],
            has_credits=await chain_repository.has_credit_notes(conn, row["id"]),
            dispatched=orders.is_dispatched(delivery),
        )
        if why:
            raise Conflict(why)
        head = await chain_repository.bump_chain(conn, row["series_id"])
        content = formats.void_content(inv, reason=reason, voided_at=now, prev_hash=head.last_hash)
        canonical = formats.canonical_bytes(content)
        rec_hash = formats.sha256_hex(canonical)
        signature = issuing.signer.sign(formats.void_signing_core(content, rec_hash))
        await chain_repository.insert_void(
            conn,
            NewVoid(
                head.id,
                head.last_seq,
                row["id"],
                canonical.decode(),
                rec_hash,
                head.last_hash,
                signature,
                issuing.signer.key_id,
                now,
                reason,
            ),
        )
        if delivery is not None:
            await chain_repository.set_delivery_status(conn, row["id"], delivery, orders.CANCEL(delivery))
        return await get_invoice(conn, issuer.id, invoice_id)


async def credit(
    conn: asyncpg.Connection,
    issuing: Issuing,
    issuer: Issuer,
    invoice_id: str,
    reason: str,
    wanted: list[CreditRequestLine] | None,
    idem: Idempotency | None = None,
) -> Issued:
    """A red-letter credit note against the invoice (all of it, or the lines asked for), numbered in
    the current year's series of the original's label; the original becomes partially credited or
    reversed. The original is locked, so concurrent credits cannot together exceed it."""
    async with conn.transaction():
        if replay := await _replay(conn, issuer, idem):
            return replay
        row = await repository.get_invoice_row(conn, issuer.id, invoice_id, lock=True)
        if row is None:
            raise NotFound(f"no invoice {invoice_id} for this issuer")
        original = repository.to_invoice(row)
        notes = await repository.credit_notes_of(conn, original.id)
        done = sum_credited(original, notes)
        lines = credit_lines(original, done, wanted)
        draft = Draft("credit_note", original.series, original.buyer, tuple(lines), "electronic", reason, original)
        [note] = await _issue_drafts(conn, issuing, issuer, [draft])
        await chain_repository.set_status(
            conn, original.id, status_after_credit(original, sum_credited(original, [*notes, note]))
        )
        await _remember(conn, issuer, idem, [note])
    return Issued([note])
