"""Numbering and sealing: how a draft becomes a numbered, hashed, chained and signed record. A draft is first made
into a record in all that does not depend on its place in the series (`unplaced`, before any lock), then placed
after its series head and sealed (`placed`), and one statement writes the records and moves the heads, only
where each head is still the one sealed against (`chain_repository.INSERT_RECORDS`). `issue_drafts` does it for
one issuer's batch, all or nothing, opening series as needed, against heads locked in the caller's transaction;
`issue_grouped` for a group of single issues from many issuers, each on its own, against heads read without a
lock (no lock is held between statements), leaving out those whose series is not open yet."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
import msgspec
from prometheus_client import Counter
from uuid_utils import uuid7

from invoicing import chain_repository, formats
from invoicing.buyer_texts import BuyerTexts
from invoicing.chain_repository import IDEMPOTENCY_KEY_TAKEN, KeyedRecord, NewRecord, SeriesHead, SeriesKey
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
    texts: BuyerTexts | None = None  # the buyer's SMS with a download link; None: no texts are written


class Draft(msgspec.Struct, frozen=True):
    """A record about to be numbered: figures computed, identity and proofs not yet given."""

    kind: Kind
    series: str
    buyer: Party
    lines: tuple[Line, ...]
    delivery: DeliveryMethod
    remarks: str
    original: Invoice | None = None


class IssuerDraft(msgspec.Struct, frozen=True):
    """A draft and who issues it."""

    issuer: Issuer
    draft: Draft


class Unplaced(msgspec.Struct, frozen=True):
    """A draft made into a record in all but its place in the series (invoice code and number, check code, chain
    link) and its proofs: what can be done before the series is locked, so that the lock is held only for the
    rest (`placed`)."""

    issuer: Issuer
    invoice: Invoice  # code, number, check code, previous hash and proofs still empty
    content: dict[str, Any]  # formats.unplaced_content(invoice)

    @property
    def series_key(self) -> SeriesKey:
        """Which series (of the year) it is numbered in."""
        return self.issuer.id, self.invoice.series


def unplaced(draft: Draft, issuer: Issuer, now: datetime) -> Unplaced:
    """The record of `draft`, issued by `issuer` at `now`, before it is placed in its series."""
    totals = compute_totals(draft.lines)
    original = draft.original
    invoice = Invoice(
        # Time-ordered: the primary key's index grows at one end (docs/scale-data.md). uuid_utils' own UUID, made
        # into text in Rust: 0.5 µs against 3 µs through a standard-library UUID (`uuid_utils.compat`).
        id=str(uuid7()),
        issuer_id=issuer.id,
        kind=draft.kind,
        series=draft.series,
        invoice_code="",
        invoice_number="",
        issue_date=local_date(now),
        issued_at=now,
        status="issued",
        seller=issuer.seller,
        buyer=draft.buyer,
        currency="CNY",
        lines=draft.lines,
        totals=totals,
        total_in_words=formats.amount_in_words(totals.total),
        check_code="",
        record_hash="",
        prev_hash="",
        signature="",
        key_id="",
        delivery_method=draft.delivery,
        remarks=draft.remarks,
        original_invoice_id=original.id if original else None,
        original_invoice_code=original.invoice_code if original else None,
        original_invoice_number=original.invoice_number if original else None,
        delivery_status="pending" if draft.delivery == "postal" and draft.kind == "invoice" else None,
    )
    return Unplaced(issuer, invoice, formats.unplaced_content(invoice))


def placed(
    record: Unplaced, code: str, number: int, prev_hash: str, issuing: Issuing, signer: Signer
) -> tuple[Invoice, dict[str, Any], str]:
    """The record numbered `number` in the series of invoice code `code`, after the record of hash `prev_hash`:
    its check code, record hash (of its canonical content), signature and key id. Returns it with its canonical
    content, as made (what the answer states) and as JSON text (what is stored, exactly as hashed)."""
    inv, invoice_number = record.invoice, f"{number:08d}"
    check = formats.check_code(issuing.secret, code, invoice_number, inv.issue_date, inv.totals.total)
    content = formats.placed_content(record.content, code, invoice_number, check, prev_hash)
    canonical = formats.canonical_bytes(content)
    rec_hash = formats.sha256_hex(canonical)
    core = formats.signing_core(
        code,
        invoice_number,
        inv.issue_date,
        inv.totals.total_amount,
        inv.totals.total_tax,
        inv.totals.total,
        check,
        rec_hash,
    )
    sealed = inv.sealed(code, invoice_number, check, prev_hash, rec_hash, signer.sign(core), signer.key_id)
    return sealed, content, canonical.decode()


# From this many lines in one call, making the records (`unplaced`) runs in a thread, so that a large batch
# does not hold the event loop; below it the thread hop costs more than it frees.
MAKE_IN_THREAD_LINES = 500


async def unplaced_all(issuer: Issuer, drafts: Sequence[Draft], now: datetime) -> list[Unplaced]:
    """`unplaced` of each of the issuer's drafts, in a thread for a large batch."""
    if sum(len(draft.lines) for draft in drafts) >= MAKE_IN_THREAD_LINES:
        return await asyncio.to_thread(_unplaced_each, issuer, drafts, now)
    return _unplaced_each(issuer, drafts, now)


