"""The invoice's layout: page geometry, the lines table's columns, and the layout pass that wraps every
text and splits the lines over pages before anything is drawn (`render` draws it)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from reportlab.lib.colors import Color
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm

from invoicing.model import Address, Invoice, Line, money_str, plain_str
from invoicing.pdf.fonts import cjk_font, font_for
from invoicing.pdf.text import fit_lines, wrap_text

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


@dataclass(frozen=True)
class Row:
    """A line of the table on a page: its cells' text (the description's column empty) and its height."""

    cells: tuple[str, ...]
    desc: list[str]  # the item's description, wrapped to its column
    height: float


@dataclass(frozen=True)
class Field:
    """A party's field: its label, and its value's size and lines."""

    label: str
    size: float
    lines: list[str]

    @property
    def height(self) -> float:
        """Points taken, label included."""
        return float(3.9 * mm + len(self.lines) * self.size * 1.15)


@dataclass(frozen=True)
class Layout:
    """Everything wrapped and measured: the parties, the remarks and the table's rows page by page."""

    parties: list[list[Field]]  # buyer's fields, seller's fields
    party_h: float
    remarks: list[str]
    tail_h: float  # 合计, 价税合计 and 备注 on the last page
    pages: list[list[Row]]


def layout_invoice(inv: Invoice) -> Layout:
    """Wrap every text and split the lines over pages, before anything is drawn (共 N 页 needs N)."""
    parties = [[_field(*f) for f in _party_fields(inv, buyer)] for buyer in (True, False)]
    party_h = max(MIN_PARTY_H, *(sum(f.height for f in fields) + PAD for fields in parties))
    remarks = wrap_text("\n".join(_remarks(inv)), cjk_font(), BODY, RIGHT - LEFT - LABEL_W - 2 * PAD)
    tail_h = SUBTOTAL_H + WORDS_H + max(MIN_REMARKS_H, len(remarks) * LEADING + 2 * PAD)
    rows = [_row(i + 1, line) for i, line in enumerate(inv.lines)]
    return Layout(parties, party_h, remarks, tail_h, _paginate(rows, party_h, tail_h))


def invoice_title(inv: Invoice) -> tuple[str, str]:
    """(Chinese title, its subtitle)."""
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


def money_text(value: Decimal, currency: str) -> str:
    """An amount as printed: `¥1234.50` for CNY, else its currency code first (`USD 1234.50`)."""
    return f"{'¥' if currency == 'CNY' else currency + ' '}{money_str(value)}"


def _row(number: int, line: Line) -> Row:
    desc = wrap_text(line.description, font_for(line.description), BODY, COL_W[1] - 2 * PAD)
    rate = f"{plain_str(line.tax_rate * 100)}%"
    figures = (plain_str(line.quantity), plain_str(line.unit_price, 2), money_str(line.amount), rate)
    return Row((str(number), "", line.unit, *figures, money_str(line.tax_amount)), desc, _row_height(len(desc)))


def _row_height(lines: int) -> float:
    return float(lines * LEADING + 2 * PAD - (LEADING - BODY))


def _paginate(rows: list[Row], party_h: float, tail_h: float) -> list[list[Row]]:
    """Split the rows over pages; the last page must also hold the totals and remarks (`tail_h`).

    A row taller than a whole page (a very long description) is cut, its text going on over the page."""
    pages: list[list[Row]] = [[]]
    room, full = TOP - HEAD_H - party_h - THEAD_H - BOTTOM, TOP - HEAD_H - THEAD_H - BOTTOM
    todo = list(reversed(rows))
    while todo:
        row = todo.pop()
        if row.height > room and pages[-1] and (row.height <= full or room < _row_height(1)):
            pages.append([])
            room = full
        if row.height > room:  # only when it would not fit on any page
            fit = max(1, int((room - _row_height(0)) // LEADING))
            todo.append(Row(("",) * len(row.cells), row.desc[fit:], _row_height(len(row.desc) - fit)))
            row = Row(row.cells, row.desc[:fit], _row_height(fit))
        pages[-1].append(row)
        room -= row.height
    if room < tail_h:  # the totals go over: take the last row along, so they never stand alone
        pages.append([pages[-1].pop()] if len(pages[-1]) > 1 else [])
    return pages


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


def _field(label: str, value: str) -> Field:
    """A value at 9 pt, shrunk to 7.5 pt to stay on one line, else wrapped at 7.5 pt."""
    return Field(label, *fit_lines(value, font_for(value), 9, PARTY_W, 7.5))
