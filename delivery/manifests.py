"""A manifest as JSON, CSV (FORMATS.md) and a printable PDF. Pure mapping: the API streams these chunks.

Rows are mappings with the `CSV_COLUMNS` keys (the repository selects them under these names);
`created_at` may be a datetime (written RFC 3339 UTC) and `invoice_number` an int (written 8 digits).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import IO, Any

from barcode.codex import Code128
from reportlab.lib.pagesizes import A4, landscape
from reportlab.pdfgen.canvas import Canvas

from invoicing.formats import rfc3339
from invoicing.model import beijing_time
from invoicing.pdf import LATIN_FONT, draw_code128, draw_text, font_for, wrap_text
from invoicing.spreadsheet import FORMULA_STARTS as FORMULA_STARTS  # the one rule; named here for the COPY export
from invoicing.spreadsheet import spreadsheet_safe as spreadsheet_safe

CSV_COLUMNS = (
    "manifest_number",
    "tracking_number",
    "invoice_code",
    "invoice_number",
    "recipient",
    "phone",
    "address_line1",
    "city",
    "province",
    "postal_code",
    "country",
    "created_at",
)
CHUNK_ROWS = 500  # rows joined per yielded chunk: fewer, larger writes to the socket


def item_record(row: Mapping[str, Any]) -> dict[str, str | None]:
    """One manifest item as text in `CSV_COLUMNS` order; a missing or null value stays None."""
    record: dict[str, str | None] = {}
    for name in CSV_COLUMNS:
        value = row.get(name)
        if isinstance(value, datetime):
            value = rfc3339(value)
        elif name == "invoice_number" and isinstance(value, int):
            value = f"{value:08d}"  # the number is 8 digits, leading zeros included (FORMATS.md)
        record[name] = None if value is None else str(value)
    return record


# --- CSV ---------------------------------------------------------------------------------------------

# OWASP "CSV Injection" (the rule: `invoicing.spreadsheet`): the columns that hold what a buyer or issuer typed are
# always quoted and neutralised; the others are formats the service makes or validates (codes, numbers, E.164
# phones, times).
TYPED_COLUMNS = ("recipient", "address_line1", "city", "province", "postal_code", "country")
_NEEDS_QUOTES = frozenset(',"\r\n')


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def csv_line(record: Mapping[str, str | None]) -> str:
    """One CRLF-terminated record (RFC 4180): typed columns neutralised and always quoted, other cells quoted
    when they hold a comma, a quote or a line break; a missing or empty value is written bare."""
    cells = []
    for name in CSV_COLUMNS:
        value = record[name] or ""
        if value and name in TYPED_COLUMNS:
            cells.append(_quoted(spreadsheet_safe(value)))
        else:
            cells.append(_quoted(value) if _NEEDS_QUOTES.intersection(value) else value)
    return ",".join(cells) + "\r\n"


def csv_header() -> str:
    """The header row, CRLF-terminated (no BOM: a UTF-8 BOM would corrupt the first column's name)."""
    return ",".join(CSV_COLUMNS) + "\r\n"


def csv_rows(rows: Iterable[Mapping[str, Any]], chunk_rows: int = CHUNK_ROWS) -> Iterator[str]:
    """The data rows as text chunks of up to `chunk_rows` rows each; memory stays flat in the row count."""
    pending: list[str] = []
    for row in rows:
        pending.append(csv_line(item_record(row)))
        if len(pending) == chunk_rows:
            yield "".join(pending)
            pending.clear()
    if pending:
        yield "".join(pending)


def csv_document(rows: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """Header then rows: the whole `?format=csv` body."""
    yield csv_header()
    yield from csv_rows(rows)


# --- JSON ------------------------------------------------------------------------------------------


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return rfc3339(value)
    return str(value)  # UUID, Decimal: their text form is the API's


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def json_prefix(manifest: Mapping[str, Any]) -> str:
    """The start of `{"manifest": {...}, "items": [`, datetimes as RFC 3339 UTC."""
    return '{"manifest":' + _dumps(dict(manifest)) + ',"items":['


def json_item(row: Mapping[str, Any], first: bool) -> str:
    """One item of the `items` array, with the comma before it unless it is the `first`."""
    return ("" if first else ",") + _dumps(item_record(row))


def json_items(rows: Iterable[Mapping[str, Any]], chunk_rows: int = CHUNK_ROWS) -> Iterator[str]:
    """All items, `chunk_rows` per chunk, commas in place."""
    parts: list[str] = []
    for index, row in enumerate(rows):
        parts.append(json_item(row, first=index == 0))
        if len(parts) == chunk_rows:
            yield "".join(parts)
            parts.clear()
    if parts:
        yield "".join(parts)


def json_suffix() -> str:
    """The end of the document."""
    return "]}"


def json_document(manifest: Mapping[str, Any], rows: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """The whole `?format=json` body in chunks."""
    yield json_prefix(manifest)
    yield from json_items(rows)
    yield json_suffix()


# --- PDF -------------------------------------------------------------------------------------------

PAGE: tuple[float, float] = landscape(A4)
MARGIN = 28.0
ROW_H = 46.0
MODULE = 0.8  # Code 128 module width in points (0.28 mm), within what handheld scanners read
BAR_H = 24.0
# (heading, left x, width) of each column
COLUMNS = (
    ("#", 28, 30),
    ("运单号 Tracking", 58, 200),
    ("发票 Invoice", 258, 110),
    ("收件人 Recipient", 368, 150),
    ("地址 Address", 518, 296),
)
TOP = PAGE[1] - MARGIN
BOTTOM = MARGIN + 18  # the footer line sits below this


def render_manifest_pdf(header: Mapping[str, Any], rows: Iterable[Mapping[str, Any]], out: IO[bytes]) -> int:
    """Write the printable manifest to `out`: a table with each item's tracking number as a vector Code 128,
    then a summary with the count and the manifest number as a barcode. Returns the number of items.

    reportlab holds each finished page (compressed) until `save`, so memory grows by a few KB a page;
    rows are consumed one at a time."""
    canvas = Canvas(out, pagesize=PAGE, pageCompression=1, invariant=1)
    number = str(header.get("manifest_number", ""))
    canvas.setTitle(f"Manifest {number}")
    page, count = 1, 0
    y = _page_start(canvas, header, page)
    for row in rows:
        if y - ROW_H < BOTTOM:
            canvas.showPage()
            page += 1
            y = _page_start(canvas, header, page)
        count += 1
        _draw_row(canvas, y, count, item_record(row))
        y -= ROW_H
    if y - 150 < BOTTOM:
        canvas.showPage()
        page += 1
        y = _page_start(canvas, header, page, table=False)
    _draw_summary(canvas, y - 24, number, count)
    canvas.showPage()
    canvas.save()
    return count


def _page_start(canvas: Canvas, header: Mapping[str, Any], page: int, table: bool = True) -> float:
    """Title, manifest details, footer and column headings; returns the y of the first row's top."""
    number = str(header.get("manifest_number", ""))
    draw_text(canvas, MARGIN, TOP - 12, f"邮件交寄清单 Manifest {number}", 14)
    draw_text(canvas, MARGIN, TOP - 28, _details(header), 9, max_width=PAGE[0] - 2 * MARGIN)
    draw_text(canvas, PAGE[0] - MARGIN, MARGIN, f"{number} · page {page}", 8, align="right", font=LATIN_FONT)
    y = TOP - 48
    if table:
        for heading, x, _ in COLUMNS:
            draw_text(canvas, x, y, heading, 9)
        canvas.setLineWidth(0.5)
        canvas.line(MARGIN, y - 5, PAGE[0] - MARGIN, y - 5)
    return y - 8


def _details(header: Mapping[str, Any]) -> str:
    operator = header.get("operator_name") or header.get("operator_id") or ""
    parts = [f"承运 Operator: {operator}", f"状态 Status: {header.get('status', '')}"]
    for label, key in (("创建 Created", "created_at"), ("交接 Closed", "closed_at")):
        if isinstance(header.get(key), datetime):
            parts.append(f"{label}: {beijing_time(header[key])}")
    return "   ".join(parts)


def _draw_row(canvas: Canvas, top: float, index: int, item: Mapping[str, str | None]) -> None:
    """One item: index, tracking barcode and number, invoice, recipient and phone, address (2 lines)."""
    tracking = item["tracking_number"] or ""
    base = top - 11
    draw_text(canvas, 28, base, str(index), 8, font=LATIN_FONT)
    if tracking:
        quiet = 10 * MODULE  # the quiet zone Code 128 needs on each side
        draw_code128(canvas, 58 + quiet, top - 4 - BAR_H, tracking, _modules(tracking) * MODULE, BAR_H)
        draw_text(canvas, 58 + quiet, top - BAR_H - 14, tracking, 9, font=LATIN_FONT)
    draw_text(canvas, 258, base, item["invoice_code"] or "", 8, font=LATIN_FONT)
    draw_text(canvas, 258, base - 12, item["invoice_number"] or "", 8, font=LATIN_FONT)
    _draw_clipped(canvas, 368, base, item["recipient"] or "", 9, 145, max_lines=1)
    draw_text(canvas, 368, base - 12, item["phone"] or "", 8, font=LATIN_FONT)
    place = " ".join(filter(None, (item[k] for k in ("province", "city", "postal_code", "country"))))
    below = _draw_clipped(canvas, 518, base, item["address_line1"] or "", 8, 290, max_lines=2)
    _draw_clipped(canvas, 518, below, place, 8, 290, max_lines=1)
    canvas.setLineWidth(0.25)
    canvas.line(MARGIN, top - ROW_H + 2, PAGE[0] - MARGIN, top - ROW_H + 2)


def _draw_clipped(canvas: Canvas, x: float, y: float, text: str, size: float, width: float, max_lines: int) -> float:
    """`text` wrapped from baseline `y` down, at most `max_lines` (an ellipsis marks a cut); returns the
    next baseline."""
    lines = wrap_text(text, font_for(text), size, width) if text else []
    if len(lines) > max_lines:
        lines = [*lines[: max_lines - 1], lines[max_lines - 1] + "…"]
    for line in lines:
        draw_text(canvas, x, y, line, size, max_width=width)
        y -= 12
    return y


def _draw_summary(canvas: Canvas, y: float, number: str, count: int) -> None:
    """Count, the manifest number as a barcode, and lines for the hand-over signatures."""
    draw_text(canvas, MARGIN, y, f"合计 Total items: {count}", 12)
    if number:
        module = min(1.0, 340 / _modules(number))  # a long number shrinks rather than run into the signatures
        draw_code128(canvas, MARGIN + 10 * module, y - 64, number, _modules(number) * module, 44)
        draw_text(canvas, MARGIN + 10 * module, y - 78, number, 10, font=LATIN_FONT)
    for i, label in enumerate(("交寄人 Handed over by", "收寄人 Received by", "日期 Date")):
        x = MARGIN + 380 + i * 140
        draw_text(canvas, x, y - 64, label, 8)
        canvas.line(x, y - 50, x + 120, y - 50)


def _modules(data: str) -> int:
    """The width of `data`'s Code 128 symbol in modules, to draw it at an exact module width."""
    return len(Code128(data).build()[0])
