"""What text the service stores (`invoicing.text`): the refusal of control, format and surrogate characters, held
against its definition character by character, for any text, with and without line breaks allowed."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from invoicing.text import REFUSED_CATEGORIES, refusal

# Text that mixes the characters printed on invoices with the ones refused and the printable-but-unusual.
MIXED = st.text(
    st.one_of(
        st.characters(),
        st.sampled_from(
            ["\n", "\t", "\x00", "\x85", "\u202e", "\u200b", "\ufeff", "\u3000", "\u00a0", " ", "发", "票"]
        ),
    )
)


def _refused_by_definition(value: str, multiline: bool) -> str | None:
    for ch in value:
        if not (ch == "\n" and multiline) and unicodedata.category(ch) in REFUSED_CATEGORIES:
            return ch
    return None


@given(MIXED, st.booleans())
def test_refusal_names_the_first_refused_character_and_only_then_refuses(value: str, multiline: bool) -> None:
    first = _refused_by_definition(value, multiline)
    why = refusal(value, multiline=multiline)
    if first is None:
        assert why is None
    else:
        assert why is not None and f"U+{ord(first):04X}" in why


def test_printable_chinese_text_with_wide_and_no_break_spaces_is_kept() -> None:
    assert refusal("广州市天河区\u3000体育西路\u00a0100 号") is None
    assert refusal("第一行\n第二行", multiline=True) is None
    assert refusal("第一行\n第二行") is not None
    assert "U+202E" in (refusal("abc\u202edef") or "")
