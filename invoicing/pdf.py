"""Invoice -> PDF bytes: one A4 page (more when the lines need it) laid out like a Chinese e-invoice.

Hand-laid on a reportlab canvas (platypus is several times slower): a layout pass wraps the text and
splits the lines over pages, then each page is drawn. What is the same on every page (title, identity,
QR code, barcode; the void stamp) is drawn once per document as a Form XObject.
Pure: no DB, no network; the QR's URL is given by the caller (`formats.verify_url`).
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from decimal import Decimal

from reportlab.lib.colors import Color
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfdoc import PDFStreamFilterZCompress, pdfdocEnc, xObjectName
from reportlab.pdfgen.canvas import Canvas

from invoicing.model import Address, Invoice, Line, money_str, plain_str
from invoicing.pdfparts import (
    cjk_font,
    draw_code128,
    draw_qr,
    draw_stamp,
    draw_text,
    fit_lines,
    fit_size,
    font_for,
    text_width,
    wrap_text,
)

__all__ = ["render_invoice_pdf"]

PAGE_W, PAGE_H = A4
LEFT, RIGHT, TOP, BOTTOM = 12 * mm, PAGE_W - 12 * mm, PAGE_H - 10 * mm, 15 * mm
INK = Color(0.62, 0.25, 0.12)  # the brown-red of a printed fapiao's frame and labels
RED, BLACK = Color(0.8, 0.08, 0.08), Color(0, 0, 0)
RULE, STAMP = Color(0.85, 0.78, 0.74), Color(0.96, 0.58, 0.58)
HEAD_H, THEAD_H, SUBTOTAL_H, WORDS_H = 42 * mm, 8.5 * mm, 7 * mm, 9 * mm
MIN_PARTY_H, MIN_BODY_H, MIN_REMARKS_H = 31 * mm, 50 * mm, 14 * mm
QR_SIZE = 30 * mm  # FORMATS.md: at least 25 mm
BODY, LEADING, PAD = 8.0, 10.0, 1.5 * mm
LABEL_W, CAPTION_W = 22 * mm, 9 * mm  # caption cells: 价税合计 and 备注; 购买方 and 销售方
PARTY_W = (RIGHT - LEFT) / 2 - CAPTION_W - 2 * PAD
# (Chinese, English, width in mm (0: the rest), alignment) of the lines table.
COLUMNS = (
    ("序号", "No.", 8, "center"),
    ("项目名称", "Item", 0, "left"),
    ("单位", "Unit", 12, "center"),
    ("数量", "Qty", 18, "right"),
    ("单价", "Unit price", 23, "right"),
    ("金额", "Amount", 26, "right"),
    ("税率", "Rate", 11, "right"),
    ("税额", "Tax", 23, "right"),
)
_FIXED_W = sum(col[2] for col in COLUMNS) * mm
COL_W = [col[2] * mm or RIGHT - LEFT - _FIXED_W for col in COLUMNS]
COL_X = [LEFT + sum(COL_W[:i]) for i in range(len(COLUMNS))]


ZLIB_LEVEL = 1  # reportlab's own filter uses zlib's default (6): ~2x the time (~1.5 ms a page) for 3% smaller files


class _FastFlate(PDFStreamFilterZCompress):  # type: ignore[misc]  # reportlab has no type hints
    """FlateDecode at `ZLIB_LEVEL`. Set as one document's `defaultStreamFilters` (see `render_invoice_pdf`),
    so reportlab's module-wide `PDFZCompress` stays as it is for every other user of reportlab."""

    def encode(self, text: str | bytes) -> bytes:
        return zlib.compress(text.encode("utf8") if isinstance(text, str) else text, ZLIB_LEVEL)


_FLATE = _FastFlate()
_NOT_PDFDOC_ASCII = "".join(map(chr, range(0x18, 0x20)))  # PDFDocEncoding is ASCII but for 0x18-0x1f


