"""UPU S10 tracking numbers (FORMATS.md): check digit, formatting, parsing, what the check digit catches."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from delivery.s10 import (
    make_tracking_number,
    parse_tracking_number,
    s10_check_digit,
    validate_service_indicator,
)

serials = st.integers(min_value=0, max_value=99_999_999).map(lambda n: f"{n:08d}")
services = st.tuples(st.sampled_from("ABCDEFGHILMNOPQRUVXYZ"), st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ")).map(
    "".join
)


def remainder(serial: str) -> int:
    """Weighted sum mod 11, read straight from FORMATS.md."""
    return sum(int(d) * w for d, w in zip(serial, [8, 6, 4, 2, 3, 5, 9, 7], strict=True)) % 11


def reference_check(serial: str) -> int:
    """An independent reading of the rule, by cases on the remainder: c = 11 - r, then 10 -> 0, 11 -> 5."""
    r = remainder(serial)
    if r == 0:
        return 5  # c = 11
    if r == 1:
        return 0  # c = 10
    return 11 - r


@pytest.mark.parametrize(("serial", "check"), [("47312482", 9), ("12345678", 5), ("00000001", 4), ("00000000", 5)])
def test_formats_md_vectors(serial: str, check: int) -> None:
    assert s10_check_digit(serial) == check
    assert make_tracking_number("RR", int(serial), "CN") == f"RR{serial}{check}CN"


def test_worked_example() -> None:
    assert make_tracking_number("RR", 47312482, "CN") == "RR473124829CN"
    number = parse_tracking_number("RR473124829CN")
    assert number is not None
    assert (number.service, number.serial, number.check, number.country) == ("RR", "47312482", 9, "CN")
    assert str(number) == "RR473124829CN"


@given(serials)
def test_check_digit_matches_reference(serial: str) -> None:
    assert s10_check_digit(serial) == reference_check(serial)


@given(services, serials, st.sampled_from(["CN", "HK", "GB", "US"]))
def test_make_then_parse_round_trips(service: str, serial: str, country: str) -> None:
    text = make_tracking_number(service, int(serial), country)
    number = parse_tracking_number(text)
    assert number is not None and str(number) == text
    spaced = f" {text[:2].lower()} {text[2:5]} {text[5:8]} {text[8:11]} {text[11:].lower()}\t"
    assert parse_tracking_number(spaced) == number


@given(serials, st.integers(min_value=1, max_value=9))
def test_any_other_check_digit_is_rejected(serial: str, shift: int) -> None:
    wrong = (s10_check_digit(serial) + shift) % 10
    assert parse_tracking_number(f"RR{serial}{wrong}CN") is None


def test_remainders_0_and_6_share_check_digit_5() -> None:
    """The only collision in the remainder -> digit map: r=0 gives c=11 -> 5, r=6 gives c=5."""
    digits: dict[int, list[int]] = {}
    for r in range(11):
        c = 11 - r
        digits.setdefault({10: 0, 11: 5}.get(c, c), []).append(r)
    assert {d: rs for d, rs in digits.items() if len(rs) > 1} == {5: [0, 6]}


@given(serials, st.integers(min_value=0, max_value=7), st.integers(min_value=1, max_value=9))
def test_single_digit_change_is_caught_unless_remainder_moves_between_0_and_6(
    serial: str, position: int, delta: int
) -> None:
    """Every weight is non-zero mod 11 (a prime), so changing one digit always changes the remainder;
    it goes unnoticed exactly when the remainder moves between 0 and 6 (both map to check digit 5)."""
    new_digit = (int(serial[position]) + delta) % 10
    changed = serial[:position] + str(new_digit) + serial[position + 1 :]
    assert remainder(changed) != remainder(serial)
    undetected = {remainder(serial), remainder(changed)} == {0, 6}
    forged = f"RR{changed}{s10_check_digit(serial)}CN"
    assert (parse_tracking_number(forged) is not None) == undetected


def test_an_undetected_single_digit_change() -> None:
    # 00000000 has remainder 0; a 1 in the second place (weight 6) makes it 6: both take check digit 5
    assert parse_tracking_number("RR000000005CN") is not None
    assert parse_tracking_number("RR010000005CN") is not None


@pytest.mark.parametrize("first", list("JKSTW"))
def test_reserved_service_indicators_are_refused(first: str) -> None:
    service = first + "A"
    assert validate_service_indicator(service) == "the service indicator must not start with J, K, S, T or W"
    with pytest.raises(ValueError, match="must not start"):
        make_tracking_number(service, 47312482, "CN")
    assert parse_tracking_number(f"{service}473124829CN") is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "RR47312482CN",
        "RR4731248299CN",
        "R1473124829CN",
        "RR473124829C1",
        "RR473124828CN",
        "RR４73124829CN",  # a full-width digit
        "RR473124829Cı",  # a dotless i would upper-case to I
        None,
        473124829,
    ],
)
def test_malformed_numbers_are_rejected(text: object) -> None:
    assert parse_tracking_number(text) is None


@pytest.mark.parametrize(
    ("service", "serial", "country"), [("rr", 1, "CN"), ("RR", -1, "CN"), ("RR", 10**8, "CN"), ("RR", 1, "cn")]
)
def test_make_refuses_bad_parts(service: str, serial: int, country: str) -> None:
    with pytest.raises(ValueError):
        make_tracking_number(service, serial, country)


@pytest.mark.parametrize("serial", ["1234567", "123456789", "1234567a", "１２３４５６７８"])
def test_check_digit_needs_eight_ascii_digits(serial: str) -> None:
    with pytest.raises(ValueError):
        s10_check_digit(serial)
