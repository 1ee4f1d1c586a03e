"""The buyer's texted download link (`invoicing.buyer_texts`): the token is exactly what we signed, names one
record and kind, expires; the text is one SMS segment with a usual base URL; only phones we may text get one."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoiceloop.settings import Settings
from invoicing import buyer_texts
from invoicing.buyer_texts import BadToken, BuyerTexts, ExpiredToken, make_token, read_token
from invoicing.errors import ConfigError
from tests.unit.invoice_samples import sample_invoice

KEY = buyer_texts.link_key(b"secret")
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
codes = st.text("0123456789", min_size=12, max_size=12)
numbers = st.text("0123456789", min_size=8, max_size=8)
kinds = st.sampled_from(buyer_texts.KINDS)
hours = st.integers(min_value=1, max_value=2**24 - 1)


@given(kinds, codes, numbers, hours)
def test_a_token_reads_back_as_what_was_signed(kind: buyer_texts.TextKind, code: str, number: str, hour: int) -> None:
    token = make_token(KEY, kind, code, number, hour)
    assert len(token) == buyer_texts.TOKEN_CHARS
    assert read_token(KEY, token, hour * 3600 - 1) == buyer_texts.Link(kind, code, number, hour)


@given(kinds, codes, numbers, st.integers(min_value=0, max_value=27), st.sampled_from("AQgw-_09"))
def test_any_changed_character_is_refused(
    kind: buyer_texts.TextKind, code: str, number: str, at: int, char: str
) -> None:
    token = make_token(KEY, kind, code, number, 10**6)
    changed = token[:at] + char + token[at + 1 :]
    if changed != token:
        with pytest.raises(BadToken):
            read_token(KEY, changed, 0)


def test_another_key_truncation_padding_and_junk_are_refused() -> None:
    token = make_token(KEY, "invoice", "440126000111", "00000001", 10**6)
    for bad in (token[:-1], token + "A", token + "=", " " + token[1:], "é" * 28, "", "../../etc/passwd"):
        with pytest.raises(BadToken):
            read_token(KEY, bad, 0)
    with pytest.raises(BadToken):
        read_token(buyer_texts.link_key(b"another secret"), token, 0)


def test_a_token_expires_at_its_hour() -> None:
    token = make_token(KEY, "void", "440126000111", "00000001", 500_000)
    assert read_token(KEY, token, 500_000 * 3600 - 1).kind == "void"
    with pytest.raises(ExpiredToken):
        read_token(KEY, token, 500_000 * 3600)


def test_the_link_lives_at_least_its_days() -> None:
    texts = BuyerTexts(KEY, "https://fp.example.cn", ttl_days=30)
    hour = texts.expires_hour(NOW)
    assert hour * 3600 >= NOW.timestamp() + 30 * 86400 and hour * 3600 < NOW.timestamp() + 30 * 86400 + 3600


@pytest.mark.parametrize("kind", buyer_texts.KINDS)
def test_the_text_is_one_segment_with_a_usual_base_url(kind: buyer_texts.TextKind) -> None:
    inv = sample_invoice(1, kind="credit_note" if kind == "credit_note" else "invoice")
    for base in ("https://fp.example.cn", "http://127.0.0.1:45678", "https://invoiceloop.cn"):
        phone, text = BuyerTexts(KEY, base).text(kind, inv, NOW) or ("", "")
        assert phone == inv.buyer.phone and buyer_texts.segments(text) == 1, (len(text), text)
        assert text.startswith("【") and base + buyer_texts.PATH in text
    richer = BuyerTexts(KEY, "https://fp.cn").text(kind, inv, NOW)
    assert richer is not None and inv.invoice_number in richer[1]  # a short base leaves room to name the invoice


def test_a_long_base_url_gets_the_richest_text_of_two_segments() -> None:
    inv = sample_invoice(1)
    base = "https://invoices.example.com.cn"  # the shortest text is 75 characters: two segments whatever is sent
    _, text = BuyerTexts(KEY, base).text("invoice", inv, NOW) or ("", "")
    assert text == buyer_texts.candidates("invoice", inv, text[text.index("http") :], 30)[0]
    assert buyer_texts.segments(text) == 2 and "Download within 30 days" in text


def test_segments() -> None:
    assert buyer_texts.segments("a" * 160) == 1 and buyer_texts.segments("a" * 161) == 2
    assert buyer_texts.segments("发" * 70) == 1 and buyer_texts.segments("发" * 71) == 2
    assert buyer_texts.segments("发" * 135) == 3


@pytest.mark.parametrize(
    ("phone", "delivery", "countries", "texted"),
    [
        ("+8613800138000", "electronic", frozenset({"CN"}), True),
        ("+8613800138000", "postal", frozenset({"CN"}), False),  # the paper's buyer hears "delivered" instead
        (None, "electronic", frozenset({"CN"}), False),
        ("+862087654321", "electronic", frozenset({"CN"}), False),  # a Guangzhou landline
        ("+37120000000", "electronic", frozenset({"CN"}), False),  # a Latvian mobile, not allowed
        ("+37120000000", "electronic", frozenset({"CN", "LV"}), True),
    ],
)
def test_who_gets_a_text(phone: str | None, delivery: str, countries: frozenset[str], texted: bool) -> None:
    inv = sample_invoice(1, delivery_method=delivery)
    inv = msgspec.structs.replace(inv, buyer=msgspec.structs.replace(inv.buyer, phone=phone))
    assert (
        BuyerTexts(KEY, "https://fp.example.cn", countries=countries).text("invoice", inv, NOW) is not None
    ) is texted


def test_ttl_setting() -> None:
    assert Settings.from_env({}).download_link_ttl_days == 30
    assert Settings.from_env({"DOWNLOAD_LINK_TTL_DAYS": "7"}).download_link_ttl_days == 7
    for bad in ("0", "-1", "1.5", "forever", "3651"):
        with pytest.raises(ConfigError, match="DOWNLOAD_LINK_TTL_DAYS"):
            Settings.from_env({"DOWNLOAD_LINK_TTL_DAYS": bad})
