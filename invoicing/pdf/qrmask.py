"""A QR code from zxing-cpp with its data mask chosen here: zint's choice, in a fraction of the time.

zxing-cpp encodes through zint, and most of that time goes to choosing the data mask: zint builds each of
the 8 masked symbols and scores it module by module by the penalty rules of ISO/IEC 18004 (runs, 2×2
blocks, finder-like patterns, share of dark modules). Here zint encodes with mask 0, and the 7 other
symbols are that one XOR a difference that depends only on the symbol's size (the mask pattern over the
data modules and the format information): taken from zint once per process and size. Each is scored on
the whole symbol at once as one integer (a bitboard), by the rules as zint's `qr_evaluate` applies them,
so the mask is the one zint picks (a test compares across sizes and inputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import zxingcpp
from cachetools import LRUCache, cached

__all__ = ["qr_rows"]

_MARGIN = 8  # light columns left of the symbol (a whole byte: rows stay byte-aligned) and at least 4 right
_MARGIN_ROWS = 4  # the finder-like rule counts 4 modules beyond the symbol's edge as light
_DARK_DIGIT = bytes.maketrans(b"\x00\xff", b"10")  # zxing-cpp's image: 0 is dark


def qr_rows(data: str) -> tuple[int, list[bytes]]:
    """The QR code of `data` at error-correction level M, as zxing-cpp makes it: (size in modules, rows
    top first, 8 modules a byte, most significant bit first, 1 dark, the last byte padded light)."""
    size, symbol = _symbol(data, mask=0)
    board = _board(size)
    diffs = board.mask_diffs or board.learn(data, symbol)
    scores = [board.penalty(symbol ^ diff) for diff in diffs]
    best = (symbol ^ diffs[scores.index(min(scores))]).to_bytes(board.bits // 8, "big")
    row_bytes, skip, width = board.stride // 8, _MARGIN // 8, (size + 7) // 8
    first = _MARGIN_ROWS * row_bytes + skip
    return size, [best[at : at + width] for at in range(first, first + size * row_bytes, row_bytes)]


def _symbol(data: str, mask: int) -> tuple[int, int]:
    """zxing-cpp's QR code of `data` with data mask `mask`, as a board: (size, int)."""
    code = zxingcpp.create_barcode(data, zxingcpp.BarcodeFormat.QRCode, ec_level="M", data_mask=mask)
    image = zxingcpp.write_barcode_to_image(code, scale=1, add_quiet_zones=False)
    size = image.shape[0]
    return size, _board(size).read(bytes(memoryview(image)))  # type: ignore[arg-type]


@cached(LRUCache(maxsize=40))  # one per size of symbol: QR codes have 40 (versions 1-40)
def _board(size: int) -> _Board:
    return _Board(size)


@dataclass
class _Board:
    """A size of symbol as one integer, one bit a module, rows of `stride` bits top first with light margins;
    a module's right neighbour is the next lower bit, the one below it `stride` bits lower."""

    size: int
    stride: int = 0
    bits: int = 0
    inside: int = 0  # the symbol's modules
    everything: int = 0
    mask_diffs: list[int] = field(default_factory=list)  # mask 0's symbol XOR mask k's, k = 0..7

    def __post_init__(self) -> None:
        self.stride = -(-(self.size + _MARGIN + 4) // 8) * 8
        self.bits = self.stride * (self.size + 2 * _MARGIN_ROWS)
        self.everything = (1 << self.bits) - 1
        self.inside = self.read(b"\0" * self.size * self.size)

    def read(self, pixels: bytes) -> int:
        """zxing-cpp's image (one byte a module, 0 dark) as a board."""
        n, digits = self.size, pixels.translate(_DARK_DIGIT)
        left, right = b"0" * _MARGIN, b"0" * (self.stride - _MARGIN - n)
        margin = b"0" * (self.stride * _MARGIN_ROWS)
        rows = b"".join([left + digits[at : at + n] + right for at in range(0, n * n, n)])
        return int(margin + rows + margin, 2)

    def learn(self, data: str, symbol: int) -> list[int]:
        """The 8 masks' differences from mask 0, from `data`'s symbols (any data of this size will do)."""
        self.mask_diffs = [0, *(symbol ^ _symbol(data, mask)[1] for mask in range(1, 8))]
        return self.mask_diffs

    def penalty(self, dark: int) -> int:
        """ISO/IEC 18004's penalty score of a masked symbol, as zint's `qr_evaluate` scores it."""
        light = ~dark & self.inside
        light_or_out = ~dark & self.everything  # beyond the edge counts as light for finder-like patterns
        score = 0
        for s in (1, self.stride):  # along rows (s: the next module), then along columns (s: the one below)
            d1, d2, d4, l1 = dark << s, dark << 2 * s, dark << 4 * s, light << s
            for same, same1, same2 in ((dark, d1, d2), (light, l1, light << 2 * s)):
                # N1: 3 for a run of 5 alike, 1 more for each module beyond: count 5-windows and run starts
                fives = same & same1 & same2 & same1 << 2 * s & same << 4 * s
                score += fives.bit_count() + 2 * (fives & ~(same >> s)).bit_count()
            # N3: 40 for dark:light:dark×3:light:dark with 4 light (or beyond the edge) before or after it
            finder = dark & l1 & d2 & d1 << 2 * s & d4 & light << 5 * s & d2 << 4 * s
            fours = light_or_out & light_or_out << s
            fours &= fours << 2 * s  # light from here on for 4 modules
            score += 40 * (finder & (fours >> 4 * s | fours << 7 * s)).bit_count()
        for same in (dark, light):  # N2: 3 for each 2×2 block alike (overlapping ones too)
            pairs = same & same << 1
            score += 3 * (pairs & pairs << self.stride).bit_count()
        share = 100.0 * dark.bit_count() / (self.size * self.size)  # N4: 10 for each 5% away from half dark
        return score + 10 * int(abs(share - 50.0) / 5.0)
