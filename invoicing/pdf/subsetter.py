"""TrueType subsets as reportlab's `TTFontFile.makeSubset` makes them, byte for byte, at less cost.

reportlab re-reads every glyph's header, data and metrics from the font for every subset it makes, and
copies the whole `glyf` table (10 MB in wqy-zenhei) to do so, on every document. Here each glyph's data is
kept per process (`_GlyphCache`) and the subset is assembled with list operations.
`tests/unit/test_pdf.py` compares the bytes with reportlab's for random sets of characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate, chain
from struct import pack, unpack_from

from cachetools import LRUCache
from reportlab.pdfbase.ttfonts import TTFontMaker

__all__ = ["speed_up_subsets"]


def speed_up_subsets(face: object) -> None:
    """Make this font face's `makeSubset` `_GlyphCache.make_subset` (other fonts keep reportlab's); a
    reportlab without the attributes relied on keeps its own."""
    needed = ("_ttf_data", "get_table_pos", "glyphPos", "hmetrics", "charToGlyph", "makeSubset", "get_table")
    if all(hasattr(face, a) for a in needed):
        face.makeSubset = _GlyphCache(face).make_subset  # type: ignore[attr-defined]


# TrueType composite glyph flags (reportlab.pdfbase.ttfonts' GF_*): which argument sizes follow an index.
_GF_WORDS, _GF_SCALE, _GF_MORE, _GF_XY_SCALE, _GF_2X2 = 1 << 0, 1 << 3, 1 << 5, 1 << 6, 1 << 7


_Glyph = tuple[bytes, tuple[tuple[int, int], ...], tuple[int, int]]
GLYPHS_KEPT = 8192  # the glyphs of the few thousand common Chinese characters, Latin and figures


class _GlyphCache(LRUCache[int, _Glyph]):
    """The per-glyph work of reportlab's `TTFontFile.makeSubset`, kept per process for `GLYPHS_KEPT` glyphs.

    reportlab re-reads every glyph's header, data and metrics from the font for every subset it makes;
    the labels and figures recur on every invoice. This keeps, per original glyph: its `glyf` bytes (padded to 4), where its component indices are (composite glyphs
    only) and its metrics, and builds the same subset font, byte for byte (`tests/unit/test_pdf.py`
    compares), with list operations rather than a Python loop per glyph where it can."""

    def __init__(self, face: object) -> None:
        super().__init__(maxsize=GLYPHS_KEPT)
        self.face = face
        f = face
        self.fixed = [(tag, f.get_table(tag)) for tag in ("name", "OS/2", "cvt ", "fpgm", "prep") if _has(f, tag)]  # type: ignore[attr-defined]
        self.post = b"\x00\x03\x00\x00" + f.get_table("post")[4:16] + b"\x00" * 16  # type: ignore[attr-defined]
        self.hhea, self.maxp, self.head = (f.get_table(t) for t in ("hhea", "maxp", "head"))  # type: ignore[attr-defined]
        pos, length = f.get_table_pos("glyf")  # type: ignore[attr-defined]
        self.glyf = memoryview(f._ttf_data)[pos : pos + length]  # type: ignore[attr-defined]  # read, not copied

    def __missing__(self, index: int) -> _Glyph:
        """(data padded to 4 bytes, ((offset, component index), ...), (advance width, left side bearing))."""
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
        got = self[index] = (data + b"\0" * (-len(data) % 4), tuple(parts), (int(aw), int(lsb)))
        return got

    def make_subset(self, subset: Sequence[int]) -> bytes:
        """`TTFontFile.makeSubset(subset)`, the same bytes."""
        char_to_glyph = self.face.charToGlyph  # type: ignore[attr-defined]
        olds = [char_to_glyph.get(code, 0) for code in subset]
        glyph_map = list(dict.fromkeys([0, *olds]))  # new glyph index -> old, in the order of first use
        glyphs = list(map(self.__getitem__, glyph_map))
        glyph_set = {old: new for new, old in enumerate(glyph_map)}
        code_to_glyph = list(map(glyph_set.__getitem__, olds))
        if any(parts for _, parts, _ in glyphs):  # add the parts of composite glyphs, as reportlab does
            n = 0
            while n < len(glyph_map):
                for _, component in glyphs[n][1]:
                    if component not in glyph_set:
                        glyph_set[component] = len(glyph_map)
                        glyph_map.append(component)
                        glyphs.append(self[component])
                n += 1
        output = TTFontMaker()
        for tag, table in self.fixed:
            output.add(tag, table)
        output.add("post", self.post)
        hmtx = list(chain.from_iterable(metrics for _, _, metrics in glyphs))
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
        glyf = [data if not parts else _renumbered(data, parts, glyph_set) for data, parts, _ in glyphs]
        offsets = list(accumulate(map(len, glyf), initial=0))
        output.add("glyf", b"".join(glyf))
        long_loca = (offsets[-1] + 1) >> 1 > 0xFFFF
        loca = offsets if long_loca else [o >> 1 for o in offsets]
        output.add("loca", pack(f">{len(loca)}{'L' if long_loca else 'H'}", *loca))
        output.add("head", self.head[:50] + pack(">H", int(long_loca)) + self.head[52:])
        return output.makeStream()  # type: ignore[no-any-return]


def _renumbered(data: bytes, parts: tuple[tuple[int, int], ...], glyph_set: dict[int, int]) -> bytes:
    """A composite glyph with its components' indices in the subset."""
    buf = bytearray(data)
    for at, component in parts:
        buf[at : at + 2] = pack(">H", glyph_set[component])
    return bytes(buf)


def _has(face: object, tag: str) -> bool:
    try:
        face.get_table_pos(tag)  # type: ignore[attr-defined]
    except KeyError:
        return False
    return True
