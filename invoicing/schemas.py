"""The issuer API's JSON shapes: the request bodies (msgspec structs, strict) and the answers built from the
model (the Invoice of API.md, a month's figures). Pure mapping: no I/O."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import msgspec

from invoicing import formats
from invoicing.figures import Figures, province_names
from invoicing.http import Strict
from invoicing.model import Invoice


class AddressIn(Strict):
    """A postal address in a request."""

    recipient: str
    line1: str
    city: str
    province: str
    postal_code: str
    country: str = "CN"
    line2: str = ""


class BuyerIn(Strict):
    """The buyer in a request."""

    name: str
    tax_id: str | None = None
    phone: str | None = None
    email: str | None = None
    address: AddressIn | None = None


class LineIn(Strict):
    """A line in a request; figures are decimal strings."""

    description: str
    quantity: str
    unit_price: str
    tax_rate: str
    unit: str = ""


class InvoiceIn(Strict):
    """`POST /v1/invoices`: an InvoiceRequest (API.md)."""

    buyer: BuyerIn
    lines: list[LineIn]
    delivery: Literal["electronic", "postal"] = "electronic"
    series: str = "default"
    remarks: str = ""


class BatchIn(Strict):
    """`POST /v1/invoices/batch`."""

    invoices: list[InvoiceIn]


class VoidIn(Strict):
    """`POST /v1/invoices/{id}/void`."""

    reason: str


class CreditLineIn(Strict):
    """One line of a credit note request: the original's 1-based line and the quantity to credit."""

    line_no: int
    quantity: str | None = None


class CreditIn(Strict):
    """`POST /v1/invoices/{id}/credit-notes` (omit `lines` to credit all that is left)."""

    reason: str
    lines: list[CreditLineIn] | None = None


def request_hash(endpoint: str, payload: Any) -> str:
    """A digest of the decoded request (whitespace and key order do not matter), for Idempotency-Key."""
    return hashlib.sha256(
        endpoint.encode() + b"\0" + msgspec.json.encode(msgspec.to_builtins(payload), order="sorted")
    ).hexdigest()


def invoice_json(inv: Invoice, base_url: str, content: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Invoice of API.md: every request field normalised, the figures, identity and proofs. What the record
    states is stated as its canonical content states it: `content` when the caller has it as the record was made
    (an issue's answer: made once, not twice), else made again (`formats.content_of`)."""
    c = formats.content_of(inv) if content is None else content
    return {
        "id": inv.id,
        "kind": c["kind"],
        "series": inv.series,
        "invoice_code": c["invoice_code"],
        "invoice_number": c["invoice_number"],
        "issue_date": c["issue_date"],
        "issued_at": c["issued_at"],
        "status": inv.status,
        "seller": c["seller"],
        "buyer": c["buyer"],
        "currency": c["currency"],
        "lines": c["lines"],
        "total_amount": c["total_amount"],
        "total_tax": c["total_tax"],
        "total": c["total"],
        "total_in_words": c["total_in_words"],
        "check_code": c["check_code"],
        "record_hash": inv.record_hash,
        "prev_hash": c["prev_hash"],
        "signature": inv.signature,
        "key_id": inv.key_id,
        "verify_url": formats.verify_url(base_url, inv),
        "pdf_url": f"{base_url}/v1/invoices/{inv.id}/pdf",
        "delivery": {
            "method": inv.delivery_method,
            "status": inv.delivery_status,
            "tracking_number": inv.tracking_number,
        },
        "remarks": inv.remarks,
        "original_invoice_id": inv.original_invoice_id,
        "original_invoice_code": inv.original_invoice_code,
        "original_invoice_number": inv.original_invoice_number,
        "voided_at": formats.rfc3339(inv.voided_at) if inv.voided_at else None,
        "void_reason": inv.void_reason,
    }


def month_figures(row: Any) -> dict[str, Any]:
    """One month's figures: counts, amounts, the closed-loop shares (verified, delivered), and the pending postal
    orders no operator serves."""
    return {
        "month": row["month"],
        **Figures.of(row).issuer(),
        "pending_without_operator": row["pending_without_operator"],
    }


def province_figures(row: Any) -> dict[str, Any]:
    """One province's figures (an issuer's own): the province with its names, counts, amounts and shares."""
    return {**province_names(row["province"]), **Figures.of(row).issuer()}
