"""Our PDFs, drawn on reportlab canvases: the invoice (`render_invoice_pdf`), and the pieces the postal
label and the manifest share with it (fonts, text, barcodes, address blocks).

Some pieces redo reportlab internals faster (`fontsubset`, `subsetter`, the forms and zlib level of
`render`, `draw_text`): each earns its keep by a measured gain (docs/decisions.md, "PDF rendering speed").
reportlab is pinned below its next minor version for them, and tests/unit/test_pdf.py compares their
output with reportlab's own, byte for byte: those tests are the gate for an upgrade.
"""

from invoicing.pdf.barcodes import draw_code128, draw_qr, qr_matrix
from invoicing.pdf.fonts import (
    CJK_FONT_ENV,
    LATIN_FONT,
    SHARED_TEXT,
    CJKFontMissing,
    cjk_font,
    find_cjk_font,
    font_for,
    text_width,
)
from invoicing.pdf.parts import address_lines, draw_address_block, draw_stamp
from invoicing.pdf.render import render_invoice_pdf
from invoicing.pdf.text import draw_text, fit_lines, fit_size, wrap_text

__all__ = [
    "CJK_FONT_ENV",
    "LATIN_FONT",
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
    "render_invoice_pdf",
    "text_width",
    "wrap_text",
]