def _unplaced_each(issuer: Issuer, drafts: Sequence[Draft], now: datetime) -> list[Unplaced]:
    return [unplaced(draft, issuer, now) for draft in drafts]


@dataclass(frozen=True)
class Locked:
    """An issuer's series heads, locked in the caller's transaction."""

    heads: dict[SeriesKey, SeriesHead]


async def lock_series(
    conn: asyncpg.Connection, issuing: Issuing, issuer: Issuer, labels: Sequence[str], now: datetime
) -> Locked:
    """Lock the issuer's series of these labels, in the year of `now`, until the caller's transaction ends (in id
    order), opening those not yet open (409 when that is refused)."""
    year = series_year(now)
    keys = sorted({(issuer.id, label) for label in labels})
    heads = await chain_repository.lock_heads(conn, keys, year)
    missing = [key for key in keys if key not in heads]
    if missing:
        for _, label in missing:
            await _open_series(conn, issuing, issuer, label, year)
        heads |= await chain_repository.lock_heads(conn, missing, year)
    return Locked(heads)


async def write_records(
    conn: asyncpg.Connection, issuing: Issuing, records: Sequence[Unplaced], locked: Locked
) -> list[NewRecord]:
    """Place, seal and write `records` in the series `lock_series` locked, in order within each series.

    A large batch goes in pieces of `WRITE_PIECE`, one statement each, in this transaction: while the database
    writes one piece, a thread seals the next against the heads the piece before left. The series stay locked for
    about the longer of the two, not their sum (docs/issuing.md); all of it commits or none of it."""
    if not records:
        return []
    signer = issuing.signers.current()
    pieces = [records[i : i + WRITE_PIECE] for i in range(0, len(records), WRITE_PIECE)]
    heads = locked.heads
    next_piece = _sealing(issuing, signer, pieces[0], heads)
    out: list[NewRecord] = []
    try:
        for i in range(len(pieces)):
            sealed = await next_piece
            if i + 1 < len(pieces):
                next_piece = _sealing(issuing, signer, pieces[i + 1], sealed.after)
            if stale := await _insert(conn, signer, sealed, heads):  # cannot happen: the heads are locked here
                raise RuntimeError(f"series {sorted(h.id for h in stale)} moved while locked")
            out.extend(sealed.records)
            heads = sealed.after
    finally:
        if not next_piece.done():  # a piece's statement failed while the next was being sealed
            await asyncio.wait([next_piece])
    return out


async def issue_drafts(
    conn: asyncpg.Connection, issuing: Issuing, issuer: Issuer, drafts: Sequence[Draft]
) -> list[Invoice]:
    """Number, seal and write `drafts` inside the caller's transaction, in order within each series, opening
    the series not yet open (409 when that is refused)."""
    now = issuing.clock()
    locked = await lock_series(conn, issuing, issuer, [d.series for d in drafts], now)
    written = await write_records(conn, issuing, await unplaced_all(issuer, drafts, now), locked)
    return [r.invoice for r in written]


