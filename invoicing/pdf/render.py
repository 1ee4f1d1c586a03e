"""Invoice -> PDF bytes: one A4 page (more when the lines need it) laid out like a Chinese e-invoice.

Hand-laid on a reportlab canvas (platypus is several times slower): a layout pass (`layout`) wraps the text
and splits the lines over pages, then each page is drawn. What is the same on every page (title, identity,
QR code, barcode; the void stamp) is drawn once per document as a Form XObject.
Pure: no DB, no network; the QR's URL is given by the caller (`formats.verify_url`).
"""

from __future__ import annotations

import io
import zlib

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfdoc import PDFStreamFilterZCompress, pdfdocEnc, xObjectName
from reportlab.pdfgen.canvas import Canvas

from invoicing.model import Invoice
from invoicing.pdf.barcodes import draw_code128, draw_qr
from invoicing.pdf.fonts import cjk_font, font_for, text_width
from invoicing.pdf.layout import (
    BLACK,
    BODY,
    BOTTOM,
    CAPTION_W,
    COL_W,
    COL_X,
    COLUMNS,
    HEAD_H,
    INK,
    LABEL_W,
    LEADING,
    LEFT,
    MIN_BODY_H,
    PAD,
    PAGE_W,
    QR_SIZE,
    RED,
    RIGHT,
    RULE,
    STAMP,
    SUBTOTAL_H,
    THEAD_H,
    TOP,
    WORDS_H,
    Field,
    Layout,
    Row,
    invoice_title,
    layout_invoice,
    money_text,
)
from invoicing.pdf.parts import draw_stamp
from invoicing.pdf.text import draw_text, fit_size

__all__ = ["render_invoice_pdf"]


ZLIB_LEVEL = 1  # reportlab's own filter uses zlib's default (6): much slower, the files hardly smaller


class _FastFlate(PDFStreamFilterZCompress):  # type: ignore[misc]  # reportlab has no type hints
    """FlateDecode at `ZLIB_LEVEL`. Set as one document's `defaultStreamFilters` (see `render_invoice_pdf`),
    so reportlab's module-wide `PDFZCompress` stays as it is for every other user of reportlab."""

    def encode(self, text: str | bytes) -> bytes:
        """`text` zlib-compressed (UTF-8 first if it is a str, as reportlab's filter does)."""
        return zlib.compress(text.encode("utf8") if isinstance(text, str) else text, ZLIB_LEVEL)


_FLATE = _FastFlate()
_NOT_PDFDOC_ASCII = "".join(map(chr, range(0x18, 0x20)))  # PDFDocEncoding is ASCII but for 0x18-0x1f


class _Canvas(Canvas):  # type: ignore[misc]  # reportlab has no type hints
    """reportlab's canvas, but a form's operators are encoded to bytes in one pass when they are ASCII.

    reportlab's `endForm` encodes them with its PDFDocEncoding codec, a dictionary lookup per character, and
    the head form is long (most of it the QR code's path). Our operators are ASCII (text goes in as escaped
    subset codes), and PDFDocEncoding maps ASCII to the same bytes, except 0x18-0x1f: the same stream, byte
    for byte (a test compares); anything else goes through reportlab's."""

    def endForm(self, **extra_attributes: object) -> None:
        """reportlab's `endForm`, the stream encoded as above."""
        name, code = self._formData[0], self._code
        self._code: list[str] = []  # reportlab encodes just the preamble...
        super().endForm(**extra_attributes)
        data = "\n".join([self._preamble, *code])  # ...and the form gets the stream it would have made
        fast = data.isascii() and not any(c in data for c in _NOT_PDFDOC_ASCII)  # no regex: a memchr scan or none
        self._doc.idToObject[xObjectName(name)].stream = data.encode("ascii") if fast else pdfdocEnc(data)


