"""SMS texts in and out: parsing (with hypothesis), replies, TwiML, signatures, the console channel."""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoicing.errors import ConfigError
from verification.model import OUTCOMES, SHOWS_INVOICE, InvoiceSummary, VerificationQuery
from verification.sms import (
    USAGE_TEXT,
    ConsoleSms,
    TwilioSms,
    format_query_sms,
    make_sms_channel,
    parse_sms,
    reply_text,
    twiml_reply,
    verify_twilio_signature,
)

EXAMPLE = VerificationQuery("044012600111", "00000001", date(2026, 11, 27), "123456")
SEPARATORS = [" ", ",", "，", "、", "-", "/", "\n", "\r\n", "\t", "\u3000", ";", "。", ":"]

queries = st.builds(  # digit strings from integers: a third of the cost of st.from_regex
    VerificationQuery,
    invoice_code=st.integers(0, 10**12 - 1).map(lambda n: f"{n:012d}"),
    invoice_number=st.integers(1, 99_999_999).map(lambda n: f"{n:08d}"),
    issue_date=st.dates(),
    check_code_last6=st.integers(0, 10**6 - 1).map(lambda n: f"{n:06d}"),
)


def full_width(text: str) -> str:
    """ASCII to its full-width form (what a Chinese input method types), space to U+3000."""
    return "".join("\u3000" if c == " " else chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@st.composite
def texts_for(draw: st.DrawFn, query: VerificationQuery) -> str:
    """A text a person might send for `query`: any keyword and case, any separators, full-width or not."""
    keyword = draw(st.sampled_from(["查验", "CY", "VERIFY", ""]))
    keyword = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in keyword)
    number = query.invoice_number.lstrip("0") if draw(st.booleans()) else query.invoice_number
    d = query.issue_date
    date_sep = draw(st.sampled_from(["", "-", "/"]))
    day = f"{d.year:04d}{date_sep}{d.month:02d}{date_sep}{d.day:02d}"
    seps = st.lists(st.sampled_from(SEPARATORS), min_size=1, max_size=3).map("".join)
    first_sep = draw(seps | st.just("")) if keyword else ""
    fields = [query.invoice_code, number, day, query.check_code_last6 or ""]
    text = keyword + first_sep + "".join(f + draw(seps) for f in fields[:-1]) + fields[-1]
    text = draw(st.sampled_from(["", " ", "\n"])) + text + draw(st.sampled_from(["", " ", "。", "\n"]))
    return full_width(text) if draw(st.booleans()) else text


# --- parse_sms ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "查验 044012600111 00000001 20261127 123456",
        "cy 044012600111,1,2026-11-27,123456",
        "VERIFY\n044012600111\n00000001\n2026/11/27\n123456",
        "Verify044012600111、00000001、20261127、123456",
        "查验：044012600111，00000001，20261127，123456。",
        "０４４０１２６００１１１　１　２０２６１１２７　１２３４５６",
        "查验 0440 1260 0111 0000 0001 2026 1127 123456",
        "查验04401260011100000001202611271234 56",
    ],
)
def test_parse_sms_reads_the_usual_ways_of_writing_a_query(text: str) -> None:
    assert parse_sms(text) == EXAMPLE


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "查验",
        "查验 044012600111 00000001 20261131 123456",
        "查验 04401260011 00000001 20261127 123456",
        "查验 044012600111 00000001 20261127 12345",
        "查验 044012600111 000000001 20261127 123456",
        "查验 044012600111 00000000 20261127 123456",
        "查验 044012600111 00000001 2026112 123456",
        "查验 044012600111 00000001 20261127 123456 7",
        "verifying 044012600111 00000001 20261127 123456",
        "发票查验 044012600111 00000001 20261127 123456",
        "查验 044012600111 0000000l 20261127 123456",
        "查验 ٠٤٤٠١٢٦٠٠١١١ 00000001 20261127 123456",
        "查验 044012600111 1 0000-11-27 123456",
        "查验 044012600111 1 2026-11-27-3 123456",
        "x" * 10_000,
    ],
)
def test_parse_sms_refuses_what_is_not_a_query(text: str) -> None:
    assert parse_sms(text) is None


@given(st.text())
def test_parse_sms_never_raises(text: str) -> None:
    assert parse_sms(text) is None or isinstance(parse_sms(text), VerificationQuery)


@given(st.text(alphabet=st.sampled_from(list("0123456789 -/,，、。\n查验CYcyVERIFY１２０")), max_size=60))
def test_parse_sms_never_raises_on_near_queries(text: str) -> None:
    result = parse_sms(text)
    assert result is None or len(result.invoice_code + result.invoice_number + (result.check_code_last6 or "")) == 26


@given(st.data(), queries)
def test_parse_sms_reads_back_any_way_of_writing_a_query(data: st.DataObject, query: VerificationQuery) -> None:
    text = data.draw(texts_for(query))
    assert parse_sms(text) == query


