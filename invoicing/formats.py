"""The formats outside parties rely on (FORMATS.md): check code, canonical record, record hash,
signing core, QR URL, and the stored content an invoice is rebuilt from. Pure: no I/O.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import msgspec

from invoicing.model import Address, Invoice, Line, Party, Seller, Totals, money_str, plain_str
from invoicing.words import amount_in_words

__all__ = [
    "ZERO_HASH",
    "amount_in_words",
    "canonical_bytes",
    "check_code",
    "content_of",
    "content_signing_core",
    "invoice_from_content",
    "record_hash",
    "rfc3339",
    "sha256_hex",
    "signing_core",
    "verify_url",
    "void_content",
    "void_signing_core",
]

ZERO_HASH = "0" * 64
RECORD_VERSION = 1


# The dates and moments of the records being issued repeat (one day for all, one moment for a batch or a group),
# and each is written two or three times a record: kept, they cost a lookup.
@functools.lru_cache(maxsize=256)
def yyyymmdd(day: date) -> str:
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


@functools.lru_cache(maxsize=256)
def rfc3339(moment: datetime) -> str:
    """UTC with microseconds and `Z`, e.g. `2026-11-27T06:59:19.123456Z`."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def check_code(secret: bytes, code: str, number: str, issue_date: date, total: Decimal) -> str:
    """20 decimal digits from HMAC-SHA256(secret, "{code}|{number}|{YYYYMMDD}|{total}").

    The first 16 bytes of the MAC, read big-endian, modulo 10**20, zero-padded: the bias of
    2**128 mod 10**20 is below 1e-18, so every code is as good as uniform."""
    message = f"{code}|{number}|{yyyymmdd(issue_date)}|{money_str(total)}".encode()
    digest = hmac.digest(secret, message, "sha256")
    return f"{int.from_bytes(digest[:16], 'big') % 10**20:020d}"


def canonical_bytes(content: Mapping[str, Any]) -> bytes:
    """Keys sorted, no whitespace, UTF-8 with non-ASCII kept (FORMATS.md): byte for byte what
    `json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()` gives (a test
    holds the two together), faster (docs/decisions.md); it runs on every issue and every verification."""
    return msgspec.json.encode(content, order="sorted")


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def record_hash(content: Mapping[str, Any]) -> str:
    """Lowercase hex SHA-256 of the canonical content."""
    return sha256_hex(canonical_bytes(content))


def line_content(line: Line) -> dict[str, Any]:
    """One line as the record, the API and the public view state it: quantities plain, amounts to the cent."""
    item: dict[str, Any] = {
        "description": line.description,
        "unit": line.unit,
        "quantity": plain_str(line.quantity),
        "unit_price": plain_str(line.unit_price, 2),
        "tax_rate": plain_str(line.tax_rate),
        "amount": money_str(line.amount),
        "tax_amount": money_str(line.tax_amount),
    }
    if line.original_line is not None:
        item["original_line"] = line.original_line
    return item


def _address_content(address: Address | None) -> dict[str, Any] | None:
    if address is None:
        return None
    return {
        "recipient": address.recipient,
        "line1": address.line1,
        "line2": address.line2,
        "city": address.city,
        "province": address.province,
        "province_code": address.province_code,
        "postal_code": address.postal_code,
        "country": address.country,
    }


def seller_content(seller: Seller) -> dict[str, Any]:
    return dict(_seller_content(seller))


@functools.lru_cache(maxsize=4096)  # the same for every record of an issuer
def _seller_content(seller: Seller) -> dict[str, Any]:
    return {"name": seller.name, "tax_id": seller.tax_id, "address": seller.address, "phone": seller.phone}


def buyer_content(buyer: Party) -> dict[str, Any]:
    return {
        "name": buyer.name,
        "tax_id": buyer.tax_id,
        "phone": buyer.phone,
        "email": buyer.email,
        "address": _address_content(buyer.address),
    }


def content_of(inv: Invoice) -> dict[str, Any]:
    """The canonical content of an invoice or credit note: everything printed on it, `v` and `prev_hash`.

    The record hash is the SHA-256 of `canonical_bytes(content_of(inv))`; this dict is also what we
    store (jsonb), so the audit recomputes the hash from exactly what the API shows."""
    return placed_content(unplaced_content(inv), inv.invoice_code, inv.invoice_number, inv.check_code, inv.prev_hash)


def unplaced_content(inv: Invoice) -> dict[str, Any]:
    """The content of a record without the fields its place in the series gives it (`placed_content`): all of it
    can be made before the series is locked (`numbering.unplaced`)."""
    content: dict[str, Any] = {
        "v": RECORD_VERSION,
        "kind": inv.kind,
        "issue_date": inv.issue_date.isoformat(),
        "issued_at": rfc3339(inv.issued_at),
        "currency": inv.currency,
        "seller": seller_content(inv.seller),
        "buyer": buyer_content(inv.buyer),
        "lines": [line_content(line) for line in inv.lines],
        "total_amount": money_str(inv.totals.total_amount),
        "total_tax": money_str(inv.totals.total_tax),
        "total": money_str(inv.totals.total),
        "total_in_words": inv.total_in_words,
        "delivery": inv.delivery_method,
        "remarks": inv.remarks,
    }
    if inv.kind == "credit_note":
        content["original_invoice_code"] = inv.original_invoice_code
        content["original_invoice_number"] = inv.original_invoice_number
    return content


