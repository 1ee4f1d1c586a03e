"""Amounts in Chinese financial numerals: vectors, and hypothesis against an independent reader."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from invoicing.words import amount_in_words

VECTORS = [
    ("226.00", "贰佰贰拾陆元整"),  # FORMATS.md
    ("1.50", "壹元伍角"),
    ("0", "零元整"),
    ("0.00", "零元整"),
    ("10", "壹拾元整"),
    ("15.00", "壹拾伍元整"),
    ("100010", "壹拾万零壹拾元整"),
    ("100000000", "壹亿元整"),
    ("100001000.00", "壹亿零壹仟元整"),
    ("1680.32", "壹仟陆佰捌拾元叁角贰分"),
    ("107000.53", "壹拾万柒仟元伍角叁分"),
    ("325.04", "叁佰贰拾伍元零肆分"),
    ("0.05", "伍分"),
    ("0.50", "伍角"),
    ("1004.00", "壹仟零肆元整"),
    ("1010.00", "壹仟零壹拾元整"),
    ("1000000000000", "壹万亿元整"),
    # the PBOC document's own examples, with our 零-omission choice
    ("1409.50", "壹仟肆佰零玖元伍角"),
    ("6007.14", "陆仟零柒元壹角肆分"),
    ("16409.02", "壹万陆仟肆佰零玖元零贰分"),
    # more zeros around the group boundaries
    ("1100.00", "壹仟壹佰元整"),
    ("11000100", "壹仟壹佰万零壹佰元整"),
    ("1000000001", "壹拾亿零壹元整"),
    ("1010000000", "壹拾亿壹仟万元整"),
    ("1000100000000", "壹万零壹亿元整"),
    ("1000010000000", "壹万亿零壹仟万元整"),
    ("1234567890123456", "壹仟贰佰叁拾肆万伍仟陆佰柒拾捌亿玖仟零壹拾贰万叁仟肆佰伍拾陆元整"),
    ("9999999999999999.99", "玖仟玖佰玖拾玖万玖仟玖佰玖拾玖亿玖仟玖佰玖拾玖万玖仟玖佰玖拾玖元玖角玖分"),
    # negatives (credit notes) and rounding half-up to the cent first
    ("-226.00", "负贰佰贰拾陆元整"),
    ("-0.05", "负伍分"),
    ("-0.001", "零元整"),
    ("0.005", "壹分"),
    ("-0.005", "负壹分"),
    ("2.675", "贰元陆角捌分"),
    ("9.995", "壹拾元整"),
]


@pytest.mark.parametrize(("amount", "words"), VECTORS)
def test_vectors(amount: str, words: str) -> None:
    assert amount_in_words(Decimal(amount)) == words


@pytest.mark.parametrize("amount", ["1E+16", "-1E+16", "9999999999999999.995", "1E+30", "NaN", "Infinity", "-Infinity"])
def test_out_of_range_raises(amount: str) -> None:
    with pytest.raises(ValueError):
        amount_in_words(Decimal(amount))


def test_float_is_refused() -> None:
    with pytest.raises(ValueError):
        amount_in_words(226.0)  # type: ignore[arg-type]


# --- an independent reader: Chinese financial numerals back to a Decimal --------------------------

NUMERALS = {c: i for i, c in enumerate("零壹贰叁肆伍陆柒捌玖")}
PLACE_VALUES = {"拾": 10, "佰": 100, "仟": 1000}
ALLOWED = set("负零壹贰叁肆伍陆柒捌玖拾佰仟万亿元角分整")
FRACTION_RE = re.compile(r"^(零)?(?:([壹贰叁肆伍陆柒捌玖])角)?(?:([壹贰叁肆伍陆柒捌玖])分)?$")


def read_integer(text: str) -> int:
    """`壹万亿零壹仟万` -> 1000010000000. Strict about order: places fall within a group, 万 before 亿."""
    total, below_yi, group, digit = 0, 0, 0, None
    last_place = 10_000
    for char in text:
        if char == "零":
            assert digit is None, f"零 after a bare digit in {text!r}"
        elif char in NUMERALS:
            assert digit is None, f"two digits in a row in {text!r}"
            digit = NUMERALS[char]
        elif char in PLACE_VALUES:
            assert digit is not None, f"{char} without its digit in {text!r}"
            assert PLACE_VALUES[char] < last_place, f"places out of order in {text!r}"
            group, digit, last_place = group + digit * PLACE_VALUES[char], None, PLACE_VALUES[char]
        elif char == "万":
            assert group or digit, f"empty 万 group in {text!r}"
            below_yi, group, digit, last_place = below_yi + (group + (digit or 0)) * 10_000, 0, None, 10_000
        elif char == "亿":
            assert total == 0, f"two 亿 in {text!r}"
            total = (below_yi + group + (digit or 0)) * 10**8
            below_yi, group, digit, last_place = 0, 0, None, 10_000
        else:
            raise AssertionError(f"unexpected {char!r} in {text!r}")
    return total + below_yi + group + (digit or 0)


def read_words(text: str) -> Decimal:
    """Parse what `amount_in_words` writes back into an amount with 2 decimals."""
    negative = text.startswith("负")
    body = text.removeprefix("负")
    if body.endswith("整"):
        body = body[:-1]
        assert body.endswith("元"), f"整 not after 元 in {text!r}"
    integer_text, _, fraction_text = body.rpartition("元")
    match = FRACTION_RE.match(fraction_text)
    assert match, f"bad 角/分 part in {text!r}"
    yuan = read_integer(integer_text) if integer_text != "零" else 0
    jiao = NUMERALS[match[2]] if match[2] else 0
    fen = NUMERALS[match[3]] if match[3] else 0
    cents = yuan * 100 + jiao * 10 + fen
    return Decimal(-cents if negative else cents).scaleb(-2)


def expected_zeros(cents: int) -> int:
    """How many 零 the rules (with our omission choice) put in the words for `cents` (>= 0)."""
    if cents == 0:
        return 1
    yuan, jiao, fen = cents // 100, cents // 10 % 10, cents % 10
    count = int(yuan > 0 and jiao == 0 and fen > 0)
    text = str(yuan) if yuan else ""
    for run in re.finditer("0+", text.rstrip("0")):  # runs of zeros between two non-zero digits
        lowest, highest = len(text) - run.end(), len(text) - 1 - run.start()  # powers of ten
        # only the tail of a non-zero 万/亿 group before a non-zero digit goes without 零
        omitted = lowest in (4, 8, 12) and highest < lowest + 3
        count += not omitted
    return count


@st.composite
def amounts_with_zeros(draw: st.DrawFn) -> Decimal:
    """Up to 16 integer digits and 2 decimals, zeros much more likely than other digits."""
    digits = draw(st.lists(st.sampled_from("000000000123456789"), min_size=1, max_size=18))
    text = "".join(digits).rjust(3, "0")
    sign = draw(st.sampled_from(["", "-"]))
    return Decimal(f"{sign}{text[:-2]}.{text[-2:]}")


LIMIT = Decimal("9999999999999999.99")
any_amount = st.one_of(
    amounts_with_zeros(),
    st.decimals(min_value=-LIMIT, max_value=LIMIT, places=2),
    st.integers(min_value=-(10**16) + 1, max_value=10**16 - 1).map(Decimal),
)


@settings(max_examples=300)
@given(amount=any_amount)
@example(Decimal("100001000.00"))
@example(Decimal("1000010000000.00"))
@example(Decimal("-0.04"))
def test_reads_back_to_the_same_amount(amount: Decimal) -> None:
    words = amount_in_words(amount)
    assert read_words(words) == amount
    assert set(words) <= ALLOWED


@settings(max_examples=300)
@given(amount=st.decimals(min_value=-(10**15), max_value=10**15, places=5))
def test_rounds_half_up_to_the_cent_first(amount: Decimal) -> None:
    assert read_words(amount_in_words(amount)) == amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@settings(max_examples=300)
@given(amount=any_amount)
@example(Decimal("107000.53"))
@example(Decimal("1680.32"))
@example(Decimal("11000100"))
def test_shape_of_the_words(amount: Decimal) -> None:
    words = amount_in_words(amount)
    cents = abs(int(amount * 100))
    assert words.startswith("负") == (amount < 0)
    assert "负" not in words[1:]
    assert "零零" not in words
    assert (words == "零元整") == (cents == 0)
    if cents:
        assert not words.removeprefix("负").startswith("零")
        assert "零元" not in words
    assert not words.endswith("零")
    assert not re.search("零[拾佰仟万亿角分元整]", words.replace("零元整", ""))
    assert not re.search("(^|[^壹贰叁肆伍陆柒捌玖])[拾佰仟]", words)  # 拾佰仟 always carry a digit: 壹拾
    assert words.endswith("整") == (cents % 100 == 0)
    assert "整" not in words[:-1]
    assert ("元" in words) == (cents >= 100 or cents == 0)
    assert words.count("零") == expected_zeros(cents)
