"""The worked example of docs/formats.md: one invoice built from fixed inputs (a fixed key seed,
secret and clock), so every figure in the document can be recomputed by a reader and by the tests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from msgspec.structs import replace

from invoicing import formats
from invoicing.keys import Signer
from invoicing.model import Address, Invoice, LineInput, Party, Seller, compute_line, compute_totals

KEY_SEED = bytes(range(32))  # 00 01 02 ... 1f
SECRET = b"example-check-code-secret"
BASE_URL = "https://invoiceloop.example"


def example_signer() -> Signer:
    return Signer.from_private(Ed25519PrivateKey.from_private_bytes(KEY_SEED))


def example_invoice() -> Invoice:
    """API.md's sample request, issued as number 1 of series 440126000001 on 2026-11-27."""
    lines = (compute_line(LineInput("办公椅", "把", Decimal("2"), Decimal("100.00"), Decimal("0.13"))),)
    totals = compute_totals(lines)
    inv = Invoice(
        id="00000000-0000-4000-8000-000000000001",
        issuer_id="00000000-0000-4000-8000-0000000000aa",
        kind="invoice",
        series="default",
        invoice_code="440126000001",
        invoice_number="00000001",
        issue_date=datetime(2026, 11, 27).date(),
        issued_at=datetime(2026, 11, 27, 2, 30, 0, tzinfo=UTC),
        status="issued",
        seller=Seller("广州示例科技有限公司", "91440101MA5CXKYQ1K", "广州市天河区天河路 1 号", "+862012345678"),
        buyer=Party(
            "张三",
            None,
            "+8613800138000",
            None,
            Address("张三", "天河路 1 号", "广州市", "广东省", "44", "510000", "CN"),
        ),
        currency="CNY",
        lines=lines,
        totals=totals,
        total_in_words=formats.amount_in_words(totals.total),
        check_code="",
        record_hash="",
        prev_hash=formats.ZERO_HASH,
        signature="",
        key_id="",
        delivery_method="postal",
        remarks="",
    )
    signer = example_signer()
    inv = replace(
        inv,
        check_code=formats.check_code(SECRET, inv.invoice_code, inv.invoice_number, inv.issue_date, totals.total),
        key_id=signer.key_id,
    )
    inv = replace(inv, record_hash=formats.record_hash(formats.content_of(inv)))
    return replace(inv, signature=signer.sign(formats.invoice_signing_core(inv)))
