"""The verification use case, shared by the page, the JSON endpoint and SMS: limits, lookup, outcome,
log and counts, SMS receipts written to the outbox in the same transaction, then the worker nudged."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from cachetools import LRUCache
from prometheus_client import Counter

from invoicing import chain_repository, sms_outbox
from invoicing.batching import Coalescer
from invoicing.errors import DomainError, RateLimited
from invoicing.integrity import StoredRecord, record_problem, status_problem
from invoicing.keyring import KeyringWatcher
from invoicing.replicas import Reads
from invoicing.transparency import InclusionProof, LogReader
from invoicing.webhook_sender import Nudge
from verification import repository as vrepo
from verification.challenge import NOT_A_PAYLOAD, Challenger, ChallengeRequired
from verification.limits import MATCHED, MISMATCHED, NOT_FOUND, Admission, Attempt, Found, Limits
from verification.masking import public_invoice
from verification.model import (
    DEFAULT_SMS_COUNTRIES,
    SHOWS_INVOICE,
    InvoiceSummary,
    Outcome,
    ReceiptRefusal,
    VerificationQuery,
    matches,
    outcome_for,
    phone_refusal,
    qr_figures_differing,
    receipt_refusal,
)
from verification.scan import Scanner
from verification.sms import reply_text

log = logging.getLogger("invoiceloop.verification")
cached_phone_refusal = functools.lru_cache(maxsize=4096)(phone_refusal)  # parsing a phone is slow; buyers repeat
VERIFIED = Counter(
    "invoiceloop_verifications_total", "Verifications answered, by channel and outcome", ["channel", "outcome"]
)
counter_for = functools.lru_cache(maxsize=64)(VERIFIED.labels)  # the child counter of (channel, outcome)
GOOD_SIGNATURES_KEPT = 100_000  # (key id, record hash, signature) triples known good, least recently used out
NOTICE_TEXT = (
    "【发票查验】您的发票 {code}/{number} 刚被他人查验（首次）。Your invoice was just verified by someone else."
)


@dataclass(frozen=True)
class Requester:
    """Who asks, as keyed hashes: the client address, and the phone (receipt or SMS sender) if any."""

    channel: str  # web, json, sms
    client_hash: str
    phone: str | None = None  # E.164; receipts go here (web/json) or it is the SMS sender
    phone_hash: str | None = None
    via_qr: bool = False  # a QR URL whose signature checked: not a guess, the locks do not apply
    qr_link: Mapping[str, str] | None = None  # the fields of a QR link it was opened from: its figures are compared
    receipt: bool = True  # whether `phone` asks for an SMS receipt (a lottery registration's phone does not)


@dataclass
class Verification:
    """The answer: the outcome, the invoice when it may be shown, the counts, and the receipt state."""

    outcome: Outcome
    invoice: dict[str, Any] | None = None  # as the public may see it (`public_invoice`), when the outcome shows it
    times_verified: int = 0
    first_verified_at: datetime | None = None
    receipt: str | None = None  # "queued", "not_sent" or None (no phone given)
    receipt_reason: ReceiptRefusal | None = None  # why not, when "not_sent"
    tamper_reason: str | None = None  # why the stored record is not trusted (outcome `tampered`)
    differs: tuple[str, ...] = ()  # a QR link's figures that are not the record's (outcome `mismatch`)
    log: InclusionProof | None = None  # the record's place in the public log, when it is there


@dataclass
class Verifier:
    """What verifying needs: the pool, the limits, the secret for hashes, the nudge, the trusted keys (the
    keyring, never the database), the public log's reader and where lookups go (`reads`: a replica, if any)."""

    pool: asyncpg.Pool
    limits: Limits
    secret: bytes
    keyring: KeyringWatcher
    queue: Any = None
    log: LogReader | None = None
    signatures_kept: int = GOOD_SIGNATURES_KEPT  # 0: check every signature every time (the bench's first-time case)
    lanes: int = 2  # batches in flight at once in this process: one gathers while the other commits
    reads: Reads | None = None  # None: lookups on `pool` too
    sms_countries: frozenset[str] = DEFAULT_SMS_COUNTRIES  # SMS_ALLOWED_COUNTRIES: where strangers may make us text
    hooks: Nudge | None = None  # the issuers' webhook fan-out, nudged after a first verification or a lock
    scanner: Scanner = field(default_factory=Scanner)  # photos and PDFs (SCAN_SLOTS, SCAN_TIMEOUT_S)
    good_signatures: LRUCache[tuple[str, str, str], bool] = field(init=False, repr=False)
    batches: Coalescer[_Item, Verification] = field(init=False, repr=False)
    challenges: Challenger = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.reads is None:
            self.reads = Reads(self.pool)
        self.good_signatures = LRUCache(maxsize=max(1, self.signatures_kept))
        self.challenges = Challenger(self.secret, self.limits.figures)
        self.batches = Coalescer(functools.partial(verify_batch, self), lanes=self.lanes)

    def hash(self, kind: str, value: str) -> str:
        """A keyed hash (HMAC-SHA256 with the server secret, 32 hex) of an address or a phone."""
        return hmac.new(self.secret, f"{kind}|{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def requester(self, channel: str, client_addr: str, phone: str | None = None, **qr: Any) -> Requester:
        """The hashed identity of a request; `client_addr` is the address, or `sms:<sender>` for a text."""
        phone_hash = self.hash("phone", phone) if phone else None
        return Requester(channel, self.hash("client", client_addr), phone, phone_hash, **qr)


UNTRUSTED = Counter("invoiceloop_untrusted_records_total", "Stored records found not trustworthy, by check", ["check"])


def tamper_reason(v: Verifier, row: asyncpg.Record, chained: list[asyncpg.Record]) -> str | None:
    """Why the stored record cannot be vouched for, or None: its hash, its key (the keyring's, not revoked when
    it signed), its signature, and its status (what its `chained` void and credit notes say). Raises the
    integrity alarm (a log line and a metric) when it cannot."""
    ring, good = v.keyring.current(), v.good_signatures if v.signatures_kept else None
    record = StoredRecord.of(row)
    why = record_problem(ring, record, good)
    check = "record"
    if why is None and (row["status"] != "issued" or row["voided"] or row["credited"]):
        void = next((StoredRecord.of(c) for c in chained if c["void"]), None)
        notes = [StoredRecord.of(c) for c in chained if not c["void"]]
        why, check = status_problem(ring, record, row["status"], void, notes, good), "status"
    if why is not None:
        UNTRUSTED.labels(check).inc()
        log.error("integrity alarm: invoice %s cannot be trusted: %s", row["id"], why)
    return why


def _matched(row: asyncpg.Record, query: VerificationQuery, requester: Requester) -> tuple[bool, tuple[str, ...]]:
    """Whether the query's details match the stored content, and the figures of a QR link that differ from it.

    From a QR link, its full check code is compared too, and its figures (date, amounts): one that differs makes
    a mismatch that names it, but only to a link that carries the invoice's full check code."""
    content = row["content"]
    ok = matches(
        query,
        check_code=content["check_code"],
        total_amount=Decimal(content["total_amount"]),
        issue_date=date.fromisoformat(content["issue_date"]),
    )
    link = requester.qr_link
    if link is None:
        return ok, ()
    holds_code = hmac.compare_digest(link.get("k", "").encode(), content["check_code"].encode())
    differs = qr_figures_differing(link, content) if holds_code else ()
    return ok and holds_code and not differs, differs


@dataclass(frozen=True)
class _Item:
    """One verification waiting for its batch."""

    query: VerificationQuery
    requester: Requester
    rate: bool

    def attempt(self) -> Attempt:
        return Attempt(
            self.query.invoice_code + self.query.invoice_number,
            self.requester.client_hash,
            self.requester.via_qr,
            self.rate,
            by_amount=self.query.total_amount is not None,
            challengeable=self.requester.channel != "sms",  # a text cannot show a challenge: per-phone locks only
        )


@dataclass
class _Work:
    """An item of a batch that got past the rate: its invoice row (if any) and its answer so far."""

    item: _Item
    row: asyncpg.Record | None
    result: Verification

    @property
    def wants_receipt(self) -> bool:
        requester = self.item.requester
        return requester.phone is not None and requester.receipt and requester.channel != "sms"  # a text gets a reply


async def verify(
    v: Verifier, query: VerificationQuery, requester: Requester, *, rate: bool = True, altcha: str | None = None
) -> Verification:
    """Verify one query: the lookup, the per-client rate (when `rate`; `RateLimited` over it) and the
    guessing locks, the outcome, then log and count. `altcha`, a solved proof of work, proves the client first;
    `ChallengeRequired` when one is wanted (or the one sent does not prove). Never raises on SMS trouble.
    Concurrent calls are carried out together, a batch at a time (`invoicing.batching`), each as it would be alone."""
    if altcha is not None:
        await prove(v, requester.client_hash, altcha)
    return await v.batches.submit(_Item(query, requester, rate))


Refusal = RateLimited | ChallengeRequired  # what one item of a bulk verification may get instead of an answer


async def verify_many(
    v: Verifier, items: Sequence[tuple[VerificationQuery, Requester]], *, altcha: str | None = None
) -> list[Verification | Refusal]:
    """Verify each item with `verify`, each counted against its client's rate and locks like a lone request, in
    order: a batch at most as large as the coalescer's (`max_batch`) at a time, so the items over the rate are
    the last ones. An item over the rate or wanting a proof of work gets its `RateLimited` or `ChallengeRequired`
    in place of its answer; anything else (`Unavailable`) fails the whole call. `altcha` proves the client of the
    first item first, as in `verify`."""
    if altcha is not None and items:
        await prove(v, items[0][1].client_hash, altcha)
    answers: list[Verification | Refusal] = []
    size = v.batches.max_batch
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        done = await asyncio.gather(*(verify(v, q, r) for q, r in chunk), return_exceptions=True)
        for answer in done:
            if isinstance(answer, BaseException) and not isinstance(answer, RateLimited | ChallengeRequired):
                raise answer
            answers.append(answer)
    return answers


async def prove(v: Verifier, client_hash: str, payload: str) -> None:
    """Let a solved challenge prove its client for a while (`LimitFigures.proof_ttl_s`). Each challenge is checked
    once, and only after the attempt was counted against the client's rate (`RateLimited` over it), so neither a
    replay nor a stream of bad solutions costs the server more than one key derivation per rate-limited request;
    the derivation runs off the event loop. `ChallengeRequired`, with a fresh challenge and why, when it does not
    prove."""
    solution_id = v.challenges.solution_id(payload)
    if solution_id is None:
        raise v.challenges.required(NOT_A_PAYLOAD)
    if not await v.limits.claim(client_hash, solution_id):
        raise v.challenges.required("this solution was used already: solve the new challenge")
    why = await asyncio.to_thread(v.challenges.check, payload)
    if why:
        raise v.challenges.required(why)
    await v.limits.prove(client_hash)


async def verify_batch(v: Verifier, items: list[_Item]) -> list[Verification | BaseException]:
    """A batch in three round trips whatever its size: lookup (on the replica, if any), limits (which need to know
    whether the details matched), then log and count in one statement (one commit, on the primary); the worker is
    nudged for any SMS."""
    works: list[_Work] = []
    rows, chained = await _find(v, [(i.query.invoice_code, i.query.invoice_number) for i in items])
    found = [_lookup(rows.get((i.query.invoice_code, i.query.invoice_number)), i) for i in items]
    settled = await v.limits.settle_many([(i.attempt(), f.found) for i, f in zip(items, found, strict=True)])
    states = [v.challenges.required() if s == Admission.CHALLENGE else s for s in settled]
    for item, f, state in zip(items, found, states, strict=True):
        if not isinstance(state, DomainError):
            chain = chained.get(f.row["id"], []) if f.row is not None else []
            works.append(_Work(item, f.row, _answer_for(v, f, state, chain)))
    async with v.pool.acquire() as conn:  # the log and the receipts: always the primary
        outbox_ids = await _record(v, conn, works)
    if v.queue is not None:
        await sms_outbox.nudge(v.queue, outbox_ids)
    if v.hooks is not None:  # the events `_record` may have written: a first verification, a lock
        await v.hooks.after_commit(
            [
                str(w.row["issuer_id"])
                for w in works
                if w.row is not None and (w.result.outcome == "locked" or w.result.times_verified == 1)
            ]
        )
    await _attach_log_proofs(v, works)
    for w in works:
        counter_for(w.item.requester.channel, w.result.outcome).inc()
    answers = iter(w.result for w in works)
    return [state if isinstance(state, DomainError) else next(answers) for state in states]


Rows = dict[tuple[str, str], asyncpg.Record]
Chained = dict[Any, list[asyncpg.Record]]


async def _find(v: Verifier, keys: list[tuple[str, str]]) -> tuple[Rows, Chained]:
    """The invoice rows and their chained voids and credit notes: from the replica if there is one, and what it
    does not have yet (issued a moment ago) from the primary."""
    assert v.reads is not None
    rows, chained = await v.reads.run(functools.partial(_read_rows, keys=keys))
    missing = [key for key in keys if key not in rows]
    if missing and v.reads.replica is not None:
        more_rows, more_chained = await v.reads.on_primary(functools.partial(_read_rows, keys=missing))
        rows.update(more_rows)
        chained.update(more_chained)
    return rows, chained


async def _read_rows(conn: asyncpg.Connection, keys: list[tuple[str, str]]) -> tuple[Rows, Chained]:
    rows = await vrepo.find_invoices(conn, keys)
    chained: Chained = {}
    voided_or_credited = [r["id"] for r in rows.values() if r["voided"] or r["credited"]]
    for record in await chain_repository.chained_records(conn, voided_or_credited):
        chained.setdefault(record["of"], []).append(record)
    return rows, chained


async def _attach_log_proofs(v: Verifier, works: list[_Work]) -> None:
    """Each answer that shows the invoice carries its record's inclusion proof in the public log, once the
    record is in the log (it is within seconds of being issued)."""
    shown = [
        w for w in works if w.result.outcome in SHOWS_INVOICE and w.row is not None and w.row["leaf_index"] is not None
    ]
    if v.log is None or not shown:
        return
    proofs = await v.log.inclusion(w.row["leaf_index"] for w in shown if w.row is not None)
    for w in shown:
        assert w.row is not None
        w.result.log = proofs.get(w.row["leaf_index"])


@dataclass(frozen=True)
class _Found:
    """What the lookup found for one item: the row and whether the details matched."""

    row: asyncpg.Record | None
    matched: bool = False
    differs: tuple[str, ...] = ()

    @property
    def found(self) -> Found:
        return NOT_FOUND if self.row is None else MATCHED if self.matched else MISMATCHED


def _lookup(row: asyncpg.Record | None, item: _Item) -> _Found:
    if row is None:
        return _Found(None)
    try:
        return _Found(row, *_matched(row, item.query, item.requester))
    except (KeyError, TypeError, ValueError, ArithmeticError):  # stored content we never wrote: no match
        log.error("integrity alarm: invoice %s has unreadable stored content", row["id"])
        return _Found(row, False)


def _answer_for(v: Verifier, f: _Found, state: Admission, chained: list[asyncpg.Record]) -> Verification:
    """The answer to one item that got past the rate."""
    if f.row is None:
        return Verification("not_found")
    if state == Admission.LOCKED:
        return Verification("locked")
    why = tamper_reason(v, f.row, chained) if f.matched else None
    outcome = outcome_for(f.row["status"], f.matched, why is not None)
    shown = public_invoice(f.row["content"], f.row["status"]) if outcome in SHOWS_INVOICE else None
    return Verification(outcome, shown, tamper_reason=why, differs=f.differs if outcome == "mismatch" else ())


async def _record(v: Verifier, conn: asyncpg.Connection, works: list[_Work]) -> list[int]:
    """Log and count the batch in one statement (with the receipts, in one transaction); the outbox ids."""
    if not works:  # all over the rate
        return []
    receipts = [w for w in works if w.wants_receipt]
    refusals = [await _receipt_refusal(v, w) for w in receipts]
    outbox_ids: list[int] = []
    async with conn.transaction() if None in refusals else _nothing():
        for w, counts in zip(works, await vrepo.record(conn, [_entry(w, v.sms_countries) for w in works]), strict=True):
            if w.result.outcome in SHOWS_INVOICE:  # a stranger with wrong details learns nothing, not even counts
                w.result.times_verified, w.result.first_verified_at = (
                    counts.times_verified or 0,
                    counts.first_verified_at,
                )
            if counts.notice_id is not None and counts.notice_id not in outbox_ids:
                outbox_ids.append(counts.notice_id)
        texts = [
            (None, w.item.requester.phone or "", _receipt_text(w.result))
            for w, why in zip(receipts, refusals, strict=True)
            if why is None
        ]
        outbox_ids += await sms_outbox.add(conn, "receipt", texts)
    for w, why in zip(receipts, refusals, strict=True):
        w.result.receipt, w.result.receipt_reason = ("queued", None) if why is None else ("not_sent", why)
    return outbox_ids


def _entry(w: _Work, countries: frozenset[str]) -> vrepo.LogEntry:
    requester, outcome, row = w.item.requester, w.result.outcome, w.row
    counted = outcome in SHOWS_INVOICE or outcome == "tampered"
    return vrepo.LogEntry(
        row["id"] if row else None,
        row["issuer_id"] if row else None,
        requester.channel,
        outcome,
        counted,
        requester.via_qr,
        requester.client_hash,
        requester.phone_hash,
        mismatch=outcome == "mismatch",
        notice=_notice(row, requester, countries) if row and counted else None,
    )


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    """No explicit transaction: a single statement commits on its own (one round trip less)."""
    yield


async def _receipt_refusal(v: Verifier, w: _Work) -> ReceiptRefusal | None:
    """Why the SMS receipt asked for on the page or in JSON is not sent, or None to send it: first what the
    answer and the number allow (nothing counted), then the client's and the phone's daily caps and the
    service's daily budget (counted only when all three allow it)."""
    requester = w.item.requester
    why = receipt_refusal(w.result.outcome, requester.phone or "", v.sms_countries)
    if why is not None:
        return why
    return await v.limits.receipt_refusal(requester.client_hash, requester.phone_hash or "")


def _receipt_text(result: Verification) -> str:
    summary = InvoiceSummary.of(result.invoice) if result.invoice else None
    return reply_text(result.outcome, result.times_verified, summary)


def _notice(row: asyncpg.Record, requester: Requester, countries: frozenset[str]) -> tuple[str, str] | None:
    """The buyer's one notice (phone, text) when someone else (not the buyer's phone) verifies and the buyer
    has had none (two batches may both try: the unique index keeps one); only to a mobile of `countries`."""
    phone = (row["content"].get("buyer") or {}).get("phone")
    if row["buyer_notified"] or not phone or phone == requester.phone:
        return None
    if cached_phone_refusal(phone, countries) is not None:
        return None
    return phone, NOTICE_TEXT.format(code=row["content"]["invoice_code"], number=row["content"]["invoice_number"])
