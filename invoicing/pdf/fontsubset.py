"""The CJK TrueType font as reportlab embeds it, at a lower cost per document (`fonts.cjk_font`).

reportlab embeds a TrueType font as subsets of up to 256 glyphs, numbering the characters per document in
the order they are first drawn, and builds each subset's font program, widths and ToUnicode CMap when the
document is saved. `SubsetFont` does the same, except:

- Subset 0 of every document is the shared subset: the characters an invoice prints whatever its content
  (the labels, figures, the numerals of amounts in words: `fonts.SHARED_TEXT`). It is numbered
  once per process, and its font program, widths and CMap are built and zlib-compressed once per process
  and written into each document as they are. A document's own characters (names, addresses, item
  descriptions) go into subsets 1, 2, ... as reportlab numbers them, so a document subsets and compresses
  the glyphs of its own text only; a string that has both kinds switches subsets (fonts) between its runs,
  as reportlab's strings do when they span two subsets.
- The subsetter keeps glyphs' data per process (`subsetter`), and the font objects are written as bytes
  (`_Written`, `_Stream`): reportlab formats a dictionary entry by entry.

What a viewer gets is what reportlab would write: embedded TrueType subsets with widths and ToUnicode.
"""

from __future__ import annotations

import zlib

from reportlab.pdfbase.pdfdoc import (
    PDFArray,
    PDFDictionary,
    PDFName,
    PDFObject,
    PDFObjectReference,
    PDFStream,
    PDFZCompress,
)
from reportlab.pdfbase.ttfonts import FF_NONSYMBOLIC, FF_SYMBOLIC, SUBSETN, TTFont, TTFontFace, makeToUnicodeCMap

from invoicing.pdf.subsetter import speed_up_subsets

__all__ = ["SubsetFont"]

SHARED_ZLIB_LEVEL = 9  # the shared subset is compressed once per process: as small as zlib makes it


class SubsetFont(TTFont):  # type: ignore[misc]  # reportlab has no type hints
    """reportlab's embedded TrueType font, whose subset 0 in every document holds the characters of `shared`."""

    def __init__(self, name: str, filename: str, shared: str, subfont_index: int = 0) -> None:
        # asciiReadable=False: reportlab would reserve subset 0 for ASCII; ours is the shared subset.
        super().__init__(name, filename, subfontIndex=subfont_index, asciiReadable=False)
        speed_up_subsets(self.face)
        self.shared = _SharedSubset(self.face, shared)
        self._descriptor = _descriptor_start(self.face)

    def doc_state(self, doc: object) -> TTFont.State:
        """The document's numbering: reportlab's state, with subset 0 the shared subset and the document's
        other characters numbered from code 256 (subset 1) on, in the order they are first drawn."""
        state = self.state.get(doc)
        if state is None:
            shared = self.shared
            state = self.state[doc] = TTFont.State(False, self)
            state.assignments = dict(shared.assignments)
            state.subsets = [shared.codes]  # a tuple: reportlab starts subset 1 at code 256, never adds to it
            state.nextCode = 256
        return state

    def splitString(self, text: str | bytes, doc: object, encoding: str = "utf-8") -> list[tuple[int, bytes]]:
        """reportlab's (subset, codes) runs of `text`, numbering new characters after the shared subset."""
        self.doc_state(doc)  # ours, before reportlab's would make a state of its own
        return super().splitString(text, doc, encoding)  # type: ignore[no-any-return]

    def getSubsetInternalName(self, subset: int, doc: object) -> str:
        """reportlab's resource name of a subset in `doc` ("/F2+0"), numbering the document our way first."""
        self.doc_state(doc)  # ours, before reportlab's would make a state of its own
        return super().getSubsetInternalName(subset, doc)  # type: ignore[no-any-return]

    def addObjects(self, doc: object) -> None:
        """reportlab's `TTFont.addObjects`: per subset a font dictionary, its widths, ToUnicode CMap, font
        descriptor and font program; the shared subset's made once per process, the others' now. They are
        written by `_Written`: reportlab formats a dictionary entry by entry through Python codecs."""
        state = self.doc_state(doc)
        state.frozen = 1
        fonts = doc.idToObject["BasicFonts"].dict  # type: ignore[attr-defined]
        face, reference = self.face, doc.Reference  # type: ignore[attr-defined]
        for n, subset in enumerate(state.subsets):
            name = self.getSubsetInternalName(n, doc)[1:]
            if n == 0:
                base, shared = self.shared.base, self.shared
                widths, cmap, program = shared.widths, shared.cmap, shared.program
                cmap_stream = _stream(doc, cmap, shared.cmap_packed)
                program_stream = _stream(doc, program, shared.program_packed, length1=True)
            else:
                base = _subset_name(face, n)
                widths = PDFArray([face.getCharWidth(code) for code in subset]).format(doc)
                cmap_stream = _stream(doc, makeToUnicodeCMap(base, subset).encode())
                program_stream = _stream(doc, face.makeSubset(subset), length1=True)
            font_name = PDFName(base).encode()
            to_unicode = reference(cmap_stream, f"toUnicodeCMap:{base}")
            program_ref = reference(program_stream, f"fontFile:{face.filename}({base})")
            descriptor = _Written(self._descriptor, b" /FontFile2 ", program_ref, b" /FontName ", font_name, b"\n>>")
            pdf_font = _Written(
                b"<<\n/BaseFont " + font_name + b" /FirstChar 0 /FontDescriptor ",
                reference(descriptor, f"fontDescriptor:{base}"),
                b" /LastChar %d /Name /%s /Subtype /TrueType\n /ToUnicode " % (len(subset) - 1, name.encode()),
                to_unicode,
                b" /Type /Font /Widths " + widths + b"\n>>",
            )
            reference(pdf_font, name)
            fonts[name] = pdf_font
        del self.state[doc]


