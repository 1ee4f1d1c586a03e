"""Reusable PDF drawing pieces (reportlab canvas): the CJK font, text fitting and wrapping, a vector
Code 128, a vector QR code, an address block and a rubber stamp. Used by the invoice (`pdf.py`) and,
later, the postal label and manifest. Pure: no DB, no network.

The font is looked up once per process (`cjk_font()`), so `INVOICELOOP_CJK_FONT` is read at first use.
For speed, what is the same from one document to the next is kept per process: the font's shared subset
(`SHARED_TEXT`, built and compressed once: `pdffont`), each glyph's data for the subsetter, and each
string's font, size, offset and, when its characters are all shared or it is in a standard font, its
encoded text (`_placed`, LRU); what reportlab names or numbers per document (the font resource names, the
codes of the document's own characters) is still asked of the document every time.
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
except ImportError:  # optional: segno does the same, 20 times slower
    zxingcpp = None  # type: ignore[assignment]

from invoicing.model import Address
from invoicing.pdffont import SubsetFont

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
_DARK_PIXEL = bytes([1] + [0] * 255)  # zxing-cpp's image: 0 is dark
_NUMBERS = [str(i) for i in range(256)]  # a QR code has at most 177 modules a side
_DIGIT_BIT = bytes.maketrans(b"01", b"\x00\x01")  # python-barcode's "1010..." pattern


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
    """Width of `text` in points."""
    return float(pdfmetrics.stringWidth(text, font, size))


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
    shrunk to fit `max_width`. The font is `font_for(text)` unless given."""
    face, dx, size_op, chunks = _placed(text, font, size, align, max_width)
    canvas.addLiteral(f"BT 1 0 0 1 {fp_str(x - dx, y)} Tm {_show(canvas, face, text, size_op, chunks)} ET")


@lru_cache(maxsize=4096)
def _placed(
    text: str, font: str | None, size: float, align: str, max_width: float | None
) -> tuple[object, float, str, tuple[tuple[str | int, str], ...] | None]:
    """What `draw_text` writes that does not depend on the document, computed once per process for a
    string (labels, units, figures recur on every invoice): the font, the shift left of `x` for the
    alignment, the size operand and the text's (font, escaped codes) chunks: a standard font's name, or
    the subset of a TrueType font (`SubsetFont`), which is always 0, the shared subset: the codes of other
    subsets are the document's (None: ask the document)."""
    font = font or font_for(text)
    if max_width is not None:
        size = fit_size(text, font, size, max_width)
    dx = 0.0
    if align != "left":
        width = pdfmetrics.stringWidth(text, font, size)
        dx = width if align == "right" else width / 2
    face = pdfmetrics.getFont(font)
    chunks: tuple[tuple[str | int, str], ...] | None
    if not face._dynamicFont:
        chunks = tuple((f.fontName, escapePDF(c)) for f, c in unicode2T1(text, [face, *face.substitutionFonts]))
    elif isinstance(face, SubsetFont) and (codes := face.shared.encode(text)) is not None:
        chunks = ((0, escapePDF(codes)),)
    else:
        chunks = None
    return face, dx, fp_str(size), chunks


def _show(canvas: Canvas, face: object, text: str, size: str, chunks: tuple[tuple[str | int, str], ...] | None) -> str:
    """The text-showing operators for `text`, as reportlab's text objects write them.

    drawString costs ~20 µs a call (a text object each time); this is about a quarter of that, and an
    invoice page has some 150 strings. It uses the canvas's document, as reportlab's own text objects do."""
    doc = canvas._doc
    if face._dynamicFont:  # type: ignore[attr-defined]  # TrueType: subset names (and other codes) of this document
        name = face.getSubsetInternalName  # type: ignore[attr-defined]
        if chunks is None:
            chunks = tuple((subset, escapePDF(c)) for subset, c in face.splitString(text, doc))  # type: ignore[attr-defined]
        return " ".join(f"{name(subset, doc)} {size} Tf ({chunk}) Tj" for subset, chunk in chunks)
    return " ".join(f"{doc.getInternalFontName(font)} {size} Tf ({chunk}) Tj" for font, chunk in chunks)  # type: ignore[union-attr]


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

    zxing-cpp's encoder (C++, ~1.5 ms) when installed, else segno's (pure Python, ~30 ms: most of it
    choosing the mask). Both follow ISO/IEC 18004, including the mask choice by penalty score."""
    if zxingcpp is None:
        return [bytes(row) for row in segno.make(data, error="m", boost_error=False, micro=False).matrix]
    symbol = zxingcpp.create_barcode(data, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    image = zxingcpp.write_barcode_to_image(symbol, scale=1, add_quiet_zones=False)
    raw = memoryview(image)  # type: ignore[arg-type]  # it has the buffer protocol; its stub does not say so
    n, pixels = image.shape[0], bytes(raw).translate(_DARK_PIXEL)
    return [pixels[i * n : (i + 1) * n] for i in range(n)]


def draw_qr(canvas: Canvas, x: float, y: float, data: str, size: float) -> None:
    """The QR code of `data` (level M) as one vector path, `size` square from (x, y) bottom left.

    `size` is the symbol without its quiet zone: leave 4 modules clear around it."""
    rows = qr_matrix(data)
    n = len(rows)
    # One regex pass over all rows (joined with a light separator, so no run crosses a row) and the numbers
    # from a table: ~30% fewer instructions than run by run per row; the same operators in the same order.
    num = _NUMBERS if n < len(_NUMBERS) else [str(i) for i in range(n + 1)]
    stride = n + 1
    ops = [
        f"{num[s % stride]} {num[n - 1 - s // stride]} {num[e - s]} 1 re"
        for s, e in map(re.Match.span, _DARK_RUN.finditer(b"\x00".join(rows)))
    ]
    canvas.saveState()
    canvas.setFillColorRGB(0, 0, 0)
    canvas.transform(size / n, 0, 0, size / n, x, y)
    canvas.addLiteral(" ".join(ops) + " f")
    canvas.restoreState()


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
