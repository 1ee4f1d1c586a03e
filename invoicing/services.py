"""Use cases. Each runs in one `async with conn.transaction()`: load -> model -> save -> mark work."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from prometheus_client import Histogram

from invoicing import chain_repository, formats, numbering, orders, repository
from invoicing.batching import Coalescer
from invoicing.chain_repository import NewRecord, NewVoid
from invoicing.corrections import CreditRequestLine, credit_lines, status_after_credit, sum_credited, void_refusal
from invoicing.errors import Conflict, IdempotencyMismatch, NotFound
from invoicing.model import Invoice
from invoicing.repository import Issuer

GROUP_SIZE = Histogram(
    "invoiceloop_issue_group_size",
    "Single issues written together (in one statement, or a few when series had moved on) by this process",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)


# Turns of the event loop a group's lane lets pass before the next group (`Coalescer`): the requests just answered
# come back and join it. Under 16 connections on two serve processes, groups went from 2-5 records to 5-11 and the
# issue rate up by a tenth (8 turns: about half of that; 32 and 64: the idle turns cost more than they gather).
SETTLE_TURNS = 16


@dataclass(frozen=True)
class Idempotency:
    """An Idempotency-Key and the digest of the request it came with."""

    key: str
    request_hash: str


@dataclass(frozen=True)
class Issued:
    """What an issuing request answers: the records, and whether they are an earlier request's (a replay)."""

    invoices: list[Invoice]
    replayed: bool = False
    # Their canonical content when they were made by this request (the answer states it as made); None when they
    # were read back (a replay, a credit note): the answer makes it again (`formats.content_of`).
    contents: list[dict[str, Any]] | None = None


# ---------------------------------------------------------------- issuers and keys


async def create_issuer(
    conn: asyncpg.Connection, *, name: str, tax_id: str, region: str, address: str = "", phone: str | None = None
) -> tuple[Issuer, str]:
    """A new issuer and its first API key (returned once; only its hash is stored)."""
    issuer = Issuer(str(uuid.uuid4()), name, tax_id, region, address, phone)
    async with conn.transaction():
        if await repository.issuer_with_tax_id(conn, tax_id):
            raise Conflict(f"an issuer with tax ID {tax_id} exists already")
        try:
            await repository.insert_issuer(conn, issuer)
        except asyncpg.UniqueViolationError:  # another creation of the same tax ID won the race
            raise Conflict(f"an issuer with tax ID {tax_id} exists already") from None
        api_key = await repository.create_key(conn, "issuer", issuer.id)
    return issuer, api_key


async def _replay(conn: asyncpg.Connection, issuer: Issuer, idem: Idempotency | None) -> Issued | None:
    """Claim the Idempotency-Key (waiting while another request holds it); when it was used before, the answer it
    gave (or 422 for another body). None: go on and issue."""
    if idem is None or await repository.claim_idempotency_keys(conn, [(issuer.id, idem.key, idem.request_hash)]):
        return None
    request_hash, ids = await repository.idempotency_key(conn, issuer.id, idem.key)
    if request_hash != idem.request_hash:
        raise IdempotencyMismatch(f"Idempotency-Key {idem.key!r} was already used with another request body")
    return Issued(await repository.get_invoices(conn, issuer.id, ids), replayed=True)


async def _remember(conn: asyncpg.Connection, issuer: Issuer, idem: Idempotency | None, issued: list[Invoice]) -> None:
    """Store what a keyed request issued, in its transaction, for its retries."""
    if idem is not None:
        await repository.set_idempotency_ids(conn, issuer.id, idem.key, [inv.id for inv in issued])


async def issue(
    conn: asyncpg.Connection,
    issuing: numbering.Issuing,
    issuer: Issuer,
    drafts: list[numbering.Draft],
    idem: Idempotency | None = None,
) -> Issued:
    """Issue 1 to 1000 records all or nothing; with an Idempotency-Key a retry gets the same records.

    The records are made before the transaction, all but their places in the series (`numbering.unplaced`): the
    series stay locked only while the records are placed, sealed and written. The series are locked before the
    key is claimed, in the order a group of single issues takes them (its key goes in the statement that writes
    its series): a retry racing its first try then waits for it, instead of each holding what the other waits
    for."""
    now = issuing.clock()
    records = await numbering.unplaced_all(issuer, drafts, now)
    async with conn.transaction():
        locked = await numbering.lock_series(conn, issuing, issuer, [d.series for d in drafts], now)
        if replay := await _replay(conn, issuer, idem):
            return replay
        written = await numbering.write_records(conn, issuing, records, locked)
        invoices = [r.invoice for r in written]
        await _remember(conn, issuer, idem, invoices)
    return Issued(invoices, contents=[r.content for r in written])