# How many times a group's records are sealed against heads read without a lock (as they were read, then as a
# losing try found them); the try after those is sealed against heads locked for it, in a transaction, and cannot
# lose.
GUESSES = 2

HEAD_RETRIES = Counter(
    "invoiceloop_issue_head_retries",
    "Series of a group of single issues sealed again because another writer had moved the series on",
)


async def issue_grouped(
    conn: asyncpg.Connection,
    issuing: Issuing,
    pending: Sequence[IssuerDraft],
    keys: Sequence[tuple[str, str] | None] = (),
) -> list[NewRecord | None]:
    """Number, seal and write each one whose series is open this year, in the order given within each series,
    each with its Idempotency-Key (`keys`: key and request hash, or None) stored beside it; None for the others
    (`issue_drafts` opens their series; a keyed one whose key exists already, or is given twice, is left to
    `services.issue`, which replays or refuses it).

    The heads are read without a lock and the records sealed against them are written in one statement, for each
    series whose head has not moved meanwhile (INSERT_RECORDS): no lock is held while this process seals or
    waits for its turn on the event loop. A series another writer moved on is sealed again against its head as the
    statement found it; the last try locks its heads first. `conn` must not be in a transaction."""
    now = issuing.clock()
    year = series_year(now)
    keyed = list(keys) or [None] * len(pending)
    ready = [unplaced(a.draft, a.issuer, now) for a in pending]  # a try that loses redoes only the placing
    known = await chain_repository.read_heads(conn, sorted({r.series_key for r in ready}), year)
    result: list[NewRecord | None] = [None] * len(pending)
    todo = [i for i, r in enumerate(ready) if r.series_key in known]
    tries = 0
    while todo:
        locked = tries == GUESSES
        tx: AbstractAsyncContextManager[object] = conn.transaction() if locked else nullcontext()
        try:
            async with tx:
                wanted = sorted({ready[i].series_key for i in todo})
                if locked:
                    known |= await chain_repository.lock_heads(conn, wanted, year)
                heads = {key: known[key] for key in wanted}
                written = await _write(conn, issuing, [ready[i] for i in todo], heads, [keyed[i] for i in todo])
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != IDEMPOTENCY_KEY_TAKEN:
                raise
            todo = [i for i in todo if keyed[i] is None]  # nothing was written: the keyed ones go on alone
            continue
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
            break  # nothing of this try was written: what is left goes on alone
        except Exception:
            if any(r is not None for r in result):
                break  # an earlier try wrote some: they are answered, the rest go on alone (and meet the fault)
            raise
        by_id = {head.id: key for key, head in heads.items()}
        for series_id, head in written.stale.items():
            known[by_id[series_id]] = head
        HEAD_RETRIES.inc(len(written.stale))
        for i, rec in zip(todo, written.records, strict=True):
            if rec.series_id not in written.stale:
                result[i] = rec
        todo = [i for i, rec in zip(todo, written.records, strict=True) if rec.series_id in written.stale]
        tries += 1
    return result


# A large batch is sealed and written in pieces of this many records (`write_records`): small enough that the
# first piece's sealing, which nothing overlaps, is short; large enough that each statement's fixed cost is spread.
WRITE_PIECE = 200
# From this many records, placing and sealing them (about 30 µs a record) and the buyer's texts (a new phone's SMS
# check, phonenumbers' number type, is about 0.5 ms) run in a thread, so that a batch does not hold the event loop;
# a smaller group stays on the loop, where the hop would cost more.
SEAL_IN_THREAD = 50


@dataclass(frozen=True)
class Written:
    """What `_write` sealed and which of it the database took."""

    records: list[NewRecord]  # every record sealed, in the order given
    stale: dict[int, SeriesHead]  # by series id, each series that had moved on, as it is now: none of it written


@dataclass(frozen=True)
class Sealed:
    """Records placed and sealed after some heads, with what else their statement writes."""

    records: list[NewRecord]
    after: dict[SeriesKey, SeriesHead]  # each series' head after them (the same object where none was placed)
    texts: list[tuple[str, str, str, str]]  # the buyer's texts (`buyer_texts_of`)


