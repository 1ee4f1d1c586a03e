"""Reusable PDF drawing pieces (reportlab canvas): the CJK font, text fitting and wrapping, a vector
Code 128, a vector QR code, an address block and a rubber stamp. Used by the invoice (`pdf.py`) and,
later, the postal label and manifest. Pure: no DB, no network.

The font is looked up once per process (`cjk_font()`), so `INVOICELOOP_CJK_FONT` is read at first use.
For speed, what is the same from one document to the next is kept per process: each glyph's data for the
subsetter (`_GlyphCache`, bounded by the font) and each string's font, size and offset (`_placed`, LRU);
what reportlab numbers per document (subset codes, font names) is still asked of the document every time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import cache, lru_cache
from pathlib import Path
from struct import pack, unpack_from

import segno
from barcode.codex import Code128
from reportlab import rl_config
from reportlab.lib.colors import Color
from reportlab.lib.rl_accel import escapePDF, fp_str, unicode2T1
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.pdfdoc import PDFArray
from reportlab.pdfbase.ttfonts import TTFont, TTFontMaker
from reportlab.pdfgen.canvas import Canvas

try:
    import zxingcpp
except ImportError:  # optional: segno does the same, 20 times slower
    zxingcpp = None  # type: ignore[assignment]

from invoicing.model import Address

__all__ = [
    "CJK_FONT_ENV",
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
    path = find_cjk_font()
    # asciiReadable=False: one subset (256 glyphs) holds a typical invoice's characters, not two.
    font = _SubsetFont(CJK_FONT_NAME, str(path), subfontIndex=0, asciiReadable=False)
    _slice_big_tables(font.face)
    _fast_subsets(font.face)
    pdfmetrics.registerFont(font)
    return CJK_FONT_NAME


class _Numbers(PDFArray):  # type: ignore[misc]  # reportlab has no type hints
    """A PDF array of numbers, formatted in one `fp_str` call per line of ten: the same bytes as reportlab's
    PDFArray, which formats (and encodes) element by element: ~0.3 ms for a subset's 256 glyph widths."""

    def format(self, document: object, IND: bytes = b"\n ") -> bytes:
        seq = self.sequence
        if rl_config.pdfMultiLine or not all(type(e) in (int, float) for e in seq):
            return super().format(document, IND)  # type: ignore[no-any-return]
        return b"[ " + b" \n  ".join(fp_str(*seq[i : i + 10]).encode() for i in range(0, len(seq), 10)) + b" ]"


class _SubsetFont(TTFont):  # type: ignore[misc]
    """reportlab's embedded TrueType font, with a fast path in `splitString` for text whose characters
    the document has already numbered, and its subsets' `/Widths` arrays written by `_Numbers`."""

    def splitString(self, text: str | bytes, doc: object, encoding: str = "utf-8") -> list[tuple[int, bytes]]:
        """reportlab's result, without its loop over the characters when all are in the first subset
        already (an invoice has fewer than 256 distinct characters: most strings after the first few)."""
        state = self.state.get(doc)
        if state is not None and text and isinstance(text, str) and "\xa0" not in text:
            get = state.assignments.get
            codes = [get(code, 256) for code in map(ord, text)]  # 256: new (or not in the font) => reportlab
            if max(codes) < 256:
                return [(0, bytes(codes))]
        return super().splitString(text, doc, encoding)  # type: ignore[no-any-return]

    def addObjects(self, doc: object) -> None:
        fonts = doc.idToObject["BasicFonts"].dict  # type: ignore[attr-defined]
        before = set(fonts)
        super().addObjects(doc)
        for name, pdf_font in fonts.items():
            widths = getattr(pdf_font, "Widths", None)
            if name not in before and type(widths) is PDFArray:
                pdf_font.Widths = _Numbers(widths.sequence)  # type: ignore[union-attr]


class _TableSlice:
    """A font table that hands out copies of its slices only: reportlab's subsetter copies the whole
    `glyf` table (10 MB in wqy-zenhei) for every subset it makes: some milliseconds on every document."""

    __slots__ = ("_view",)

    def __init__(self, view: memoryview) -> None:
        self._view = view

    def __getitem__(self, key: slice) -> bytes:
        return bytes(self._view[key])


