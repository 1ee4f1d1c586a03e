"""Money rules of `invoicing.model` against an independent exact model, and credit notes."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from invoicing.corrections import CreditRequestLine, credit_lines, status_after_credit, sum_credited
from invoicing.errors import Conflict, ValidationFailed
from invoicing.model import (
    DEFAULT_TAX_RATES,
    PROVINCES,
    Invoice,
    Kind,
    Line,
    LineInput,
    Party,
    Seller,
    Status,
    compute_line,
    compute_totals,
    money_str,
    province_code,
    round_half_up,
)

# --- an independent model: exact fractions, half-up by integer arithmetic ---------------------------


def half_up_cents(value: Fraction) -> Decimal:
    cents = math.floor(abs(value) * 100 + Fraction(1, 2))
    return Decimal(cents if value >= 0 else -cents).scaleb(-2)


def expected_figures(item: LineInput, sign: int = 1) -> tuple[Decimal, Decimal]:
    amount = half_up_cents(Fraction(item.quantity) * Fraction(item.unit_price) * sign)
    return amount, half_up_cents(Fraction(amount) * Fraction(item.tax_rate))


def is_cents(value: Decimal) -> bool:
    return value.as_tuple().exponent == -2


# Up to 8 decimals; the bounds keep quantity * unit_price below 10**12 (see the regression test below).
quantities = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(10**6), places=8)
prices = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(10**6), places=8)
line_inputs = st.builds(
    LineInput,
    st.sampled_from(["办公椅", "咨询服务"]),
    st.just("个"),
    quantities,
    prices,
    st.sampled_from(DEFAULT_TAX_RATES),
)


@settings(max_examples=300)
@given(item=line_inputs)
def test_compute_line_matches_the_exact_model(item: LineInput) -> None:
    line = compute_line(item)
    assert (line.amount, line.tax_amount) == expected_figures(item)
    assert is_cents(line.amount) and is_cents(line.tax_amount)
    assert (line.quantity, line.unit_price, line.tax_rate) == (item.quantity, item.unit_price, item.tax_rate)
    assert line.original_line is None


@settings(max_examples=300)
@given(item=line_inputs)
def test_sign_minus_one_negates_exactly(item: LineInput) -> None:
    plus, minus = compute_line(item), compute_line(item, sign=-1)
    assert (minus.quantity, minus.amount, minus.tax_amount) == (-plus.quantity, -plus.amount, -plus.tax_amount)
    assert (minus.amount, minus.tax_amount) == expected_figures(item, sign=-1)
    assert (minus.unit_price, minus.tax_rate) == (plus.unit_price, plus.tax_rate)


@settings(max_examples=200)
@given(items=st.lists(line_inputs, max_size=12), sign=st.sampled_from([1, -1]))
def test_totals_are_sums_of_the_line_figures(items: list[LineInput], sign: int) -> None:
    figures = [expected_figures(item, sign) for item in items]
    totals = compute_totals([compute_line(item, sign) for item in items])
    assert totals.total_amount == sum(amount for amount, _ in figures)
    assert totals.total_tax == sum(tax for _, tax in figures)
    assert totals.total == totals.total_amount + totals.total_tax
    assert all(is_cents(x) for x in (totals.total_amount, totals.total_tax, totals.total))


@pytest.mark.parametrize(
    ("quantity", "unit_price", "rate", "amount", "tax"),
    [
        ("2", "100.00", "0.13", "200.00", "26.00"),  # API.md's example request
        ("1", "0.005", "0", "0.01", "0.00"),  # half-up, not half-even
        ("3", "0.335", "0.13", "1.01", "0.13"),
        ("1", "1.15", "0.13", "1.15", "0.15"),  # 0.1495 -> 0.15 from the rounded amount
        ("0.00000001", "0.00000001", "0.13", "0.00", "0.00"),
    ],
)
def test_line_examples(quantity: str, unit_price: str, rate: str, amount: str, tax: str) -> None:
    line = compute_line(LineInput("x", "个", Decimal(quantity), Decimal(unit_price), Decimal(rate)))
    assert (str(line.amount), str(line.tax_amount)) == (amount, tax)


@settings(max_examples=500)
@given(
    value=st.decimals(min_value=Decimal("-1e13"), max_value=Decimal("1e13"), allow_nan=False, allow_infinity=False)
    | st.sampled_from([Decimal("-0"), Decimal("-0.00"), Decimal("-0.004"), Decimal("0.005"), Decimal("-0.005")])
)
def test_money_str_is_the_half_up_round_to_the_cent_formatted(value: Decimal) -> None:
    """The fast `money_str` (str of the quantized value) against the plain definition it replaced."""
    assert money_str(value) == f"{round_half_up(value):.2f}"


def test_a_sealed_copy_changes_its_place_and_proofs_only() -> None:
    """`sealed` gives the record its place in the series and its proofs, and leaves every other field as it was."""
    inv = make_invoice([compute_line(LineInput("x", "个", Decimal("2"), Decimal("3.50"), Decimal("0.13")))])
    sealed = inv.sealed("440126000002", "00000007", "1" * 20, "cd" * 32, "ab" * 32, "sig", "key-1")
    given = {
        "invoice_code": "440126000002",
        "invoice_number": "00000007",
        "check_code": "1" * 20,
        "prev_hash": "cd" * 32,
        "record_hash": "ab" * 32,
        "signature": "sig",
        "key_id": "key-1",
    }
    assert msgspec.structs.asdict(sealed) == {**msgspec.structs.asdict(inv), **given}
    assert inv.record_hash == "a" * 64 and sealed is not inv


def test_regression_amount_is_rounded_once() -> None:
    item = LineInput("x", "个", Decimal("10000000.00000001"), Decimal("499999.99999995"), Decimal("0"))
    # exactly 4999999999999.5049999999999995 -> 4999999999999.50 (both inputs are valid API values)
    assert compute_line(item).amount == expected_figures(item)[0] == Decimal("4999999999999.50")


# --- invoices and credit notes ----------------------------------------------------------------------


def make_invoice(lines: list[Line], *, kind: Kind = "invoice", status: Status = "issued", number: int = 1) -> Invoice:
    moment = datetime(2026, 3, 5, 2, 30, tzinfo=UTC)
    return Invoice(
        id=f"id-{number}",
        issuer_id="issuer-1",
        kind=kind,
        series="default",
        invoice_code="440126000001",
        invoice_number=f"{number:08d}",
        issue_date=date(2026, 3, 5),
        issued_at=moment,
        status=status,
        seller=Seller("广州示例有限公司", "91440101MA5XXXXXXX", "广州市天河路 1 号", None),
        buyer=Party("张三"),
        currency="CNY",
        lines=tuple(lines),
        totals=compute_totals(lines),
        total_in_words="(words)",
        check_code="0" * 20,
        record_hash="a" * 64,
        prev_hash="0" * 64,
        signature="sig",
        key_id="k" * 16,
        delivery_method="electronic",
        remarks="",
        original_invoice_id="id-1" if kind == "credit_note" else None,
    )


def credit_note(lines: list[Line], number: int) -> Invoice:
    return make_invoice(lines, kind="credit_note", number=number)


credit_items = st.builds(
    LineInput,
    st.just("大米"),
    st.just("kg"),
    st.one_of(st.integers(1, 1000).map(Decimal), st.decimals(Decimal("0.00000001"), Decimal(1000), places=8)),
    st.decimals(Decimal("0.00000001"), Decimal(100_000), places=8),
    st.sampled_from(DEFAULT_TAX_RATES),
)


@st.composite
def credit_request(draw: st.DrawFn, original: Invoice, credited: list[Line]) -> list[CreditRequestLine]:
    """Some lines of the original, each for a part of what is left or (quantity None) all of it."""
    order = draw(st.permutations(range(1, len(original.lines) + 1)))  # distinct without rejecting repeats
    numbers = order[: draw(st.integers(1, len(order)))]
    wanted = []
    for number in numbers:
        left = original.lines[number - 1].quantity + credited[number - 1].quantity
        if left <= 0 or draw(st.booleans()):
            wanted.append(CreditRequestLine(number, None))
        else:
            wanted.append(CreditRequestLine(number, draw(st.decimals(Decimal("0.00000001"), left, places=8))))
    return wanted


def assert_within_original(original: Invoice, credited: list[Line]) -> None:
    for orig, done in zip(original.lines, credited, strict=True):
        assert orig.quantity + done.quantity >= 0 and done.quantity <= 0
        assert orig.amount + done.amount >= 0 and done.amount <= 0
        assert orig.tax_amount + done.tax_amount >= 0 and done.tax_amount <= 0


def apply_credit(original: Invoice, notes: list[Invoice], wanted: list[CreditRequestLine] | None) -> Invoice:
    """Issue one credit note against `original`; return the original with its new status."""
    before = sum_credited(original.lines, [n.lines for n in notes])
    lines = credit_lines(original, before, wanted)
    for line in lines:
        assert line.original_line is not None
        orig = original.lines[line.original_line - 1]
        assert (line.unit_price, line.tax_rate, line.description) == (orig.unit_price, orig.tax_rate, orig.description)
        left_qty = orig.quantity + before[line.original_line - 1].quantity
        if line.quantity != -left_qty:  # a partial credit is figured like any line
            item = LineInput(orig.description, orig.unit, -line.quantity, orig.unit_price, orig.tax_rate)
            assert (line.amount, line.tax_amount) == expected_figures(item, sign=-1)
    notes.append(credit_note(lines, number=len(notes) + 2))
    credited = sum_credited(original.lines, [n.lines for n in notes])
    assert_within_original(original, credited)
    return original.with_status(status_after_credit(original.lines, credited))


@settings(max_examples=200)
@given(items=st.lists(credit_items, min_size=1, max_size=4), rounds=st.integers(0, 5), data=st.data())
def test_partial_credits_never_exceed_and_a_full_credit_reverses(
    items: list[LineInput], rounds: int, data: st.DataObject
) -> None:
    original = make_invoice([compute_line(item) for item in items])
    notes: list[Invoice] = []
    for _ in range(rounds):
        if original.status == "reversed":
            break
        wanted = data.draw(credit_request(original, sum_credited(original.lines, [n.lines for n in notes])))
        try:
            original = apply_credit(original, notes, wanted)
        except ValidationFailed as exc:  # a partial credit whose rounding would pass what is left
            assert {e.field for e in exc.errors} <= {f"lines[{i}].quantity" for i in range(len(wanted))}
        except Conflict:  # every requested line was already fully credited
            assert all(w.quantity is None for w in wanted)
    if original.status != "reversed":
        original = apply_credit(original, notes, None)
    credited = sum_credited(original.lines, [n.lines for n in notes])
    assert original.status == "reversed"
    for orig, done in zip(original.lines, credited, strict=True):
        assert (done.quantity, done.amount, done.tax_amount) == (-orig.quantity, -orig.amount, -orig.tax_amount)
    note_totals = compute_totals([line for note in notes for line in note.lines])
    assert note_totals.total == -original.totals.total and note_totals.total_tax == -original.totals.total_tax
    with pytest.raises(Conflict):
        credit_lines(original, credited, None)


@settings(max_examples=200)
@given(items=st.lists(credit_items, min_size=2, max_size=4), data=st.data())
def test_asking_for_more_than_is_left_names_the_field(items: list[LineInput], data: st.DataObject) -> None:
    original = make_invoice([compute_line(item) for item in items])
    notes: list[Invoice] = []
    first = data.draw(credit_request(original, sum_credited(original.lines, [n.lines for n in notes])))
    try:
        original = apply_credit(original, notes, first)
    except ValidationFailed:
        pass
    assume(original.status != "reversed")
    credited = sum_credited(original.lines, [n.lines for n in notes])
    numbers = data.draw(st.permutations(range(1, len(items) + 1)))
    too_much = data.draw(st.sampled_from(numbers))
    left = original.lines[too_much - 1].quantity + credited[too_much - 1].quantity
    extra = data.draw(st.decimals(Decimal("0.00000001"), Decimal(1000), places=8))
    wanted = [CreditRequestLine(n, left + extra if n == too_much else None) for n in numbers]
    with pytest.raises(ValidationFailed) as caught:
        credit_lines(original, credited, wanted)
    assert [e.field for e in caught.value.errors] == [f"lines[{numbers.index(too_much)}].quantity"]


def test_credit_refusals() -> None:
    original = make_invoice([compute_line(LineInput("x", "个", Decimal(2), Decimal("100.00"), Decimal("0.13")))])
    with pytest.raises(Conflict):
        credit_lines(original.with_status("voided"), sum_credited(original.lines, []), None)
    with pytest.raises(Conflict):
        credit_lines(replace(original, kind="credit_note"), sum_credited(original.lines, []), None)
    with pytest.raises(ValidationFailed) as caught:
        credit_lines(
            original,
            sum_credited(original.lines, []),
            [CreditRequestLine(2, None), CreditRequestLine(1, None), CreditRequestLine(1, None)],
        )
    assert [e.field for e in caught.value.errors] == ["lines[0].line_no", "lines[2].line_no"]


def test_credit_by_quantity_example() -> None:
    original = make_invoice([compute_line(LineInput("x", "个", Decimal(3), Decimal("0.335"), Decimal("0.13")))])
    notes: list[Invoice] = []
    original = apply_credit(original, notes, [CreditRequestLine(1, Decimal(1))])
    assert original.status == "partially_credited"
    assert (notes[0].lines[0].amount, notes[0].lines[0].tax_amount) == (Decimal("-0.34"), Decimal("-0.04"))
    original = apply_credit(original, notes, None)
    assert original.status == "reversed"
    assert (notes[1].lines[0].quantity, notes[1].lines[0].amount, notes[1].lines[0].tax_amount) == (
        Decimal(-2),
        Decimal("-0.67"),
        Decimal("-0.09"),
    )


def test_regression_quantity_left_without_money_can_be_credited() -> None:
    original = make_invoice([compute_line(LineInput("米", "kg", Decimal("2.0004"), Decimal("10.00"), Decimal("0.13")))])
    notes: list[Invoice] = []
    original = apply_credit(original, notes, [CreditRequestLine(1, Decimal(2))])  # 20.00 + 2.60 of 20.00 + 2.60
    original = apply_credit(original, notes, None)  # takes the 0.0004 kg left, worth 0.00
    assert original.status == "reversed"


# --- provinces ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["广东省", "广东", "44", " 广东省 ", "44\n"])
def test_province_code_of_guangdong(text: str) -> None:
    assert province_code(text) == "44"


@pytest.mark.parametrize("text", ["", "广东省省", "广", "Guangdong", "4401", "99", "00", "广州市", "东广"])
def test_province_code_of_garbage(text: str) -> None:
    assert province_code(text) is None


@given(code=st.sampled_from(sorted(PROVINCES)))
def test_every_province_reads_back(code: str) -> None:
    full, short = PROVINCES[code]
    assert province_code(full) == province_code(short) == province_code(code) == code


@given(text=st.text(max_size=8))
def test_province_code_is_a_known_code_or_none(text: str) -> None:
    code = province_code(text)
    assert code is None or (code in PROVINCES and text.strip() in (code, *PROVINCES[code]))
