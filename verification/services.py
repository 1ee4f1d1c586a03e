"""The verification use case, shared by the page, the JSON endpoint and SMS: limits, lookup, outcome,
log and counts, SMS receipts written to the outbox in the same transaction, then the worker nudged."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from invoicing import formats, repository
from invoicing.keys import verify_signature
from invoicing.model import Invoice
from verification import repository as vrepo
from verification.limits import GO, LOCKED, Limits
from verification.model import (
    SHOWS_INVOICE,
    InvoiceSummary,
    Outcome,
    VerificationQuery,
    is_mobile,
    matches,
    outcome_for,
)
from verification.sms import reply_text

log = logging.getLogger("invoiceloop.verification")
cached_is_mobile = functools.lru_cache(maxsize=4096)(is_mobile)  # parsing a phone costs ~0.2 ms
GOOD_SIGNATURES_KEPT = 100_000  # (key id, signing core, signature) triples known good, ~30 MB at most
NOTICE_TEXT = (
    "【发票查验】您的发票 {code}/{number} 刚被他人查验（首次）。Your invoice was just verified by someone else."
)


@dataclass(frozen=True)
class Asker:
    """Who asks, as keyed hashes: the client address, and the phone (receipt or SMS sender) if any."""

    channel: str  # web, json, sms
    client_hash: str
    phone: str | None = None  # E.164; receipts go here (web/json) or it is the SMS sender
    phone_hash: str | None = None
    via_qr: bool = False  # a QR URL whose signature checked: not a guess, the locks do not apply
    full_check_code: str | None = None  # from the QR URL, compared in full


@dataclass
class Verification:
    """The answer: the outcome, the invoice when it may be shown, the counts, and the receipt state."""

    outcome: Outcome
    invoice: Invoice | None = None
    times_verified: int = 0
    first_verified_at: datetime | None = None
    receipt: str | None = None  # "queued", "daily_limit_reached" or None (no phone given)
    outbox_ids: list[int] = field(default_factory=list)


@dataclass
class Verifier:
    """What verifying needs: the pool, the limits, the secret for hashes, the nudge, the keys."""

    pool: asyncpg.Pool
    limits: Limits
    secret: bytes
    queue: Any = None
    keys: dict[str, bytes] = field(default_factory=dict)
    good_signatures: set[tuple[str, str, str]] = field(default_factory=set)

    def hash(self, kind: str, value: str) -> str:
        """A keyed hash (HMAC-SHA256 with the server secret, 32 hex) of an address or a phone."""
        return hmac.new(self.secret, f"{kind}|{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def asker(self, channel: str, client_addr: str, phone: str | None = None, **qr: Any) -> Asker:
        """The hashed identity of a request; `client_addr` is the address, or `sms:<sender>` for a text."""
        phone_hash = self.hash("phone", phone) if phone else None
        return Asker(channel, self.hash("client", client_addr), phone, phone_hash, **qr)

    async def public_key(self, conn: asyncpg.Connection, key_id: str) -> bytes | None:
        """The public key `key_id` (cached; keys are never changed, only added)."""
        if key_id not in self.keys:
            self.keys.update(await repository.signing_keys(conn))
        return self.keys.get(key_id)


async def is_tampered(v: Verifier, conn: asyncpg.Connection, row: asyncpg.Record, inv: Invoice) -> bool:
    """The stored record fails its hash (recomputed from the stored content every time) or its signature
    (a signature over a given core verifies or not for good, so good ones are remembered)."""
    if formats.record_hash(row["content"]) != row["record_hash"]:
        return True
    core, signature = formats.invoice_signing_core(inv), row["signature"]
    if (row["key_id"], core, signature) in v.good_signatures:
        return False
    key = await v.public_key(conn, row["key_id"])
    if key is None or not verify_signature(key, core, signature):
        return True
    if len(v.good_signatures) >= GOOD_SIGNATURES_KEPT:
        v.good_signatures.clear()
    v.good_signatures.add((row["key_id"], core, signature))
    return False


async def _match(v: Verifier, row: asyncpg.Record, query: VerificationQuery, asker: Asker) -> tuple[Invoice, bool]:
    inv = repository.to_invoice(row)
    ok = matches(query, check_code=inv.check_code, total_amount=inv.totals.total_amount, issue_date=inv.issue_date)
    if asker.full_check_code is not None:
        ok &= hmac.compare_digest(asker.full_check_code.encode(), inv.check_code.encode())
    return inv, ok


async def verify(v: Verifier, query: VerificationQuery, asker: Asker, *, rate: bool = True) -> Verification:
    """Verify one query: the per-client rate (when `rate`; `RateLimited` over it) and the guessing locks,
    the lookup, the outcome, then log and count. Never raises on SMS trouble."""
    key = query.invoice_code + query.invoice_number
    state = await v.limits.begin(key, asker.client_hash, trusted=asker.via_qr, rate=rate)
    async with v.pool.acquire() as conn:
        row = await vrepo.find_invoice(conn, query.invoice_code, query.invoice_number)
        if row is None:
            if state == GO:
                await v.limits.give_back(key, asker.client_hash, matched=False)
            return await _record(v, conn, None, asker, Verification("not_found"), query)
        if state == LOCKED:
            return await _record(v, conn, row, asker, Verification("locked"), query)
        inv, matched = await _match(v, row, query, asker)
        if matched and state == GO:
            await v.limits.give_back(key, asker.client_hash, matched=True)
        tampered = matched and await is_tampered(v, conn, row, inv)
        if tampered:
            log.error("integrity alarm: invoice %s fails its record hash or signature", row["id"])
        outcome = outcome_for(row["status"], matched, tampered)
        return await _record(
            v, conn, row, asker, Verification(outcome, inv if outcome in SHOWS_INVOICE else None), query
        )


async def _record(v: Verifier, conn: asyncpg.Connection, row: asyncpg.Record | None, asker: Asker,
                  result: Verification, query: VerificationQuery) -> Verification:  # fmt: skip
    """Log and count in one statement (with the receipt row, in one transaction); then nudge the worker."""
    counted = result.outcome in SHOWS_INVOICE or result.outcome == "tampered"
    entry = vrepo.LogEntry(str(row["id"]) if row else None, str(row["issuer_id"]) if row else None, asker.channel,
                           result.outcome, counted, asker.via_qr, asker.client_hash, asker.phone_hash)  # fmt: skip
    wants_receipt = asker.phone is not None and asker.channel != "sms"  # a text is answered by its reply
    async with conn.transaction() if wants_receipt else _nothing():
        if row is None:
            await vrepo.log_verification(conn, entry)
        else:
            notice = _notice(row, asker) if counted else None
            counts = await vrepo.record(conn, entry, mismatch=result.outcome == "mismatch", notice=notice)
            if result.outcome in SHOWS_INVOICE:  # a stranger with wrong details learns nothing, not even counts
                result.times_verified, result.first_verified_at = counts.times_verified, counts.first_verified_at
            if counts.notice_id is not None:
                result.outbox_ids.append(counts.notice_id)
        if wants_receipt:
            await _receipt(v, conn, asker, result)
    for outbox_id in result.outbox_ids:
        if v.queue is not None:
            await v.queue.enqueue("send_sms", outbox_id, job_id=f"sms:{outbox_id}:0")
    return result


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    """No explicit transaction: a single statement commits on its own (one round trip less)."""
    yield


async def _receipt(v: Verifier, conn: asyncpg.Connection, asker: Asker, result: Verification) -> None:
    """The SMS receipt to the phone given on the page or in JSON, within the daily caps."""
    assert asker.phone is not None
    if not await v.limits.allow_receipt(asker.client_hash, asker.phone_hash or ""):
        result.receipt = "daily_limit_reached"
        return
    summary = InvoiceSummary.of(result.invoice) if result.invoice else None
    text = reply_text(result.outcome, result.times_verified, summary)
    outbox_id = await vrepo.add_sms(conn, "receipt", None, asker.phone, text)
    result.receipt = "queued"
    if outbox_id is not None:
        result.outbox_ids.append(outbox_id)


def _notice(row: asyncpg.Record, asker: Asker) -> tuple[str, str] | None:
    """The buyer's one notice (phone, text) when someone else (not the buyer's phone) verifies."""
    phone = (row["content"].get("buyer") or {}).get("phone")
    if not phone or phone == asker.phone or not cached_is_mobile(phone):
        return None
    return phone, NOTICE_TEXT.format(code=row["content"]["invoice_code"], number=row["content"]["invoice_number"])
