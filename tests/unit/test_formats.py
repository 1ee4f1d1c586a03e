"""FORMATS.md in tests: the worked example of docs/formats.md re-derived independently, and
properties of the check code, canonical content and signatures."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from invoicing import formats
from invoicing.keys import b64url, b64url_decode, verify_signature
from invoicing.model import Invoice
from invoicing.numbering import Draft, FixedSigner, Issuing, placed, unplaced
from invoicing.repository import Issuer
from tests.unit.example_record import BASE_URL, KEY_SEED, SECRET, example_invoice, example_signer
from tests.unit.invoice_samples import invoices

DOC = Path(__file__).resolve().parents[2] / "docs" / "formats.md"


def vectors() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    return {m[1]: m[2].strip() for m in re.finditer(r"<!-- vector:(\w+) -->\n```\w*\n(.*?)\n```", text, re.S)}


def test_documented_example_recomputes_independently() -> None:
    v = vectors()
    mac = hmac.new(SECRET, v["check_message"].encode(), hashlib.sha256).digest()
    assert f"{int.from_bytes(mac[:16], 'big') % 10**20:020d}" == v["check_code"]
    assert hashlib.sha256(v["canonical"].encode("utf-8")).hexdigest() == v["record_hash"]
    content = json.loads(v["canonical"])
    assert json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False) == v["canonical"]
    assert content["check_code"] == v["check_code"] and v["signing_core"].endswith(v["record_hash"])
    public = Ed25519PrivateKey.from_private_bytes(KEY_SEED).public_key().public_bytes_raw()
    assert public.hex() == v["public_key_hex"] and hashlib.sha256(public).hexdigest()[:16] == v["key_id"]
    Ed25519PublicKey.from_public_bytes(public).verify(b64url_decode(v["signature"]), v["signing_core"].encode())
    assert f"s={v['signature']}&kid={v['key_id']}" in v["verify_url"]


def test_our_code_produces_the_documented_example() -> None:
    v, inv = vectors(), example_invoice()
    assert formats.canonical_bytes(formats.content_of(inv)).decode() == v["canonical"]
    assert (inv.check_code, inv.record_hash, inv.signature) == (v["check_code"], v["record_hash"], v["signature"])
    assert formats.invoice_signing_core(inv) == v["signing_core"]
    assert formats.content_signing_core(formats.content_of(inv), inv.record_hash) == v["signing_core"]
    assert example_signer().key_id == v["key_id"] and formats.verify_url(BASE_URL, inv) == v["verify_url"]
    assert inv.total_in_words == "贰佰贰拾陆元整"


def test_issuing_makes_the_documented_example_in_two_steps() -> None:
    """The issuing path makes a record before its series is locked (`unplaced`) and places it after (`placed`):
    the two steps must give the documented example byte for byte, and what they store must be `content_of` of the
    record they answer (which the audit and the verify page rebuild)."""
    v, example = vectors(), example_invoice()
    seller = example.seller
    issuer = Issuer(example.issuer_id, seller.name, seller.tax_id, "4401", seller.address, seller.phone)
    draft = Draft(example.kind, example.series, example.buyer, example.lines, example.delivery_method, example.remarks)
    issuing = Issuing(secret=SECRET, signers=FixedSigner(example_signer()))
    made = unplaced(draft, issuer, example.issued_at)
    inv, content, stored = placed(made, example.invoice_code, 1, formats.ZERO_HASH, issuing, example_signer())
    assert stored == v["canonical"] == formats.canonical_bytes(formats.content_of(inv)).decode()
    assert content == formats.content_of(inv)  # what the answer states
    assert (inv.check_code, inv.record_hash, inv.signature) == (v["check_code"], v["record_hash"], v["signature"])
    assert inv == replace(example, id=inv.id, delivery_status="pending")  # a postal invoice: its order is pending
    assert made.invoice.invoice_number == made.invoice.check_code == made.invoice.prev_hash == ""


def test_stored_content_rebuilds_the_same_invoice() -> None:
    inv = example_invoice()
    content = json.loads(formats.canonical_bytes(formats.content_of(inv)))
    again = formats.invoice_from_content(
        content,
        id=inv.id,
        issuer_id=inv.issuer_id,
        series=inv.series,
        status=inv.status,
        record_hash=inv.record_hash,
        signature=inv.signature,
        key_id=inv.key_id,
    )
    assert again == inv


@given(invoices())
def test_the_signing_core_from_stored_content_is_the_invoices(inv: Invoice) -> None:
    content = json.loads(formats.canonical_bytes(formats.content_of(inv)))  # as read back from the database
    assert formats.content_signing_core(content, inv.record_hash) == formats.invoice_signing_core(inv)


def _shuffled(value: Any, rnd: Any) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: _shuffled(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rnd) for v in value]
    return value


@settings(max_examples=100)
@given(st.randoms())
def test_canonical_bytes_do_not_depend_on_key_order(rnd: Any) -> None:
    content = formats.content_of(example_invoice())
    assert formats.canonical_bytes(_shuffled(copy.deepcopy(content), rnd)) == formats.canonical_bytes(content)


# What a JSON encoder can get wrong, drawn often: control characters, quotes, backslash, DEL, the line and
# paragraph separators, and non-ASCII in and beyond the BMP; any other character (but lone surrogates, which
# UTF-8 cannot carry) now and then. Short strings and few leaves keep a draw at a millisecond or two.
JSON_AWKWARD = [chr(c) for c in range(0x20)] + [
    '"',
    "\\",
    "/",
    "\x7f",
    "\u2028",
    "\u2029",
    "é",
    "中",
    "\uff01",
    "\U0001f600",
]
json_text = st.text(st.sampled_from(JSON_AWKWARD) | st.characters(codec="utf-8"), max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | json_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_text, inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=400)
@given(st.dictionaries(json_text, JSON_VALUES, max_size=6))
def test_canonical_bytes_are_exactly_the_documented_json_dumps_form(content: dict[str, Any]) -> None:
    """FORMATS.md defines the canonical form through json.dumps; the faster encoder must agree byte for
    byte on any JSON value: control characters, quotes, backslashes, U+2028, non-ASCII keys and order."""
    documented = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert formats.canonical_bytes(content) == documented


codes = st.integers(0, 10**12 - 1).map(lambda n: f"{n:012d}")
numbers = st.integers(1, 99_999_999).map(lambda n: f"{n:08d}")
days = st.dates(date(2020, 1, 1), date(2099, 12, 31))
totals = st.decimals(Decimal("-9999999999.99"), Decimal("9999999999.99"), places=2)


@settings(max_examples=300)
@given(codes, numbers, days, totals, st.binary(min_size=16, max_size=64))
def test_check_code_is_20_digits_and_matches_the_definition(
    code: str, number: str, day: date, total: Decimal, secret: bytes
) -> None:
    got = formats.check_code(secret, code, number, day, total)
    assert len(got) == 20 and got.isdigit()
    message = f"{code}|{number}|{day:%Y%m%d}|{total:.2f}".encode()
    expected = int.from_bytes(hmac.new(secret, message, hashlib.sha256).digest()[:16], "big") % 10**20
    assert int(got) == expected


@settings(max_examples=200)
@given(codes, numbers, days, totals, st.sampled_from(["code", "number", "day", "total", "secret"]))
def test_check_code_changes_with_any_input(code: str, number: str, day: date, total: Decimal, which: str) -> None:
    args: dict[str, Any] = {"secret": b"s" * 32, "code": code, "number": number, "issue_date": day, "total": total}
    before = formats.check_code(**args)
    bump = {
        "code": lambda c: c[:-1] + str((int(c[-1]) + 1) % 10),
        "number": lambda n: f"{int(n) % 99_999_999 + 1:08d}",
        "day": lambda d: d.replace(day=1) if d.day != 1 else d.replace(day=2),
        "total": lambda t: t + Decimal("0.01"),
        "secret": lambda s: s + b"!",
    }
    key = {"day": "issue_date"}.get(which, which)
    args[key] = bump[which](args[key])
    assert formats.check_code(**args) != before


@settings(max_examples=200)
@given(st.text(max_size=200), st.text(min_size=1, max_size=200))
def test_signatures_round_trip_and_bind_the_core(core: str, other: str) -> None:
    signer = example_signer()
    signature = signer.sign(core)
    assert verify_signature(signer.public_raw, core, signature)
    if other != core:
        assert not verify_signature(signer.public_raw, other, signature)
    assert not verify_signature(signer.public_raw, core, signature[:-2] + ("AA" if signature[-2:] != "AA" else "BA"))


@given(st.text(max_size=120), st.binary(max_size=70), st.integers(0, 63), st.integers(1, 255))
def test_signature_check_agrees_with_cryptography(core: str, junk: bytes, at: int, flip: int) -> None:
    """libsodium (our check) and cryptography (our signer) agree on good, altered and malformed signatures."""
    signer = example_signer()
    good = b64url_decode(signer.sign(core))
    altered = good[:at] + bytes([good[at] ^ flip]) + good[at + 1 :]
    public = Ed25519PublicKey.from_public_bytes(signer.public_raw)
    for raw in (good, altered, junk):
        try:
            public.verify(raw, core.encode())
            theirs = True
        except InvalidSignature:
            theirs = False
        assert verify_signature(signer.public_raw, core, b64url(raw)) is theirs
    assert not verify_signature(signer.public_raw[:31], core, b64url(good))  # a key of the wrong length