def placed_content(unplaced: dict[str, Any], code: str, number: str, check: str, prev_hash: str) -> dict[str, Any]:
    """The whole content: `unplaced_content` with the invoice code and number, the check code (which hashes them)
    and the hash of the record before it in the chain. Keys are sorted when it is made canonical."""
    return {**unplaced, "invoice_code": code, "invoice_number": number, "check_code": check, "prev_hash": prev_hash}


def _line_from(item: dict[str, Any]) -> Line:
    return Line(
        item["description"],
        item["unit"],
        Decimal(item["quantity"]),
        Decimal(item["unit_price"]),
        Decimal(item["tax_rate"]),
        Decimal(item["amount"]),
        Decimal(item["tax_amount"]),
        item.get("original_line"),
    )


def invoice_from_content(
    content: dict[str, Any],
    *,
    id: str,
    issuer_id: str,
    series: str,
    status: str,
    record_hash: str,
    signature: str,
    key_id: str,
    original_invoice_id: str | None = None,
    **state: Any,
) -> Invoice:
    """Rebuild the model from stored content plus the row's mutable state (status, delivery, void)."""
    buyer, seller, addr = content["buyer"], content["seller"], content["buyer"]["address"]
    return Invoice(
        id=id,
        issuer_id=issuer_id,
        kind=content["kind"],
        series=series,
        invoice_code=content["invoice_code"],
        invoice_number=content["invoice_number"],
        issue_date=date.fromisoformat(content["issue_date"]),
        issued_at=parse_rfc3339(content["issued_at"]),
        status=status,  # type: ignore[arg-type]
        seller=Seller(seller["name"], seller["tax_id"], seller["address"], seller["phone"]),
        buyer=Party(buyer["name"], buyer["tax_id"], buyer["phone"], buyer["email"], Address(**addr) if addr else None),
        currency=content["currency"],
        lines=tuple(_line_from(i) for i in content["lines"]),
        totals=Totals(Decimal(content["total_amount"]), Decimal(content["total_tax"]), Decimal(content["total"])),
        total_in_words=content["total_in_words"],
        check_code=content["check_code"],
        record_hash=record_hash,
        prev_hash=content["prev_hash"],
        signature=signature,
        key_id=key_id,
        delivery_method=content["delivery"],
        remarks=content["remarks"],
        original_invoice_id=original_invoice_id,
        original_invoice_code=content.get("original_invoice_code"),
        original_invoice_number=content.get("original_invoice_number"),
        **state,
    )


def signing_core(
    code: str,
    number: str,
    issue_date: date,
    total_amount: Decimal,
    total_tax: Decimal,
    total: Decimal,
    check: str,
    rec_hash: str,
) -> str:
    """`IL1|{code}|{number}|{YYYYMMDD}|{total_amount}|{total_tax}|{total}|{check_code}|{record_hash}`."""
    return "|".join(
        [
            "IL1",
            code,
            number,
            yyyymmdd(issue_date),
            money_str(total_amount),
            money_str(total_tax),
            money_str(total),
            check,
            rec_hash,
        ]
    )


def invoice_signing_core(inv: Invoice) -> str:
    return signing_core(
        inv.invoice_code,
        inv.invoice_number,
        inv.issue_date,
        inv.totals.total_amount,
        inv.totals.total_tax,
        inv.totals.total,
        inv.check_code,
        inv.record_hash,
    )


def content_signing_core(content: Mapping[str, Any], rec_hash: str) -> str:
    """The signing core of an invoice or credit note from its stored content: what `invoice_signing_core`
    gives for the invoice the content describes."""
    return signing_core(
        content["invoice_code"],
        content["invoice_number"],
        date.fromisoformat(content["issue_date"]),
        Decimal(content["total_amount"]),
        Decimal(content["total_tax"]),
        Decimal(content["total"]),
        content["check_code"],
        rec_hash,
    )


def void_content(inv: Invoice, *, reason: str, voided_at: datetime, prev_hash: str) -> dict[str, Any]:
    """A void is a chain record of its own: the voided record's identity and hash, no number of its own."""
    return {
        "v": RECORD_VERSION,
        "kind": "void",
        "invoice_code": inv.invoice_code,
        "invoice_number": inv.invoice_number,
        "voided_record_hash": inv.record_hash,
        "reason": reason,
        "voided_at": rfc3339(voided_at),
        "prev_hash": prev_hash,
    }


def void_signing_core(content: Mapping[str, Any], rec_hash: str) -> str:
    """`IL1V|{code}|{number}|{voided_at YYYYMMDD in UTC}|{record_hash}`: what a void's signature covers."""
    day = parse_rfc3339(content["voided_at"]).date()
    return "|".join(["IL1V", content["invoice_code"], content["invoice_number"], yyyymmdd(day), rec_hash])


def verify_url(base_url: str, inv: Invoice) -> str:
    """The QR URL of FORMATS.md: everything needed to verify at once or check the signature offline.

    Every value is digits, `.`, `-`, hex or base64url, all URL-safe, so nothing needs escaping."""
    t = inv.totals
    return (
        f"{base_url.rstrip('/')}/verify?c={inv.invoice_code}&n={inv.invoice_number}&d={yyyymmdd(inv.issue_date)}"
        f"&a={money_str(t.total_amount)}&x={money_str(t.total_tax)}&t={money_str(t.total)}&k={inv.check_code}"
        f"&h={inv.record_hash}&s={inv.signature}&kid={inv.key_id}"
    )