def render_invoice_pdf(inv: Invoice, verify_url: str, *, compress: bool = True) -> bytes:
    """The invoice or credit note as a PDF; the QR code holds `verify_url`. Same input, same bytes.

    `compress=False` leaves the streams unzipped: a little faster, about twice the size."""
    layout = layout_invoice(inv)
    buf = io.BytesIO()
    # pageCompression=0 leaves every stream's `filters` unset (pages, forms, font file, ToUnicode), so they
    # all take the document's default filters: ours, at a faster zlib level, instead of reportlab's global.
    c = _Canvas(buf, pagesize=A4, invariant=True, pageCompression=0)
    if compress:
        c._doc.defaultStreamFilters = [_FLATE]
    c.setTitle(f"{invoice_title(inv)[0]} {inv.invoice_code} {inv.invoice_number}")
    c.setAuthor(inv.seller.name)
    _make_forms(c, inv, verify_url)
    for number in range(1, len(layout.pages) + 1):
        _page(c, inv, layout, number)
        c.showPage()
    c.save()
    return buf.getvalue()


def _page(c: Canvas, inv: Invoice, layout: Layout, number: int) -> None:
    count = len(layout.pages)
    last = number == count
    c.doForm("head")
    if inv.status == "voided":
        c.doForm("void")  # under the content, so every figure stays legible
    y = TOP - HEAD_H
    if number == 1:
        y = _parties(c, layout.parties, y, layout.party_h)
    y = _table(c, layout.pages[number - 1], y, BOTTOM + layout.tail_h if last else BOTTOM, last)
    if last:
        y = _tail(c, inv, layout.remarks, y, layout.tail_h - SUBTOTAL_H - WORDS_H)
    c.setStrokeColor(INK)
    c.setLineWidth(1)
    c.rect(LEFT, y, RIGHT - LEFT, TOP - HEAD_H - y)
    c.setFillColor(INK)
    footer = f"第 {number} 页 / 共 {count} 页  Page {number} of {count}"
    draw_text(c, PAGE_W / 2, BOTTOM - 6 * mm, footer, 7.5, align="center")
    if not last:
        draw_text(c, RIGHT, y - 4 * mm, "续下页 Continued on next page", 7.5, align="right")


def _make_forms(c: Canvas, inv: Invoice, verify_url: str) -> None:
    """The page head (QR code, title, barcode, identity) and a voided invoice's stamp: once per document."""
    c.beginForm("head")
    draw_qr(c, LEFT, TOP - QR_SIZE, verify_url, QR_SIZE)
    c.setFillColor(INK)
    draw_text(c, LEFT + QR_SIZE / 2, TOP - QR_SIZE - 4.5 * mm, "扫码查验 / Scan to verify", 7.5, align="center")
    _title_block(c, inv)
    draw_code128(c, RIGHT - 56 * mm, TOP - 9 * mm, inv.invoice_code + inv.invoice_number, 56 * mm, 9 * mm)
    c.setFillColor(BLACK)
    draw_text(c, RIGHT - 28 * mm, TOP - 12 * mm, inv.invoice_code + inv.invoice_number, 7, align="center")
    day = inv.issue_date
    facts = (
        ("发票代码", "Code", inv.invoice_code),
        ("发票号码", "No.", inv.invoice_number),
        ("开票日期", "Date", f"{day.year}年{day.month:02d}月{day.day:02d}日"),
        ("校验码", "Check code", inv.check_code),
    )
    for i, (zh, en, value) in enumerate(facts):
        y = TOP - (18 + 5.5 * i) * mm
        c.setFillColor(INK)
        draw_text(c, RIGHT - 62 * mm, y, zh, 8)
        draw_text(c, RIGHT - 62 * mm + text_width(zh, cjk_font(), 8) + 1.2 * mm, y, en, 6.5)
        c.setFillColor(BLACK)
        draw_text(c, RIGHT - 38 * mm, y, value, 9.5, max_width=38 * mm)
    c.endForm()
    if inv.status == "voided":
        c.beginForm("void")
        draw_stamp(c, PAGE_W / 2, TOP - HEAD_H - 70 * mm, "作废", "VOID", STAMP)  # over the lines, on every page
        c.endForm()