def _slice_big_tables(face: object) -> None:
    """Make the subsetter read `glyf` and `post` through `_TableSlice` (it only ever slices them)."""
    data, get_table, table_pos = (getattr(face, a, None) for a in ("_ttf_data", "get_table", "get_table_pos"))
    if not isinstance(data, bytes) or get_table is None or table_pos is None:
        return  # another reportlab: keep its own (slower) way
    view = memoryview(data)

    def sliced_get_table(tag: str) -> object:
        if tag in ("glyf", "post"):
            pos, length = table_pos(tag)
            return _TableSlice(view[pos : pos + length])
        return get_table(tag)

    face.get_table = sliced_get_table  # type: ignore[attr-defined]


# TrueType composite glyph flags (reportlab.pdfbase.ttfonts' GF_*): which argument sizes follow an index.
_GF_WORDS, _GF_SCALE, _GF_MORE, _GF_XY_SCALE, _GF_2X2 = 1 << 0, 1 << 3, 1 << 5, 1 << 6, 1 << 7


class _GlyphCache:
    """The per-glyph work of reportlab's `TTFontFile.makeSubset`, done once per glyph and process.

    reportlab re-reads every glyph's header, data and metrics from the font for every subset it makes
    (~1 ms for an invoice's ~220 characters); the labels and figures recur on every invoice. This keeps,
    per original glyph: its `glyf` bytes, where its component indices are (composite glyphs only) and
    its metrics, and builds the same subset font, byte for byte (`tests/unit/test_pdf.py` compares)."""

    def __init__(self, face: object) -> None:
        self.face = face
        self.glyphs: dict[int, tuple[bytes, tuple[tuple[int, int], ...], int, int]] = {}
        f = face
        self.fixed = [(tag, f.get_table(tag)) for tag in ("name", "OS/2", "cvt ", "fpgm", "prep") if _has(f, tag)]  # type: ignore[attr-defined]
        self.post = b"\x00\x03\x00\x00" + f.get_table("post")[4:16] + b"\x00" * 16  # type: ignore[attr-defined]
        self.hhea, self.maxp, self.head = (f.get_table(t) for t in ("hhea", "maxp", "head"))  # type: ignore[attr-defined]
        self.glyf = f.get_table("glyf")  # type: ignore[attr-defined]  # once: a copy unless `_slice_big_tables`

    def glyph(self, index: int) -> tuple[bytes, tuple[tuple[int, int], ...], int, int]:
        """(data, ((offset, component index), ...), advance width, left side bearing) of a glyph."""
        got = self.glyphs.get(index)
        if got is None:
            face = self.face
            pos = face.glyphPos[index]  # type: ignore[attr-defined]
            data = bytes(self.glyf[pos : face.glyphPos[index + 1]])  # type: ignore[attr-defined]
            parts = []
            if len(data) > 2 and unpack_from(">h", data)[0] < 0:  # composite: walk its components
                at, flags = 10, _GF_MORE
                while flags & _GF_MORE:
                    flags, component = unpack_from(">HH", data, at)
                    parts.append((at + 2, component))
                    at += 4 + (4 if flags & _GF_WORDS else 2)
                    at += 2 if flags & _GF_SCALE else 4 if flags & _GF_XY_SCALE else 8 if flags & _GF_2X2 else 0
            aw, lsb = face.hmetrics[index]  # type: ignore[attr-defined]
            got = self.glyphs[index] = (data, tuple(parts), int(aw), int(lsb))
        return got

    def make_subset(self, subset: Sequence[int]) -> bytes:
        """`TTFontFile.makeSubset(subset)`, the same bytes."""
        char_to_glyph = self.face.charToGlyph  # type: ignore[attr-defined]
        glyph_map = [0]  # new glyph index -> old
        glyph_set = {0: 0}  # old -> new
        code_to_glyph = []
        for code in subset:
            old = char_to_glyph.get(code, 0)
            new = glyph_set.get(old)
            if new is None:
                new = glyph_set[old] = len(glyph_map)
                glyph_map.append(old)
            code_to_glyph.append(new)
        glyphs = [self.glyph(old) for old in glyph_map]
        if any(parts for _, parts, _, _ in glyphs):  # add the parts of composite glyphs, as reportlab does
            n = 0
            while n < len(glyph_map):
                for _, component in glyphs[n][1]:
                    if component not in glyph_set:
                        glyph_set[component] = len(glyph_map)
                        glyph_map.append(component)
                        glyphs.append(self.glyph(component))
                n += 1
        output = TTFontMaker()
        for tag, table in self.fixed:
            output.add(tag, table)
        output.add("post", self.post)
        hmtx: list[int] = []
        for _, _, aw, lsb in glyphs:
            hmtx += (aw, lsb)
        n = len(hmtx) - 2
        while n and hmtx[n] == hmtx[n - 2]:
            n -= 2
        n += 2
        hmtx = hmtx[:n] + hmtx[n + 1 :: 2]
        output.add("hmtx", pack(f">{len(hmtx)}H", *hmtx))
        output.add("hhea", self.hhea[:34] + pack(">H", n >> 1) + self.hhea[36:])
        output.add("maxp", self.maxp[:4] + pack(">H", len(glyph_map)) + self.maxp[6:])
        cmap = [0, 1, 1, 0, 0, 12, 6, 10 + len(subset) * 2, 0, 0, len(subset), *code_to_glyph]
        output.add("cmap", pack(f">{len(cmap)}H", *cmap))
        glyf, offsets, pos = [], [], 0
        for data, parts, _, _ in glyphs:
            offsets.append(pos)
            if parts:
                buf = bytearray(data)
                for at, component in parts:
                    buf[at : at + 2] = pack(">H", glyph_set[component])
                data = bytes(buf)
            glyf.append(data)
            pos += len(data)
            if pos % 4:
                glyf.append(b"\0" * (4 - pos % 4))
                pos += 4 - pos % 4
        offsets.append(pos)
        output.add("glyf", b"".join(glyf))
        long_loca = (pos + 1) >> 1 > 0xFFFF
        loca = offsets if long_loca else [o >> 1 for o in offsets]
        output.add("loca", pack(f">{len(loca)}{'L' if long_loca else 'H'}", *loca))
        output.add("head", self.head[:50] + pack(">H", int(long_loca)) + self.head[52:])
        return output.makeStream()  # type: ignore[no-any-return]