def _sealing(
    issuing: Issuing, signer: Signer, pending: Sequence[Unplaced], heads: dict[SeriesKey, SeriesHead]
) -> asyncio.Future[Sealed]:
    """The records placed and sealed after `heads`, with their buyer's texts: in a thread from `SEAL_IN_THREAD`
    records (await the future), made at once below it."""
    if len(pending) >= SEAL_IN_THREAD:
        return asyncio.ensure_future(asyncio.to_thread(_seal_piece, issuing, signer, pending, heads))
    done: asyncio.Future[Sealed] = asyncio.get_running_loop().create_future()
    done.set_result(_seal_piece(issuing, signer, pending, heads))
    return done


def _seal_piece(
    issuing: Issuing, signer: Signer, pending: Sequence[Unplaced], heads: dict[SeriesKey, SeriesHead]
) -> Sealed:
    """`_seal_all` and the buyer's texts of the records."""
    records, after = _seal_all(issuing, signer, pending, heads)
    invoices = [r.invoice for r in records]
    return Sealed(records, after, buyer_texts_of(invoices, issuing.texts, invoices[0].issued_at))


async def _insert(
    conn: asyncpg.Connection,
    signer: Signer,
    sealed: Sealed,
    heads: dict[SeriesKey, SeriesHead],
    claims: Sequence[KeyedRecord] = (),
) -> list[SeriesHead]:
    """Write sealed records with the heads they moved from `heads` (INSERT_RECORDS): the heads, as they are now,
    of the series that had moved on, none of whose records were written."""
    moved = [(heads[key], head) for key, head in sealed.after.items() if head is not heads[key]]
    return await chain_repository.insert_records(conn, signer.key_id, sealed.records, moved, sealed.texts, claims)


async def _write(
    conn: asyncpg.Connection,
    issuing: Issuing,
    pending: Sequence[Unplaced],
    heads: dict[SeriesKey, SeriesHead],
    keys: Sequence[tuple[str, str] | None] = (),
) -> Written:
    """Place and seal each record after its series' head in `heads`, then write them all and the new heads in one
    statement, each series only while its head is still the one given; `keys` (each record's Idempotency-Key and
    request hash, or None) are stored beside their records."""
    if not pending:
        return Written([], {})
    signer = issuing.signers.current()
    sealed = await _sealing(issuing, signer, pending, heads)
    claims: list[KeyedRecord] = [
        (one.issuer.id, *key, rec.invoice.id)
        for one, key, rec in zip(pending, keys, sealed.records, strict=False)
        if key
    ]
    stale = await _insert(conn, signer, sealed, heads, claims)
    return Written(sealed.records, {head.id: head for head in stale})


def buyer_texts_of(
    invoices: Sequence[Invoice], texts: BuyerTexts | None, now: datetime
) -> list[tuple[str, str, str, str]]:
    """(record id, kind, phone, text) of the buyer's SMS of each record that gets one (`BuyerTexts.text`)."""
    if texts is None:
        return []
    rows: list[tuple[str, str, str, str]] = []
    for inv in invoices:
        one = texts.text(inv.kind, inv, now)
        if one is not None:
            rows.append((inv.id, inv.kind, *one))
    return rows


def _seal_all(
    issuing: Issuing, signer: Signer, pending: Sequence[Unplaced], heads: dict[SeriesKey, SeriesHead]
) -> tuple[list[NewRecord], dict[SeriesKey, SeriesHead]]:
    """Place and seal each record in order after the heads; the records, and each series' head after them."""
    moved = dict(heads)
    records = []
    for one in pending:
        head = moved[one.series_key]
        number, seq = head.last_number + 1, head.last_seq + 1
        inv, content, canonical = placed(one, head.invoice_code, number, head.last_hash, issuing, signer)
        records.append(NewRecord(inv, head.id, seq, canonical, content))
        moved[one.series_key] = SeriesHead(head.id, head.invoice_code, number, seq, inv.record_hash)
    return records, moved


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
    """The draft of a validated issue request."""
    return Draft("invoice", request.series, request.buyer, request.lines, request.delivery, request.remarks)