class _Canvas(Canvas):  # type: ignore[misc]  # reportlab has no type hints
    """reportlab's canvas, but a form's operators are encoded to bytes in one pass when they are ASCII.

    reportlab's `endForm` encodes them with its PDFDocEncoding codec, a dictionary lookup per character:
    ~5 M instructions for the head form (17 KB, most of it the QR code's path), a tenth of a page's work.
    Our operators are ASCII (text goes in as escaped subset codes), and PDFDocEncoding maps ASCII to the
    same bytes, except 0x18-0x1f: the same stream, byte for byte; anything else goes through reportlab's."""

    def endForm(self, **extra_attributes: object) -> None:
        name, code = self._formData[0], self._code
        self._code: list[str] = []  # reportlab encodes just the preamble...
        super().endForm(**extra_attributes)
        data = "\n".join([self._preamble, *code])  # ...and the form gets the stream it would have made
        fast = data.isascii() and not any(c in data for c in _NOT_PDFDOC_ASCII)  # no regex: a memchr scan or none
        self._doc.idToObject[xObjectName(name)].stream = data.encode("ascii") if fast else pdfdocEnc(data)


@dataclass(frozen=True)
class _Row:
    cells: tuple[str, ...]
    desc: list[str]  # the item's description, wrapped to its column
    height: float


@dataclass(frozen=True)
class _Field:
    label: str
    size: float
    lines: list[str]

    @property
    def height(self) -> float:
        return float(3.9 * mm + len(self.lines) * self.size * 1.15)


@dataclass(frozen=True)
class _Layout:
    parties: list[list[_Field]]  # buyer's fields, seller's fields
    party_h: float
    remarks: list[str]
    tail_h: float  # 合计, 价税合计 and 备注 on the last page
    pages: list[list[_Row]]


def render_invoice_pdf(inv: Invoice, verify_url: str, *, compress: bool = True) -> bytes:
    """The invoice or credit note as a PDF; the QR code holds `verify_url`. Same input, same bytes.

    `compress=False` leaves the streams unzipped: ~10% faster, about twice the size (~85 KB a page)."""
    layout = _layout(inv)
    buf = io.BytesIO()
    # pageCompression=0 leaves every stream's `filters` unset (pages, forms, font file, ToUnicode), so they
    # all take the document's default filters: ours, at a faster zlib level, instead of reportlab's global.
    c = _Canvas(buf, pagesize=A4, invariant=True, pageCompression=0)
    if compress:
        c._doc.defaultStreamFilters = [_FLATE]
    c.setTitle(f"{_title(inv)[0]} {inv.invoice_code} {inv.invoice_number}")
    c.setAuthor(inv.seller.name)
    _make_forms(c, inv, verify_url)
    for number in range(1, len(layout.pages) + 1):
        _page(c, inv, layout, number)
        c.showPage()
    c.save()
    return buf.getvalue()


def _layout(inv: Invoice) -> _Layout:
    """Wrap every text and split the lines over pages, before anything is drawn (共 N 页 needs N)."""
    parties = [[_field(*f) for f in _party_fields(inv, buyer)] for buyer in (True, False)]
    party_h = max(MIN_PARTY_H, *(sum(f.height for f in fields) + PAD for fields in parties))
    remarks = wrap_text("\n".join(_remarks(inv)), cjk_font(), BODY, RIGHT - LEFT - LABEL_W - 2 * PAD)
    tail_h = SUBTOTAL_H + WORDS_H + max(MIN_REMARKS_H, len(remarks) * LEADING + 2 * PAD)
    rows = [_row(i + 1, line) for i, line in enumerate(inv.lines)]
    return _Layout(parties, party_h, remarks, tail_h, _paginate(rows, party_h, tail_h))


def _page(c: Canvas, inv: Invoice, layout: _Layout, number: int) -> None:
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


def _title(inv: Invoice) -> tuple[str, str]:
    if inv.kind == "credit_note":
        return "电子发票（红字）", "销项负数 · Credit note"
    return "电子发票", "e-Invoice"


def _remarks(inv: Invoice) -> list[str]:
    notes = []
    if inv.kind == "credit_note":
        notes.append(
            f"对应正数发票代码 {inv.original_invoice_code}  号码 {inv.original_invoice_number}"
            "  (Credit note for invoice code / number)"
        )
    if inv.status == "voided":
        notes.append(f"已作废 Voided{'：' + inv.void_reason if inv.void_reason else ''}")
    notes.append(f"交付方式 Delivery：{'邮寄 Postal' if inv.delivery_method == 'postal' else '电子 Electronic'}")
    if inv.remarks:
        notes.append(inv.remarks)
    return notes


def _money(value: Decimal, currency: str) -> str:
    return f"{'¥' if currency == 'CNY' else currency + ' '}{money_str(value)}"


