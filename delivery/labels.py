"""The address label (100 x 150 mm): sender, recipient, the tracking number as Code 128 and text, and the
invoice it carries. Pure: a `LabelData` in, PDF bytes out."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from barcode.codex import Code128
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from invoicing.model import Address, province_code
from invoicing.pdf import LATIN_FONT, address_lines, draw_address_block, draw_code128, draw_qr, draw_text

PAGE = (100 * mm, 150 * mm)
MARGIN = 5 * mm
WIDTH = PAGE[0] - 2 * MARGIN
QR_SIZE = 27 * mm  # FORMATS.md: at least 25 mm


@dataclass(frozen=True)
class LabelData:
    """What an address label prints."""

    tracking_number: str
    recipient: Address
    phone: str | None
    invoice_code: str
    invoice_number: str
    sender_name: str
    sender_address: str
    sender_phone: str | None
    operator_name: str
    verify_url: str | None = None  # the invoice's QR URL (FORMATS.md: a QR on every invoice and label)


def address_from(stored: Mapping[str, Any]) -> Address:
    """The Address of a delivery order's stored `address` (the buyer address as hashed)."""
    province = str(stored.get("province", ""))
    return Address(
        recipient=str(stored.get("recipient", "")),
        line1=str(stored.get("line1", "")),
        city=str(stored.get("city", "")),
        province=province,
        province_code=str(stored.get("province_code") or province_code(province) or ""),
        postal_code=str(stored.get("postal_code", "")),
        country=str(stored.get("country") or "CN"),
        line2=str(stored.get("line2") or ""),
    )


def render_label(data: LabelData) -> bytes:
    """The label as a one-page PDF."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=PAGE, pageCompression=1, invariant=1)
    canvas.setTitle(f"Label {data.tracking_number}")
    top = PAGE[1] - MARGIN
    draw_text(canvas, MARGIN, top - 10, data.operator_name, 11, max_width=WIDTH * 0.6)
    draw_text(canvas, PAGE[0] - MARGIN, top - 10, "挂号 R", 11, align="right")
    y = _rule(canvas, top - 16)
    y = _barcode(canvas, y, data.tracking_number)
    y = _rule(canvas, y)
    draw_text(canvas, MARGIN, y - 11, "收件人 To", 8)
    lines = address_lines(data.recipient)
    if data.phone:
        lines.append(f"电话 {data.phone}")
    y = draw_address_block(canvas, MARGIN + 4, y - 28, WIDTH - 8, lines, size=13, leading=17)
    y = _rule(canvas, min(y + 4, 62 * mm))
    draw_text(canvas, MARGIN, y - 11, "寄件人 From", 8)
    sender = [data.sender_name, data.sender_address, f"电话 {data.sender_phone}" if data.sender_phone else ""]
    text_width = WIDTH - 8 - (QR_SIZE + 3 * mm if data.verify_url else 0)
    y = draw_address_block(canvas, MARGIN + 4, y - 24, text_width, [s for s in sender if s], size=9, leading=12)
    if data.verify_url:
        _qr(canvas, data.verify_url)
    y = _rule(canvas, min(y + 3, 24 * mm))
    draw_text(canvas, MARGIN, y - 12, "内件 Contents: 发票 Invoice", 8)
    draw_text(
        canvas, MARGIN, y - 26, f"发票代码 {data.invoice_code}   发票号码 {data.invoice_number}", 10, max_width=WIDTH
    )
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def _qr(canvas: Canvas, url: str) -> None:
    """The invoice's verification QR (27 mm, quiet zone inside the section) with its caption, bottom right."""
    x = PAGE[0] - MARGIN - QR_SIZE
    draw_qr(canvas, x, 30 * mm, url, QR_SIZE)
    draw_text(canvas, x + QR_SIZE / 2, 26 * mm, "扫码查验 / Scan to verify", 6.5, align="center")


def _rule(canvas: Canvas, y: float) -> float:
    canvas.setLineWidth(1)
    canvas.line(MARGIN, y, PAGE[0] - MARGIN, y)
    return y


def _barcode(canvas: Canvas, top: float, tracking: str) -> float:
    """The tracking number as a Code 128 (quiet zones kept) and in large text; returns the y below."""
    modules = len(Code128(tracking).build()[0])
    module = min(0.5 * mm, (WIDTH - 20) / (modules + 20))
    width = modules * module
    height = 22 * mm
    draw_code128(canvas, (PAGE[0] - width) / 2, top - 4 * mm - height, tracking, width, height)
    spaced = f"{tracking[:2]} {tracking[2:5]} {tracking[5:8]} {tracking[8:11]} {tracking[11:]}"
    draw_text(canvas, PAGE[0] / 2, top - height - 11 * mm, spaced, 16, align="center", font=LATIN_FONT)
    return float(top - height - 14 * mm)