@given(queries)
def test_format_query_sms_round_trips(query: VerificationQuery) -> None:
    text = format_query_sms(query)
    assert parse_sms(text) == query
    assert text.startswith("查验 ") and "\n" not in text


def test_format_query_sms_needs_the_check_code_tail() -> None:
    with pytest.raises(ValueError, match="check code"):
        format_query_sms(VerificationQuery("044012600111", "00000001", date(2026, 11, 27), None, Decimal(200)))


# --- replies ------------------------------------------------------------------------------------

SUMMARY = InvoiceSummary("044012600111", "00000001", date(2026, 11, 27), Decimal("226.00"))


def test_reply_text_for_a_genuine_invoice() -> None:
    assert (
        reply_text("valid", 3, SUMMARY)
        == "【发票查验】044012600111/00000001 查验一致，合计¥226.00，第3次查验。Genuine."
    )


@pytest.mark.parametrize("outcome", sorted(set(OUTCOMES) - SHOWS_INVOICE))
def test_reply_text_tells_nothing_about_the_invoice_unless_matched(outcome: str) -> None:
    text = reply_text(outcome, 7, SUMMARY)  # type: ignore[arg-type]
    assert "044012600111" not in text and "226" not in text and "7" not in text
    assert text.startswith("【发票查验】")


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_every_reply_fits_one_ucs2_segment(outcome: str) -> None:
    big = InvoiceSummary("044012600111", "99999999", date(2026, 12, 31), Decimal("999999.99"))
    for summary in (None, SUMMARY, big):
        text = reply_text(outcome, 999, summary)  # type: ignore[arg-type]
        assert len(text.encode("utf-16-be")) // 2 <= 70, text
        assert "\n" not in text


def test_a_valid_reply_fits_one_segment_up_to_a_hundred_million() -> None:
    big = InvoiceSummary("044012600111", "99999999", date(2026, 12, 31), Decimal("99999999.99"))
    assert len(reply_text("valid", 9999, big)) <= 70


def test_usage_text_is_one_line_whose_example_parses() -> None:
    assert "\n" not in USAGE_TEXT and len(USAGE_TEXT) <= 134  # at most two UCS-2 parts
    example = re.search(r"查验 [0-9 ]+[0-9]", USAGE_TEXT)
    assert example and parse_sms(example.group()) == EXAMPLE


def test_twiml_reply_carries_the_text_escaped() -> None:
    text = "【发票查验】a < b & c"
    root = ET.fromstring(twiml_reply(text))
    assert root.tag == "Response"
    assert [m.text for m in root.findall("Message")] == [text]


# --- signatures ---------------------------------------------------------------------------------

TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}


def test_twilio_documented_signature_vector() -> None:
    assert verify_twilio_signature("12345", TWILIO_URL, TWILIO_PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")


@pytest.mark.parametrize(
    ("token", "url", "params", "signature"),
    [
        ("12345", TWILIO_URL, TWILIO_PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgR="),
        ("54321", TWILIO_URL, TWILIO_PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
        ("12345", TWILIO_URL.replace("foo=1", "foo=2"), TWILIO_PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
        ("12345", TWILIO_URL, {**TWILIO_PARAMS, "Digits": "4321"}, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
        ("12345", TWILIO_URL, TWILIO_PARAMS, ""),
        ("12345", TWILIO_URL, TWILIO_PARAMS, None),
    ],
)
def test_a_wrong_signature_fails(token: str, url: str, params: dict[str, str], signature: str | None) -> None:
    assert not verify_twilio_signature(token, url, params, signature)


# --- channels -----------------------------------------------------------------------------------


async def test_console_sms_logs_a_masked_phone_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    channel = ConsoleSms(keep=2)
    ids = [await channel.send("+8613800138000", f"message {i}") for i in range(3)]
    assert "+86 138****8000" in caplog.text
    assert "13800138000" not in caplog.text
    assert [m.body for m in channel.sent] == ["message 1", "message 2"]
    assert [m.id for m in channel.sent] == ids[1:] and len(set(ids)) == 3
    assert channel.sent[-1].to == "+8613800138000" and channel.sent[-1].to_masked == "+86 138****8000"


def test_make_sms_channel() -> None:
    assert isinstance(make_sms_channel("console"), ConsoleSms)
    twilio = make_sms_channel("twilio", account_sid="AC" + "0" * 32, auth_token="t", from_number="+15005550006")
    assert isinstance(twilio, TwilioSms)
    twilio.close()
    with pytest.raises(ConfigError, match="auth_token, from_number"):
        make_sms_channel("twilio", account_sid="AC" + "0" * 32, auth_token="")
    with pytest.raises(ConfigError, match="unknown SMS backend"):
        make_sms_channel("pigeon")