def _row(number: int, line: Line) -> _Row:
    desc = wrap_text(line.description, font_for(line.description), BODY, COL_W[1] - 2 * PAD)
    rate = f"{plain_str(line.tax_rate * 100)}%"
    figures = (plain_str(line.quantity), plain_str(line.unit_price, 2), money_str(line.amount), rate)
    return _Row((str(number), "", line.unit, *figures, money_str(line.tax_amount)), desc, _row_height(len(desc)))


def _row_height(lines: int) -> float:
    return float(lines * LEADING + 2 * PAD - (LEADING - BODY))


def _paginate(rows: list[_Row], party_h: float, tail_h: float) -> list[list[_Row]]:
    """Split the rows over pages; the last page must also hold the totals and remarks (`tail_h`).

    A row taller than a whole page (a very long description) is cut, its text going on over the page."""
    pages: list[list[_Row]] = [[]]
    room, full = TOP - HEAD_H - party_h - THEAD_H - BOTTOM, TOP - HEAD_H - THEAD_H - BOTTOM
    todo = list(reversed(rows))
    while todo:
        row = todo.pop()
        if row.height > room and pages[-1] and (row.height <= full or room < _row_height(1)):
            pages.append([])
            room = full
        if row.height > room:  # only when it would not fit on any page
            fit = max(1, int((room - _row_height(0)) // LEADING))
            todo.append(_Row(("",) * len(row.cells), row.desc[fit:], _row_height(len(row.desc) - fit)))
            row = _Row(row.cells, row.desc[:fit], _row_height(fit))
        pages[-1].append(row)
        room -= row.height
    if room < tail_h:  # the totals go over: take the last row along, so they never stand alone
        pages.append([pages[-1].pop()] if len(pages[-1]) > 1 else [])
    return pages


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
    title, subtitle = _title(inv)
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


def _party_fields(inv: Invoice, buyer: bool) -> list[tuple[str, str]]:
    if not buyer:
        s = inv.seller
        return [
            ("名称 Name", s.name),
            ("纳税人识别号 Tax ID", s.tax_id),
            ("地址 Address", s.address),
            ("电话 Phone", s.phone or ""),
        ]
    b = inv.buyer
    return [
        ("名称 Name", b.name),
        ("纳税人识别号 Tax ID", b.tax_id or ""),
        ("地址 Address", _address(b.address) if b.address else ""),
        ("电话 Phone", "   ".join(x for x in (b.phone, b.email) if x)),
    ]


def _address(a: Address) -> str:
    place = a.city if a.city.startswith(a.province) else a.province + a.city
    country = "" if a.country == "CN" else f" {a.country}"
    return f"{place}{a.line1}{' ' + a.line2 if a.line2 else ''} {a.postal_code}{country}（收件人 {a.recipient}）"


def _field(label: str, value: str) -> _Field:
    """A value at 9 pt, shrunk to 7.5 pt to stay on one line, else wrapped at 7.5 pt."""
    return _Field(label, *fit_lines(value, font_for(value), 9, PARTY_W, 7.5))


def _parties(c: Canvas, parties: list[list[_Field]], top: float, height: float) -> float:
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


def _table(c: Canvas, rows: list[_Row], top: float, floor: float, last: bool) -> float:
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


def _draw_row(c: Canvas, row: _Row, top: float) -> None:
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
    figures = _money(inv.totals.total, inv.currency)
    size = fit_size(figures, font_for(figures), 11.5, 55 * mm)
    figures_x = RIGHT - PAD - text_width(figures, font_for(figures), size)
    draw_text(c, figures_x - 1.5 * mm, words_y + 3.2 * mm, "（小写）", 8, align="right")
    c.setFillColor(BLACK)
    for col, value in ((5, inv.totals.total_amount), (7, inv.totals.total_tax)):
        x, money = COL_X[col] + COL_W[col] - PAD, _money(value, inv.currency)
        draw_text(c, x, y + 2.4 * mm, money, 9, align="right", max_width=COL_W[col] - 2 * PAD)
    c.setFillColor(RED if inv.kind == "credit_note" else BLACK)
    words_x = label_x + PAD + 12 * mm
    draw_text(c, words_x, words_y + 3.2 * mm, inv.total_in_words, 10.5, max_width=figures_x - 16 * mm - words_x)
    draw_text(c, figures_x, words_y + 3.2 * mm, figures, size)
    c.setFillColor(BLACK)
    for i, part in enumerate(remarks):
        draw_text(c, label_x + PAD, words_y - PAD - BODY * 0.85 - i * LEADING, part, BODY, font=cjk_font())
    return float(bottom)
