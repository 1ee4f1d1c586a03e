"""Reusable PDF drawing pieces (reportlab canvas): the CJK font, text fitting and wrapping, a vector
Code 128, a vector QR code, an address block and a rubber stamp. Used by the invoice (`pdf.py`) and,
later, the postal label and manifest. Pure: no DB, no network.

The font is looked up once per process (`cjk_font()`), so `INVOICELOOP_CJK_FONT` is read at first use.
For speed, what is the same from one document to the next is kept per process: the font's shared subset
(`SHARED_TEXT`, built and compressed once: `pdffont`), each glyph's data for the subsetter, each
character's advance (`text_width`), each string's font, size, offset and,
when its characters are all shared or it is in a standard font, its encoded text (`_placed`, LRU), and
the QR path's operators for each 8 modules (`_chunk_ops`). What reportlab names or numbers per document
(the font resource names, the codes of the document's own characters) is the document's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import cache, lru_cache
from pathlib import Path

import segno
from barcode.codex import Code128
from reportlab.lib.colors import Color
from reportlab.lib.rl_accel import escapePDF, fp_str, unicode2T1
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen.canvas import Canvas

try:
    import zxingcpp
except ImportError:  # optional: segno does the same, 50 times slower
    zxingcpp = None  # type: ignore[assignment]

from invoicing.model import Address
from invoicing.pdffont import SubsetFont

if zxingcpp is not None:
    from invoicing import qrmask

__all__ = [
    "CJK_FONT_ENV",
    "SHARED_TEXT",
    "CJKFontMissing",
    "address_lines",
    "cjk_font",
    "draw_address_block",
    "draw_code128",
    "draw_qr",
    "draw_stamp",
    "draw_text",
    "find_cjk_font",
    "fit_lines",
    "fit_size",
    "font_for",
    "qr_matrix",
    "text_width",
    "wrap_text",
]

CJK_FONT_ENV = "INVOICELOOP_CJK_FONT"
CJK_FONT_NAME = "InvoiceCJK"
LATIN_FONT = "Helvetica"  # one of the 14 standard fonts: every viewer has it, nothing to embed
# WenQuanYi Zen Hei (TrueType outlines, which reportlab can embed as a subset; Noto CJK's CFF it refuses).
CJK_FONT_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # Debian / Ubuntu: fonts-wqy-zenhei
    "/usr/share/fonts/wqy-zenhei/wqy-zenhei.ttc",  # Fedora: wqy-zenhei-fonts
    "/usr/share/fonts/wenquanyi/wqy-zenhei/wqy-zenhei.ttc",  # Arch: wqy-zenhei
)
# What every invoice prints in the CJK font, whatever it holds: embedded as one subset of the font built
# once per process (`pdffont`). Other characters (names, addresses, items; the words of a credit note or a
# void) go into a subset of each document's own. Every unused character here costs every invoice its glyph
# (~230 bytes for a Chinese one, ~80 for a Latin one, before compression); at most 160 besides ASCII.
SHARED_TEXT = "".join(
    (
        "0123456789 ",  # dates, page numbers; figures in addresses and descriptions
        "零壹贰叁肆伍陆柒捌玖拾佰仟万亿元角分整",  # amounts in words (words.py)
        "（）：，、/-.",  # punctuation of labels, names, addresses and descriptions
        # The labels of `pdf.py` drawn in the CJK font (the all-Latin ones are drawn in Helvetica).
        "电子发票 e-Invoice 扫码查验 / Scan to verify 发票代码 发票号码 开票日期 校验码 年月日",
        "购买方 销售方 名称 Name 纳税人识别号 Tax ID 地址 Address 电话 Phone 收件人",
        "序号 项目名称 单位 数量 单价 金额 税率 税额 合计 Total 价税合计 （大写） （小写） 备注",
        "交付方式 Delivery：邮寄 Postal 电子 Electronic",
        "第 1 页 / 共 1 页  Page 1 of 1 续下页 Continued on next page",
    )
)
# A Latin word (kept whole when wrapping) or any single other character, with the spaces after it.
_TOKEN_RE = re.compile(r"[\u0021-\u007e\u00a0-\u02ff]+\s*|\S\s*|\s+")
# Characters that must not start a line (Chinese line-breaking rules, kinsoku).
_NO_LINE_START = frozenset("，。、；：？！）》」』】〉”’,.;:?!)%")
_DARK_RUN = re.compile(rb"\x01+")
_DIGIT_BIT = bytes.maketrans(b"01", b"\x00\x01")  # python-barcode's "1010..." pattern
_BIT_DIGIT = bytes.maketrans(b"\x00\x01", b"01")


class CJKFontMissing(RuntimeError):
    """No usable CJK TrueType font: the invoice PDF cannot print Chinese text."""


def find_cjk_font(environ: dict[str, str] | os._Environ[str] | None = None) -> Path:
    """The CJK font file: `$INVOICELOOP_CJK_FONT` when set, else the first distribution path that exists."""
    env = os.environ if environ is None else environ
    override = env.get(CJK_FONT_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise CJKFontMissing(
                f"{CJK_FONT_ENV}={override!r} is not a font file; point it at a TrueType "
                "font with Chinese glyphs such as wqy-zenhei.ttc, or unset it"
            )
        return path
    for candidate in CJK_FONT_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise CJKFontMissing(
        "no Chinese font found for invoice PDFs: install the Debian package fonts-wqy-zenhei "
        f"(apt-get install fonts-wqy-zenhei) or set {CJK_FONT_ENV} to a TrueType font file "
        f"(looked in {', '.join(CJK_FONT_PATHS)})"
    )


@cache
def cjk_font() -> str:
    """Register the CJK font with reportlab once per process (~0.3 s to parse) and return its name.

    It is embedded as a subset of the glyphs a document uses, so any viewer shows the text."""
    font = SubsetFont(CJK_FONT_NAME, str(find_cjk_font()), SHARED_TEXT)
    pdfmetrics.registerFont(font)
    return CJK_FONT_NAME


def font_for(text: str) -> str:
    """Helvetica for text it can show (WinAnsi, e.g. figures, codes, `¥`), else the CJK font."""
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return cjk_font()
    return LATIN_FONT


def text_width(text: str, font: str, size: float) -> float:
    """Width of `text` in points: reportlab's `stringWidth`, the same figure, from a per-process table of
    each character's advance (reportlab's takes ~15k instructions a call, and layout makes hundreds)."""
    advances = _ADVANCES.get(font)
    if advances is None:
        advances = _ADVANCES[font] = _Advances(font)
    return sum(map(advances.__getitem__, text)) * 0.001 * size


class _Advances(dict[str, float]):
    """Characters' advances in a font, in reportlab's units (1/1000 em), each looked up once."""

    def __init__(self, font: str) -> None:
        super().__init__()
        self.face = pdfmetrics.getFont(font)

    def __missing__(self, char: str) -> float:
        face = self.face
        if face._dynamicFont:  # TrueType: reportlab sums these, as floats
            advance = float(face.face.charWidths.get(ord(char), face.face.defaultWidth))
        else:  # Type 1: whole numbers (its encoded byte's width, or a substitution font's)
            advance = round(face.stringWidth(char, 1000))
        self[char] = advance
        return advance


_ADVANCES: dict[str, _Advances] = {}


def fit_size(text: str, font: str, size: float, width: float, min_size: float = 5.0) -> float:
    """`size`, or the smaller size at which `text` fits `width` on one line (never below `min_size`)."""
    w = text_width(text, font, size)
    return size if w <= width else max(min_size, size * width / w)


def fit_lines(text: str, font: str, size: float, width: float, min_size: float) -> tuple[float, list[str]]:
    """One line at `size` or a little smaller (down to `min_size`); else wrapped at `min_size`."""
    fitted = fit_size(text, font, size, width, min_size)
    if text_width(text, font, fitted) <= width:
        return fitted, [text]
    return min_size, wrap_text(text, font, min_size, width)


def wrap_text(text: str, font: str, size: float, width: float) -> list[str]:
    """Break `text` into lines no wider than `width`: between Chinese characters, at spaces between
    Latin words, inside a word only when it is wider than a line. Keeps explicit line breaks."""
    lines: list[str] = []
    for para in text.splitlines() or [""]:
        line, line_w = "", 0.0
        for tok in _TOKEN_RE.findall(para):
            ink = tok.rstrip()
            if line_w + text_width(ink, font, size) <= width:
                line, line_w = line + tok, line_w + text_width(tok, font, size)
                continue
            carry = ""
            if ink and ink[0] in _NO_LINE_START and len(line.rstrip()) > 1:
                line, carry = line.rstrip()[:-1], line.rstrip()[-1]  # take the last character along
            if line.strip():
                lines.append(line.rstrip())
            line = carry
            for ch in tok:  # a token wider than a line is cut by characters
                if line and text_width(line + ch, font, size) > width and not ch.isspace():
                    lines.append(line.rstrip())
                    line = ""
                line += ch
            line_w = text_width(line, font, size)
        lines.append(line.rstrip())
    return lines


def draw_text(
    canvas: Canvas,
    x: float,
    y: float,
    text: str,
    size: float,
    *,
    align: str = "left",
    font: str | None = None,
    max_width: float | None = None,
) -> None:
    """One line of text at baseline `y`, in the current fill colour; `align` left/center/right of `x`;
    shrunk to fit `max_width`. The font is `font_for(text)` unless given.

    drawString costs ~20 µs a call (a text object each time); this writes the same operators (but for the
    text matrix) in a small part of that, and an invoice page has some 150 strings."""
    face, dx, size_op, shows = _placed(text, font, size, align, max_width)
    doc = canvas._doc
    if shows is None:  # TrueType text with characters of the document's own, which it numbers
        runs = face.splitString(text, doc)  # type: ignore[attr-defined]
        shows = tuple((face.fontName, f"+{n} {size_op} Tf ({escapePDF(codes)}) Tj") for n, codes in runs)  # type: ignore[attr-defined]
    names = doc.fontMapping  # reportlab's font resource names in this document: "/F1", "/F2" (+subset)
    try:
        ops = " ".join([names[name] + show for name, show in shows])
    except KeyError:  # the font's first string in this document: it gets its name
        if face._dynamicFont:  # type: ignore[attr-defined]
            face.getSubsetInternalName(0, doc)  # type: ignore[attr-defined]
        for name, _ in shows:
            doc.getInternalFontName(name)
        ops = " ".join([names[name] + show for name, show in shows])
    canvas._code.append(f"BT 1 0 0 1 {fp_str(x - dx, y)} Tm {ops} ET")  # canvas.addLiteral, without its call


@lru_cache(maxsize=4096)
def _placed(
    text: str, font: str | None, size: float, align: str, max_width: float | None
) -> tuple[object, float, str, tuple[tuple[str, str], ...] | None]:
    """What `draw_text` writes that does not depend on the document, computed once per process for a
    string (labels, units, figures recur on every invoice): the font, the shift left of `x` for the
    alignment, the size operand and the text's runs: (font name, what follows the font's resource name in
    the document: [+subset] size Tf (codes) Tj). A TrueType font's codes are the shared subset's
    (`SubsetFont`); a string with characters of the document's own has None: they are the document's."""
    font = font or font_for(text)
    if max_width is not None:
        size = fit_size(text, font, size, max_width)
    dx = 0.0
    if align != "left":
        width = text_width(text, font, size)
        dx = width if align == "right" else width / 2
    face = pdfmetrics.getFont(font)
    size_op = fp_str(size)
    if not face._dynamicFont:
        if text.isascii() and text.isprintable() and face.encName == "WinAnsiEncoding":  # ASCII is itself
            return face, dx, size_op, ((font, f" {size_op} Tf ({escapePDF(text.encode())}) Tj"),)
        runs = unicode2T1(text, [face, *face.substitutionFonts])
        return face, dx, size_op, tuple((f.fontName, f" {size_op} Tf ({escapePDF(c)}) Tj") for f, c in runs)
    if isinstance(face, SubsetFont) and (codes := face.shared.encode(text)) is not None:
        return face, dx, size_op, ((font, f"+0 {size_op} Tf ({escapePDF(codes)}) Tj"),)
    return face, dx, size_op, None


def draw_code128(canvas: Canvas, x: float, y: float, data: str, width: float, height: float) -> None:
    """A Code 128 barcode of `data` as vector bars (one path), `width` × `height` from (x, y) bottom left.

    The encoding (start code, code sets, checksum, stop) is python-barcode's. Leave 10 modules clear on
    both sides (a module is `width` / the pattern's length: 145 modules for 20 digits)."""
    pattern = Code128(data).build()[0].encode().translate(_DIGIT_BIT)
    module = width / len(pattern)
    ops = [f"{i} 0 {w} 1 re" for i, w in _runs(pattern)]
    canvas.saveState()
    canvas.setFillColorRGB(0, 0, 0)
    canvas.transform(module, 0, 0, height, x, y)
    canvas.addLiteral(" ".join(ops) + " f")
    canvas.restoreState()


def _runs(row: bytes) -> list[tuple[int, int]]:
    """(start, length) of each run of dark modules (byte 1) in a row."""
    return [(m.start(), m.end() - m.start()) for m in _DARK_RUN.finditer(row)]


def qr_matrix(data: str) -> list[bytes]:
    """The QR code of `data` at error-correction level M (not boosted): rows top first, 1 dark, 0 light.

    zxing-cpp's encoder (C++; its mask choice sped up by `qrmask`, ~0.6 ms) when installed, else segno's
    (pure Python, ~30 ms: most of it choosing the mask). Both follow ISO/IEC 18004, including the mask
    choice by penalty score."""
    n, rows = _qr_rows(data)
    return [f"{int.from_bytes(row, 'big') >> (-n % 8):0{n}b}".encode().translate(_DIGIT_BIT) for row in rows]


def _qr_rows(data: str) -> tuple[int, list[bytes]]:
    """(size, rows top first, 8 modules a byte, most significant bit first, 1 dark, padded light)."""
    if zxingcpp is not None:
        return qrmask.qr_rows(data)
    matrix = segno.make(data, error="m", boost_error=False, micro=False).matrix
    n = len(matrix)
    return n, [(int(bytes(row).translate(_BIT_DIGIT), 2) << (-n % 8)).to_bytes((n + 7) // 8, "big") for row in matrix]


def draw_qr(canvas: Canvas, x: float, y: float, data: str, size: float) -> None:
    """The QR code of `data` (level M) as one vector path, `size` square from (x, y) bottom left.

    `size` is the symbol without its quiet zone: leave 4 modules clear around it."""
    n, rows = _qr_rows(data)
    # Each row is read 8 modules (a byte) at a time, and each byte's `re` operators come from a table made
    # once per process (`_chunk_ops`): no Python work per dark run, a quarter of the instructions. A run
    # across two bytes is two abutting rectangles of the one path, filled as one shape.
    tables = [_chunk_ops(k) for k in range((n + 7) // 8)]
    lines = []
    for row_y, row in zip(range(n - 1, -1, -1), rows, strict=True):
        ops = " ".join(filter(None, map(tuple.__getitem__, tables, row)))
        if ops:
            lines.append(ops.replace("Y", str(row_y)))
    canvas.saveState()
    canvas.setFillColorRGB(0, 0, 0)
    canvas.transform(size / n, 0, 0, size / n, x, y)
    canvas.addLiteral(" ".join(lines) + " f")
    canvas.restoreState()


@cache
def _chunk_ops(k: int) -> tuple[str, ...]:
    """For each value of the k-th 8 modules of a row (most significant bit first, 1 dark): its dark runs as
    `x Y width 1 re` operators, Y standing for the row's y."""
    return tuple(
        " ".join(
            f"{8 * k + start} Y {width} 1 re" for start, width in _runs(f"{value:08b}".encode().translate(_DIGIT_BIT))
        )
        for value in range(256)
    )


def draw_stamp(canvas: Canvas, x: float, y: float, big: str, small: str, colour: Color, angle: float = 28) -> None:
    """A rubber stamp centred on (x, y), turned by `angle`: a double rounded frame, `big` over `small`.

    Draw it before the content it marks, in a light colour, so that what it covers stays legible."""
    canvas.saveState()
    canvas.translate(x, y)
    canvas.rotate(angle)
    canvas.setStrokeColor(colour)
    canvas.setFillColor(colour)
    canvas.setLineWidth(5)
    canvas.roundRect(-80 * mm, -30 * mm, 160 * mm, 60 * mm, 6 * mm)
    canvas.setLineWidth(1.5)
    canvas.roundRect(-76 * mm, -26 * mm, 152 * mm, 52 * mm, 4 * mm)
    draw_text(canvas, 0, -2 * mm, big, 80, align="center")
    draw_text(canvas, 0, -19 * mm, small, 30, align="center")
    canvas.restoreState()


def address_lines(address: Address) -> list[str]:
    """A Chinese postal address written large to small, as on an envelope: postal code, province and
    city, street, then the recipient (and the country when not China). Empty parts are left out."""
    place = address.city if address.city.startswith(address.province) else address.province + address.city
    lines = [
        f"邮编 {address.postal_code}" if address.postal_code else "",
        place,
        address.line1,
        address.line2,
        address.recipient,
        "" if address.country == "CN" else address.country,
    ]
    return [line for line in lines if line]


def draw_address_block(
    canvas: Canvas,
    x: float,
    y: float,
    width: float,
    lines: Sequence[str],
    *,
    size: float = 10,
    leading: float | None = None,
) -> float:
    """Address lines from top baseline `y` downwards, each wrapped to `width`; returns the next baseline."""
    leading = leading or size * 1.3
    for text in lines:
        font = font_for(text)
        canvas.setFont(font, size)
        for part in wrap_text(text, font, size, width):
            canvas.drawString(x, y, part)
            y -= leading
    return y
