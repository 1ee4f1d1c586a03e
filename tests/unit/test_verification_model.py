"""Verification rules: parsing queries, matching, outcome precedence, masking, phrases."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from invoiceloop.settings import Settings
from invoicing import formats
from invoicing.errors import ConfigError, ValidationFailed
from invoicing.model import money_str, plain_str
from tests.unit.invoice_samples import sample_invoice
from verification.masking import mask_name, mask_phone, public_invoice
from verification.model import (
    DEFAULT_SMS_COUNTRIES,
    OUTCOME_TEXT,
    OUTCOMES,
    SHOWS_INVOICE,
    InvoiceSummary,
    Outcome,
    VerificationQuery,
    fields_from_qr,
    is_mobile,
    matches,
    normalise_phone,
    outcome_for,
    parse_countries,
    parse_query,
    receipt_refusal,
)

GOOD = {
    "invoice_code": "044012600111",
    "invoice_number": "00000001",
    "issue_date": "2026-11-27",
    "check_code_last6": "123456",
}
CHECK_CODE = "98765432109876123456"


def error_fields(fields: Mapping[str, object]) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as caught:
        parse_query(fields)
    return {e.field: e.message for e in caught.value.errors}


# --- parse_query --------------------------------------------------------------------------------


def test_parse_query_reads_a_good_query() -> None:
    assert parse_query(GOOD) == VerificationQuery("044012600111", "00000001", date(2026, 11, 27), "123456")


@pytest.mark.parametrize("day", ["2026-11-27", "20261127", "２０２６１１２７"])
def test_parse_query_accepts_both_date_forms_and_full_width(day: str) -> None:
    assert parse_query({**GOOD, "issue_date": day}).issue_date == date(2026, 11, 27)


def test_parse_query_pads_a_short_number_and_ignores_spaces_and_unknown_fields() -> None:
    query = parse_query({**GOOD, "invoice_number": " 42 ", "invoice_code": "0440 1260 0111", "csrf": "x"})
    assert (query.invoice_code, query.invoice_number) == ("044012600111", "00000042")


def test_parse_query_by_amount_and_phone() -> None:
    fields = {**GOOD, "check_code_last6": "", "total_amount": "¥1,200.5", "phone": "138 0013 8000"}
    query = parse_query(fields)
    assert query.check_code_last6 is None
    assert query.total_amount == Decimal("1200.50")
    assert query.phone == "+8613800138000"


def test_parse_query_names_every_bad_field() -> None:
    fields = {
        "invoice_code": "4401",
        "invoice_number": "123456789",
        "issue_date": "2026-02-30",
        "check_code_last6": "12345",
        "phone": "020 8888",  # not a number at all (a landline is answered, its receipt refused)
    }
    errors = error_fields(fields)
    assert set(errors) == {"invoice_code", "invoice_number", "issue_date", "check_code_last6", "phone"}
    assert "12" in errors["invoice_code"]
    assert "mobile" in errors["phone"]


def test_parse_query_reports_missing_fields() -> None:
    errors = error_fields({})
    assert set(errors) == {"invoice_code", "invoice_number", "issue_date", "check_code_last6"}
    assert "total_amount" in errors["check_code_last6"]


def test_parse_query_wants_exactly_one_secret() -> None:
    errors = error_fields({**GOOD, "total_amount": "200.00"})
    assert set(errors) == {"check_code_last6"}
    assert "not both" in errors["check_code_last6"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("invoice_number", "0"),
        ("invoice_number", "00000000"),
        ("issue_date", "2026-1127"),
        ("issue_date", "27/11/2026"),
        ("invoice_code", 44012600111),
        ("check_code_last6", "١٢٣٤٥٦"),
    ],
)
def test_parse_query_refuses(field: str, value: object) -> None:
    assert set(error_fields({**GOOD, field: value})) == {field}


@pytest.mark.parametrize("amount", ["1.234", "abc", "1e3", "NaN", 200])
def test_parse_query_refuses_bad_amounts(amount: object) -> None:
    errors = error_fields({**GOOD, "check_code_last6": None, "total_amount": amount})
    assert set(errors) == {"total_amount"}


def test_fields_from_qr_take_the_tail_of_the_check_code() -> None:
    params = {"c": "044012600111", "n": "00000001", "d": "20261127", "k": CHECK_CODE, "a": "200.00", "s": "sig"}
    query = parse_query(fields_from_qr(params))
    assert query == VerificationQuery("044012600111", "00000001", date(2026, 11, 27), "123456")


def test_summary_of_an_invoice_from_its_content_or_its_public_view() -> None:
    invoice = sample_invoice(lines=2)
    content = formats.content_of(invoice)
    for shown in (content, public_invoice(content, invoice.status)):
        summary = InvoiceSummary.of(shown)
        assert (summary.invoice_code, summary.invoice_number) == (invoice.invoice_code, invoice.invoice_number)
        assert (summary.issue_date, summary.total) == (invoice.issue_date, invoice.totals.total)


def test_public_invoice_masks_the_buyer_and_shows_the_figures_as_signed() -> None:
    invoice = sample_invoice(lines=10)  # line 8 costs 138.123456 a bag: shown in full, as issued and signed
    shown = public_invoice(formats.content_of(invoice), "voided")
    assert shown["status"] == "voided" and shown["issue_date"] == invoice.issue_date.isoformat()
    assert shown["seller"] == {"name": invoice.seller.name, "tax_id": invoice.seller.tax_id}
    assert shown["buyer"] == {"name": mask_name(invoice.buyer.name), "phone": mask_phone(invoice.buyer.phone or "")}
    assert invoice.check_code not in str(shown) and (invoice.buyer.phone or "-") not in str(shown)
    assert [
        (ln["description"], ln["quantity"], ln["unit_price"], ln["tax_rate"], ln["amount"]) for ln in shown["lines"]
    ] == [
        (
            ln.description,
            plain_str(ln.quantity),
            plain_str(ln.unit_price, 2),
            plain_str(ln.tax_rate),
            money_str(ln.amount),
        )
        for ln in invoice.lines
    ]
    assert (shown["total_amount"], shown["total"]) == (
        money_str(invoice.totals.total_amount),
        money_str(invoice.totals.total),
    )
    no_phone = public_invoice(formats.content_of(replace(invoice, buyer=replace(invoice.buyer, phone=None))), "issued")
    assert no_phone["buyer"]["phone"] is None


# --- matches ------------------------------------------------------------------------------------


def matches_record(query: VerificationQuery) -> bool:
    """Against a record dated 2026-11-27, 200.00 excluding tax, with CHECK_CODE."""
    return matches(query, check_code=CHECK_CODE, total_amount=Decimal("200.00"), issue_date=date(2026, 11, 27))


def test_matches_on_the_check_code_tail() -> None:
    assert matches_record(parse_query(GOOD))


@pytest.mark.parametrize("position", range(6))
def test_one_wrong_digit_anywhere_fails(position: int) -> None:
    last6 = list("123456")
    last6[position] = str((int(last6[position]) + 1) % 10)
    assert not matches_record(parse_query({**GOOD, "check_code_last6": "".join(last6)}))


def test_the_date_must_match_too() -> None:
    assert not matches_record(parse_query({**GOOD, "issue_date": "2026-11-28"}))


def test_matches_on_the_amount_exactly() -> None:
    by_amount = {**GOOD, "check_code_last6": "", "total_amount": "200"}
    assert matches_record(parse_query(by_amount))
    assert not matches_record(parse_query({**by_amount, "total_amount": "200.01"}))
    assert not matches_record(parse_query({**by_amount, "total_amount": "199.99"}))


def test_a_query_without_a_secret_never_matches() -> None:
    assert not matches_record(VerificationQuery("044012600111", "00000001", date(2026, 11, 27)))


@given(st.text(alphabet="0123456789", min_size=6, max_size=6))
def test_only_the_true_tail_matches(last6: str) -> None:
    query = VerificationQuery("044012600111", "00000001", date(2026, 11, 27), last6)
    assert matches_record(query) == (last6 == CHECK_CODE[-6:])


# --- outcome_for --------------------------------------------------------------------------------

STATUSES = ["issued", "voided", "reversed", "partially_credited"]


def test_outcome_for_each_status_when_matched() -> None:
    got = [outcome_for(s, True, False) for s in STATUSES]  # type: ignore[arg-type]
    assert got == ["valid", "voided", "reversed", "partially_credited"]


@pytest.mark.parametrize(
    ("status", "tampered", "locked"), list(itertools.product(STATUSES, [False, True], [False, True]))
)
def test_a_stranger_learns_only_mismatch_or_locked(status: str, tampered: bool, locked: bool) -> None:
    assert outcome_for(status, False, tampered, locked=locked) == ("locked" if locked else "mismatch")  # type: ignore[arg-type]


@pytest.mark.parametrize("status", STATUSES)
def test_tampered_outranks_the_status_once_matched(status: str) -> None:
    assert outcome_for(status, True, True) == "tampered"  # type: ignore[arg-type]


@pytest.mark.parametrize(("matched", "tampered"), list(itertools.product([False, True], [False, True])))
def test_locked_outranks_everything_but_not_found(matched: bool, tampered: bool) -> None:
    assert outcome_for("issued", matched, tampered, locked=True) == "locked"
    assert outcome_for(None, matched, tampered, locked=True) == "not_found"


def test_every_outcome_has_both_phrases() -> None:
    assert set(OUTCOME_TEXT) == set(OUTCOMES)
    assert OUTCOME_TEXT["valid"] == ("查验一致：发票真实有效", "Genuine: the invoice matches our records")
    assert all(zh and en.isascii() for zh, en in OUTCOME_TEXT.values())
    assert SHOWS_INVOICE <= set(OUTCOMES) and "mismatch" not in SHOWS_INVOICE


# --- masking ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("张三", "张*"),
        ("欧阳娜娜", "欧**娜"),
        ("李", "*"),
        ("王小明", "王*明"),
        ("John Smith", "J*** S****"),
        ("  José   María ", "J*** M****"),
        ("X", "X"),
        ("", ""),
        ("广州某某科技有限公司", "广********司"),
    ],
)
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked


@given(st.text(min_size=1, max_size=30))
def test_mask_name_keeps_at_most_one_character_per_word_plus_one(name: str) -> None:
    masked, compact = mask_name(name), " ".join(name.split())
    assert len(masked) == len(compact)
    assert all(m in ("*", c) for m, c in zip(masked, compact, strict=True))
    kept = sum(m != "*" and not m.isspace() for m in masked)
    assert kept <= len(compact.split()) + 1
    if "*" not in compact and any(len(word) >= 2 for word in compact.split()):
        assert masked != compact


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+8613800138000", "+86 138****8000"),
        ("+12025550123", "+1 202***0123"),
        ("not a phone", "***"),
        ("13800138000", "***"),
    ],
)
def test_mask_phone(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


def test_phone_normalising_and_mobile_check() -> None:
    assert normalise_phone("138 0013 8000") == "+8613800138000"
    assert normalise_phone("１３８００１３８０００") == "+8613800138000"
    assert normalise_phone("+1 202 555 0123", "CN") == "+12025550123"
    assert normalise_phone("12345") is None
    assert is_mobile("+8613800138000")
    assert not is_mobile("+862088888888")
    assert not is_mobile("garbage")


@pytest.mark.parametrize(
    ("outcome", "phone", "why"),
    [
        ("valid", "+8613912345678", None),
        ("tampered", "+8613912345678", None),  # the right details: the holder hears of it
        ("not_found", "+8613912345678", "details_not_confirmed"),
        ("mismatch", "+8613912345678", "details_not_confirmed"),
        ("locked", "+8613912345678", "details_not_confirmed"),
        ("not_found", "+37120000012", "details_not_confirmed"),  # the outcome first: nothing counted
        ("valid", "+37120000012", "country_not_allowed"),
        ("valid", "+12025550123", "country_not_allowed"),  # FIXED_LINE_OR_MOBILE, but not CN
        ("valid", "+862087654321", "not_a_mobile"),
    ],
)
def test_receipt_refusal(outcome: Outcome, phone: str, why: str | None) -> None:
    assert receipt_refusal(outcome, phone, DEFAULT_SMS_COUNTRIES) == why


def test_allowed_countries_setting() -> None:
    assert parse_countries(" cn, hk ") == {"CN", "HK"}
    assert receipt_refusal("valid", "+37120000012", parse_countries("CN,LV")) is None
    with pytest.raises(ValueError, match="XX"):
        parse_countries("CN,XX")
    assert Settings.from_env({}).sms_allowed_countries == {"CN"} and Settings.from_env({}).sms_daily_budget == 10_000
    assert Settings.from_env({"SMS_ALLOWED_COUNTRIES": "CN,MO", "SMS_DAILY_BUDGET": "0"}).sms_daily_budget == 0
    for bad in ({"SMS_ALLOWED_COUNTRIES": "China"}, {"SMS_DAILY_BUDGET": "-1"}, {"SMS_DAILY_BUDGET": "1e4"}):
        with pytest.raises(ConfigError):
            Settings.from_env(bad)
