"""What the public may see of an invoice, and who asks: shared by the JSON endpoint and the page."""

from __future__ import annotations

import functools
from typing import Any

from litestar import Request

from invoicing.model import Invoice, money_str
from verification.model import mask_name, mask_phone

# Parsing a phone costs ~0.2 ms; the same buyers' phones come back again and again.
cached_mask_phone = functools.lru_cache(maxsize=4096)(mask_phone)


def client_address(request: Request[Any, Any, Any]) -> str:
    """The client's address (uvicorn applies X-Forwarded-For only from trusted proxies)."""
    return request.client.host if request.client else "unknown"


def masked_invoice(inv: Invoice) -> dict[str, Any]:
    """The invoice as a stranger may see it: seller in full, buyer's name and phone masked, no check code."""
    return {
        "kind": inv.kind, "invoice_code": inv.invoice_code, "invoice_number": inv.invoice_number,
        "issue_date": inv.issue_date.isoformat(), "status": inv.status, "currency": inv.currency,
        "seller": {"name": inv.seller.name, "tax_id": inv.seller.tax_id},
        "buyer": {"name": mask_name(inv.buyer.name), "phone": cached_mask_phone(inv.buyer.phone) if inv.buyer.phone else None},
        "lines": [{"description": ln.description, "unit": ln.unit, "quantity": str(ln.quantity),
                   "unit_price": money_str(ln.unit_price), "tax_rate": str(ln.tax_rate),
                   "amount": money_str(ln.amount), "tax_amount": money_str(ln.tax_amount)} for ln in inv.lines],
        "total_amount": money_str(inv.totals.total_amount), "total_tax": money_str(inv.totals.total_tax),
        "total": money_str(inv.totals.total), "total_in_words": inv.total_in_words,
    }  # fmt: skip
