"""Text on a reportlab canvas: fitted to a width, wrapped (Chinese line-breaking rules), and drawn.

Used by the invoice (`render`), the postal label and the manifest. Pure: no DB, no network.
"""

from __future__ import annotations

import re

from cachetools import LRUCache, cached
from reportlab.lib.rl_accel import escapePDF, fp_str, unicode2T1
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen.canvas import Canvas

from invoicing.pdf.fonts import font_for, text_width
from invoicing.pdf.fontsubset import SubsetFont

__all__ = ["draw_text", "fit_lines", "fit_size", "wrap_text"]

# A Latin word (kept whole when wrapping) or any single other character, with the spaces after it.
_TOKEN_RE = re.compile(r"[\u0021-\u007e\u00a0-\u02ff]+\s*|\S\s*|\s+")
# Characters that must not start a line (Chinese line-breaking rules, kinsoku).
_NO_LINE_START = frozenset("，。、；：？！）》」』】〉”’,.;:?!)%")


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

    It writes the operators reportlab's `drawString` would (but for the text matrix), without a text object
    per string, and takes what does not depend on the document from `_placed`: a page has many strings."""
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


@cached(LRUCache(maxsize=4096))  # strings; the labels and the common figures of every invoice fit many times over
def _placed(
    text: str, font: str | None, size: float, align: str, max_width: float | None
) -> tuple[object, float, str, tuple[tuple[str, str], ...] | None]:
    """What `draw_text` writes that does not depend on the document, kept per process for a string (labels,
    units, figures recur on every invoice): the font, the shift left of `x` for the
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