def _title_block(c: Canvas, inv: Invoice) -> None:
    """The title, emboldened by stroking its outline (the font has one weight), over a double rule."""
    title, subtitle = invoice_title(inv)
    colour = RED if inv.kind == "credit_note" else INK
    cx, font = (LEFT + QR_SIZE + RIGHT - 62 * mm) / 2, font_for(title)
    half = text_width(title, font, 21) / 2
    c.saveState()
    c.setFillColor(colour)
    c.setStrokeColor(colour)
    c.setLineWidth(0.7)
    text = c.beginText(cx - half, TOP - 13 * mm)
    text.setTextRenderMode(2)
    text.setFont(font, 21)
    text.textOut(title)
    c.drawText(text)
    c.restoreState()
    c.setStrokeColor(colour)
    c.setLineWidth(0.8)
    for y in (TOP - 16 * mm, TOP - 17.2 * mm):
        c.line(cx - half - 5 * mm, y, cx + half + 5 * mm, y)
    c.setFillColor(colour)
    draw_text(c, cx, TOP - 22.5 * mm, subtitle, 10, align="center")
    if inv.kind == "credit_note":
        draw_text(
            c,
            cx,
            TOP - 28 * mm,
            f"对应正数发票代码 {inv.original_invoice_code}  号码 {inv.original_invoice_number}",
            8.5,
            align="center",
            max_width=RIGHT - 66 * mm - LEFT - QR_SIZE,
        )


def _parties(c: Canvas, parties: list[list[Field]], top: float, height: float) -> float:
    """Buyer (left) and seller (right), each with a vertical caption as on the printed form."""
    half = (RIGHT - LEFT) / 2
    c.setStrokeColor(INK)
    c.setLineWidth(0.8)
    c.line(LEFT + half, top, LEFT + half, top - height)
    c.line(LEFT, top - height, RIGHT, top - height)
    for i, (zh, en) in enumerate((("购买方", "Buyer"), ("销售方", "Seller"))):
        x0 = LEFT + i * half
        c.line(x0 + CAPTION_W, top, x0 + CAPTION_W, top - height)
        c.setFillColor(INK)
        mid = top - height / 2
        for j, ch in enumerate(zh):
            draw_text(c, x0 + CAPTION_W / 2, mid + (5.5 - 5 * j) * mm, ch, 10, align="center")
        draw_text(c, x0 + CAPTION_W / 2, mid - 11 * mm, en, 6.5, align="center")
        y = top - PAD
        for field in parties[i]:
            c.setFillColor(INK)
            draw_text(c, x0 + CAPTION_W + PAD, y - 2.2 * mm, field.label, 6.5)
            c.setFillColor(BLACK)
            for k, part in enumerate(field.lines):
                draw_text(c, x0 + CAPTION_W + PAD, y - 2.6 * mm - (k + 0.9) * field.size * 1.15, part, field.size)
            y -= field.height
    return top - height


def _table(c: Canvas, rows: list[Row], top: float, floor: float, last: bool) -> float:
    """Column heads and this page's rows; the body reaches down to `floor` unless this is the last page
    (then it ends after the rows, but not shorter than MIN_BODY_H). Returns the body's bottom."""
    c.setFillColor(INK)
    for (zh, en, _, _), x, w in zip(COLUMNS, COL_X, COL_W, strict=True):
        draw_text(c, x + w / 2, top - 3.6 * mm, zh, 8, align="center")
        draw_text(c, x + w / 2, top - 6.8 * mm, en, 6, align="center")
    y = top - THEAD_H
    c.setFillColor(BLACK)
    c.setStrokeColor(RULE)
    c.setLineWidth(0.3)
    for n, row in enumerate(rows):
        _draw_row(c, row, y)
        y -= row.height
        if n < len(rows) - 1 or not last:
            c.line(LEFT, y, RIGHT, y)
    bottom = max(min(y, top - THEAD_H - MIN_BODY_H), floor) if last else floor
    c.setStrokeColor(INK)
    c.setLineWidth(0.6)
    c.line(LEFT, top - THEAD_H, RIGHT, top - THEAD_H)
    for x in COL_X[1:]:
        c.line(x, top, x, bottom)
    return bottom


