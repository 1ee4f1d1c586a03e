"""The CSV export's LF -> CRLF conversion (PostgreSQL's COPY writes LF record ends; FORMATS.md wants CRLF)."""

from __future__ import annotations

import csv
import io
import itertools

from hypothesis import given
from hypothesis import strategies as st

from delivery.export import CrlfWriter

FIELD = st.text(alphabet=st.sampled_from(["a", "张", ",", '"', "\n", "\r", " ", "1"]), max_size=8)


def _csv(rows: list[list[str]], terminator: str) -> bytes:
    """The rows as Python writes them (quoting any field with CR or LF, as PostgreSQL does), each record
    ended by `terminator`."""
    out = []
    for row in rows:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL).writerow(row)
        out.append(buffer.getvalue()[:-2] + terminator)
    return "".join(out).encode()


@given(st.lists(st.lists(FIELD, min_size=2, max_size=4), max_size=6), st.lists(st.integers(0, 200), max_size=5))
def test_only_record_ends_become_crlf_whatever_the_chunking(rows: list[list[str]], cuts: list[int]) -> None:
    lf = _csv(rows, "\n")
    bounds = sorted({min(c, len(lf)) for c in cuts} | {0, len(lf)})
    writer = CrlfWriter()
    out = b"".join(writer.convert(lf[a:b]) for a, b in itertools.pairwise(bounds))
    assert out == _csv(rows, "\r\n")


def test_a_line_break_inside_a_quoted_field_is_kept() -> None:
    writer = CrlfWriter()
    assert writer.convert(b'a,"x\n') + writer.convert(b'y"\nb,c\n') == b'a,"x\ny"\r\nb,c\r\n'