class _Written(PDFObject):  # type: ignore[misc]  # reportlab has no type hints
    """A PDF object as bytes we write, with references to other objects, which reportlab numbers."""

    __RefOnly__ = 1  # an indirect object: a dictionary that refers to it gets a reference

    def __init__(self, *parts: bytes | PDFObjectReference) -> None:
        self.parts = parts

    def format(self, document: object) -> bytes:
        """The object's bytes, its references numbered by `document`."""
        return b"".join(part if isinstance(part, bytes) else part.format(document) for part in self.parts)


class _Stream(PDFObject):  # type: ignore[misc]
    """A stream whose content is filtered already: `entries` are its dictionary's, but /Length."""

    __RefOnly__ = 1

    def __init__(self, entries: bytes, content: bytes) -> None:
        self.entries, self.content = entries, content

    def format(self, document: object) -> bytes:
        """The stream's dictionary and content, as reportlab's `PDFStream` writes them."""
        content = document.encrypt.encode(self.content)  # type: ignore[attr-defined]
        return b"<<\n%s/Length %d\n>>\nstream\n%s" % (self.entries, len(content), content) + b"endstream\n"


def _stream(doc: object, raw: bytes, packed: bytes | None = None, *, length1: bool = False) -> PDFObject:
    """A font stream of `raw`, filtered as reportlab filters font streams in `doc`: compressed by the
    document's filter, or `packed` (`raw` compressed by zlib already) when that filter is FlateDecode;
    /Length1 (the program's length) for a font program. Other filters: reportlab's stream does it all."""
    filters = [PDFZCompress] if doc.compression else doc.defaultStreamFilters  # type: ignore[attr-defined]
    entries = b"/Length1 %d " % len(raw) if length1 else b""
    if not filters:
        return _Stream(entries, raw)
    if len(filters) == 1 and filters[0].pdfname == "FlateDecode":
        content = packed if packed is not None else filters[0].encode(raw)
        return _Stream(b"/Filter [ /FlateDecode ] " + entries, content)
    return PDFStream(PDFDictionary({"Length1": len(raw)} if length1 else {}), raw, filters)


def _descriptor_start(f: TTFontFace) -> bytes:
    """The start of every subset's FontDescriptor (as reportlab's `TTFontFace.addSubsetObjects` has it)."""
    entries = {
        "Ascent": f.ascent,
        "CapHeight": f.capHeight,
        "Descent": f.descent,
        "Flags": f.flags & ~FF_NONSYMBOLIC | FF_SYMBOLIC,
        "FontBBox": PDFArray(f.bbox),
        "ItalicAngle": f.italicAngle,
        "MissingWidth": f.defaultWidth,
        "StemV": f.stemV,
        "Type": "/FontDescriptor",
    }
    return PDFDictionary(entries).format(None)[: -len(b"\n>>")]  # type: ignore[no-any-return]


def _subset_name(face: object, n: int) -> str:
    """reportlab's name of subset `n`: AAAAAA+font name, AAAAAB+..."""
    return b"".join((SUBSETN(n), b"+", face.name, face.subfontNameX)).decode("pdfdoc")  # type: ignore[attr-defined]


class _SharedSubset:
    """Subset 0: the characters of `text` that the font has, numbered once per process: ASCII as itself
    (code 32 must be the space in every subset, and the content streams stay readable), the others in the
    codes 1-31 and 127-255; its font program, widths array and ToUnicode CMap, raw and zlib'd; and the
    tables to encode text in it without a document (`encode`)."""

    def __init__(self, face: object, text: str) -> None:
        chars = [c for c in dict.fromkeys(map(ord, text)) if c in face.charToGlyph]  # type: ignore[attr-defined]
        others = [c for c in chars if not 32 <= c < 127]
        free = [c for c in range(1, 256) if not 32 <= c < 127]
        if len(others) > len(free):
            raise ValueError(f"{len(others)} shared characters besides ASCII: at most {len(free)} fit a subset")
        codes = [0] * 256  # code -> character; 0 is .notdef (and what an unused code shows)
        codes[32] = 32
        for char in chars:
            if 32 < char < 127:
                codes[char] = char
        for code, char in zip(free, others, strict=False):
            codes[code] = char
        self.codes = tuple(codes[: max(code for code, char in enumerate(codes) if char) + 1])
        self.assignments = {char: code for code, char in enumerate(self.codes) if char} | {0: 0}
        self.table = {char: chr(code) for char, code in self.assignments.items()}
        self.known = dict.fromkeys(self.assignments)
        self.base = _subset_name(face, 0)
        self.program = face.makeSubset(self.codes)  # type: ignore[attr-defined]
        self.cmap = makeToUnicodeCMap(self.base, self.codes).encode()
        self.widths = PDFArray([face.getCharWidth(code) for code in self.codes]).format(None)  # type: ignore[attr-defined]
        self.program_packed = zlib.compress(self.program, SHARED_ZLIB_LEVEL)
        self.cmap_packed = zlib.compress(self.cmap, SHARED_ZLIB_LEVEL)

    def encode(self, text: str) -> bytes | None:
        """`text` in subset 0's codes, as `splitString` gives it in any document; None unless all of its
        characters are shared."""
        if not text or text.translate(self.known):
            return None
        return text.translate(self.table).encode("latin-1")