def _draw_row(c: Canvas, row: Row, top: float) -> None:
    base = top - PAD - BODY * 0.85
    for i, part in enumerate(row.desc):
        draw_text(c, COL_X[1] + PAD, base - i * LEADING, part, BODY)
    for col, text in enumerate(row.cells):
        if col != 1 and text:
            x, w, align = COL_X[col], COL_W[col], COLUMNS[col][3]
            anchor = x + w - PAD if align == "right" else x + w / 2
            draw_text(c, anchor, base, text, BODY, align=align, max_width=w - 2 * PAD)


def _tail(c: Canvas, inv: Invoice, remarks: list[str], top: float, remarks_h: float) -> float:
    """合计; 价税合计 in words (大写) and figures (小写); 备注. Returns the frame's bottom."""
    y, label_x = top - SUBTOTAL_H, LEFT + LABEL_W
    words_y = y - WORDS_H
    bottom = words_y - remarks_h
    c.setStrokeColor(INK)
    c.setLineWidth(0.6)
    for line_y in (top, y, words_y):
        c.line(LEFT, line_y, RIGHT, line_y)
    c.line(label_x, y, label_x, bottom)
    c.setFillColor(INK)
    draw_text(c, COL_X[1] + COL_W[1] / 2, y + 2.4 * mm, "合    计  Total", 9, align="center")
    draw_text(c, LEFT + LABEL_W / 2, words_y + 4.8 * mm, "价税合计", 8.5, align="center")
    draw_text(c, LEFT + LABEL_W / 2, words_y + 1.6 * mm, "Total incl. tax", 6, align="center")
    draw_text(c, LEFT + LABEL_W / 2, (words_y + bottom) / 2 + 0.6 * mm, "备注", 8.5, align="center")
    draw_text(c, LEFT + LABEL_W / 2, (words_y + bottom) / 2 - 2.6 * mm, "Remarks", 6, align="center")
    draw_text(c, label_x + PAD, words_y + 3.2 * mm, "（大写）", 8)
    figures = money_text(inv.totals.total, inv.currency)
    size = fit_size(figures, font_for(figures), 11.5, 55 * mm)
    figures_x = RIGHT - PAD - text_width(figures, font_for(figures), size)
    draw_text(c, figures_x - 1.5 * mm, words_y + 3.2 * mm, "（小写）", 8, align="right")
    c.setFillColor(BLACK)
    for col, value in ((5, inv.totals.total_amount), (7, inv.totals.total_tax)):
        x, money = COL_X[col] + COL_W[col] - PAD, money_text(value, inv.currency)
        draw_text(c, x, y + 2.4 * mm, money, 9, align="right", max_width=COL_W[col] - 2 * PAD)
    c.setFillColor(RED if inv.kind == "credit_note" else BLACK)
    words_x = label_x + PAD + 12 * mm
    draw_text(c, words_x, words_y + 3.2 * mm, inv.total_in_words, 10.5, max_width=figures_x - 16 * mm - words_x)
    draw_text(c, figures_x, words_y + 3.2 * mm, figures, size)
    c.setFillColor(BLACK)
    for i, part in enumerate(remarks):
        draw_text(c, label_x + PAD, words_y - PAD - BODY * 0.85 - i * LEADING, part, BODY, font=cjk_font())
    return float(bottom)
