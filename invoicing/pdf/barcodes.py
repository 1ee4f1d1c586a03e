"""Barcodes as vector paths on a reportlab canvas: Code 128 (python-barcode's encoding) and QR codes
(zxing-cpp's encoder, else segno's). Pure: no DB, no network."""

from __future__ import annotations

import re

import segno
from barcode.codex import Code128
from cachetools import LRUCache, cached
from reportlab.pdfgen.canvas import Canvas

try:
    import zxingcpp
except ImportError:  # optional: segno makes the same symbol, much slower
    zxingcpp = None  # type: ignore[assignment]

if zxingcpp is not None:
    from invoicing.pdf import qrmask

__all__ = ["draw_code128", "draw_qr", "qr_matrix"]

_DARK_RUN = re.compile(rb"\x01+")
_DIGIT_BIT = bytes.maketrans(b"01", b"\x00\x01")  # python-barcode's "1010..." pattern
_BIT_DIGIT = bytes.maketrans(b"\x00\x01", b"01")


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

    zxing-cpp's encoder (C++; its mask chosen by `qrmask`, the same choice faster) when installed, else
    segno's (pure Python, much slower). Both follow ISO/IEC 18004, including the mask choice by penalty
    score."""
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
    # Each row is read 8 modules (a byte) at a time, and each byte's `re` operators come from a table kept
    # per process (`_chunk_ops`): no Python work per dark run. A run across two bytes is two abutting
    # rectangles of the one path, filled as one shape.
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


@cached(LRUCache(maxsize=23))  # a table per 8 modules of a row: 23 cover the largest symbol (177 modules)
def _chunk_ops(k: int) -> tuple[str, ...]:
    """For each value of the k-th 8 modules of a row (most significant bit first, 1 dark): its dark runs as
    `x Y width 1 re` operators, Y standing for the row's y."""
    return tuple(
        " ".join(
            f"{8 * k + start} Y {width} 1 re" for start, width in _runs(f"{value:08b}".encode().translate(_DIGIT_BIT))
        )
        for value in range(256)
    )