def _has(face: object, tag: str) -> bool:
    try:
        face.get_table_pos(tag)  # type: ignore[attr-defined]
    except KeyError:
        return False
    return True


def _fast_subsets(face: object) -> None:
    """Make this font instance's subsetter `_GlyphCache.make_subset` (other fonts keep reportlab's)."""
    if not all(hasattr(face, a) for a in ("glyphPos", "hmetrics", "charToGlyph", "makeSubset", "get_table")):
        return  # another reportlab: keep its own way
    face.makeSubset = _GlyphCache(face).make_subset  # type: ignore[attr-defined]


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
) -> tuple[object, float, str, tuple[tuple[str, str], ...] | None]:
    """What `draw_text` writes that does not depend on the document, computed once per process for a
    string (labels, units, figures recur on every invoice): the font, the shift left of `x` for the
    alignment, the size operand and, for a standard font, its (font name, escaped chunk) pairs.

    A TrueType font's chunks are not cached: reportlab numbers a subset's characters per document."""
    font = font or font_for(text)
    if max_width is not None:
        size = fit_size(text, font, size, max_width)
    dx = 0.0
    if align != "left":
        width = pdfmetrics.stringWidth(text, font, size)
        dx = width if align == "right" else width / 2
    face = pdfmetrics.getFont(font)
    if face._dynamicFont:  # a TrueType font, embedded in subsets of 256 glyphs
        return face, dx, fp_str(size), None
    chunks = tuple((f.fontName, escapePDF(chunk)) for f, chunk in unicode2T1(text, [face, *face.substitutionFonts]))
    return face, dx, fp_str(size), chunks


def _show(canvas: Canvas, face: object, text: str, size: str, chunks: tuple[tuple[str, str], ...] | None) -> str:
    """The text-showing operators for `text`, as reportlab's text objects write them.

    drawString costs ~20 µs a call (a text object each time); this is about a quarter of that, and an
    invoice page has some 150 strings. It uses the canvas's document, as reportlab's own text objects do."""
    doc = canvas._doc
    if chunks is None:  # TrueType: the subset codes of this document
        name = face.getSubsetInternalName  # type: ignore[attr-defined]
        return " ".join(
            f"{name(subset, doc)} {size} Tf ({escapePDF(chunk)}) Tj"
            for subset, chunk in face.splitString(text, doc)  # type: ignore[attr-defined]
        )
    return " ".join(f"{doc.getInternalFontName(font)} {size} Tf ({chunk}) Tj" for font, chunk in chunks)


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