@dataclass(frozen=True)
class SingleIssue:
    """One request to issue one invoice."""

    issuer: Issuer
    draft: numbering.Draft
    idem: Idempotency | None = None


class IssueGroups:
    """Single issues made at the same time in this process, issued together: one statement writes the group, each
    request still answered on its own (docs/issuing.md). The group is sealed against series heads read without a
    lock, so nothing is locked between statements (`numbering.issue_grouped`).

    A request whose series is not open yet, or whose Idempotency-Key was used before, is then issued alone by
    `issue`, as is what is left of a group the database refused (deadlock, serialization failure)."""

    def __init__(self, pool: asyncpg.Pool, issuing: numbering.Issuing, *, lanes: int = 1, max_batch: int = 64) -> None:
        self.pool, self.issuing = pool, issuing
        self.batches: Coalescer[SingleIssue, Issued] = Coalescer(
            self._run, lanes=lanes, max_batch=max_batch, settle_turns=SETTLE_TURNS
        )

    async def issue(self, issuer: Issuer, draft: numbering.Draft, idem: Idempotency | None = None) -> Issued:
        """Issue one invoice, in a group with whatever else is being issued now."""
        return await self.batches.submit(SingleIssue(issuer, draft, idem))

    async def _run(self, group: list[SingleIssue]) -> list[Issued | BaseException]:
        async with self.pool.acquire() as conn:
            written = await issue_group(conn, self.issuing, group)
            results: list[Issued | BaseException] = []
            for one, rec in zip(group, written, strict=True):
                if rec is not None:
                    results.append(Issued([rec.invoice], contents=[rec.content]))
                    continue
                try:
                    results.append(await issue(conn, self.issuing, one.issuer, [one.draft], one.idem))
                except Exception as exc:
                    results.append(exc)
            return results


async def issue_group(
    conn: asyncpg.Connection, issuing: numbering.Issuing, group: list[SingleIssue]
) -> list[NewRecord | None]:
    """Issue the group (`numbering.issue_grouped`, each keyed request's key stored with its invoice): each
    request's record, or None for those to issue alone (series not open; Idempotency-Key used before, held
    elsewhere and then used, or given twice in the group; what a refused try left)."""
    records = await numbering.issue_grouped(
        conn,
        issuing,
        [numbering.IssuerDraft(one.issuer, one.draft) for one in group],
        [(one.idem.key, one.idem.request_hash) if one.idem else None for one in group],
    )
    if any(records):
        GROUP_SIZE.observe(sum(rec is not None for rec in records))
    return records


# ---------------------------------------------------------------- reading


async def get_invoice(conn: asyncpg.Connection, issuer_id: str, invoice_id: str) -> Invoice:
    """One of this issuer's invoices; 404 for any other."""
    row = await repository.get_invoice_row(conn, issuer_id, invoice_id)
    if row is None:
        raise NotFound(f"no invoice {invoice_id} for this issuer")
    return repository.to_invoice(row)


# ---------------------------------------------------------------- void and credit


async def void(
    conn: asyncpg.Connection, issuing: numbering.Issuing, issuer: Issuer, invoice_id: str, reason: str
) -> Invoice:
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
        signer = issuing.signers.current()
        signature = signer.sign(formats.void_signing_core(content, rec_hash))
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
                signer.key_id,
                now,
                reason,
                inv.buyer.email,
                issuing.texts.text("void", inv, now) if issuing.texts else None,
            ),
        )
        if delivery is not None:
            await chain_repository.set_delivery_status(conn, row["id"], delivery, orders.CANCEL(delivery))
        return await get_invoice(conn, issuer.id, invoice_id)


async def credit(
    conn: asyncpg.Connection,
    issuing: numbering.Issuing,
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
        done = sum_credited(original.lines, [n.lines for n in notes])
        lines = credit_lines(original, done, wanted)
        draft = numbering.Draft(
            "credit_note", original.series, original.buyer, tuple(lines), "electronic", reason, original
        )
        [note] = await numbering.issue_drafts(conn, issuing, issuer, [draft])
        await chain_repository.set_status(
            conn,
            original.id,
            status_after_credit(original.lines, sum_credited(original.lines, [n.lines for n in (*notes, note)])),
        )
        await _remember(conn, issuer, idem, [note])
    return Issued([note])
