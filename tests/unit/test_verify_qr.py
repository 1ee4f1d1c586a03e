"""The offline QR check with a throwaway key, and the page template (pure: no server)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from invoicing import formats
from invoicing.keys import Signer, jwk
from verification.qr import check_qr_url, keys_from_jwks
from verification.web import render

SIGNER = Signer.from_private(Ed25519PrivateKey.generate())
FIELDS = {
    "c": "044012600111",
    "n": "00000001",
    "d": "20261127",
    "a": "200.00",
    "x": "26.00",
    "t": "226.00",
    "k": "12345678901234567890",
    "h": "ab" * 32,
}


def qr_url(**overrides: str) -> str:
    core = formats.signing_core(
        FIELDS["c"],
        FIELDS["n"],
        date(2026, 11, 27),
        Decimal("200.00"),
        Decimal("26.00"),
        Decimal("226.00"),
        FIELDS["k"],
        FIELDS["h"],
    )
    params = {**FIELDS, "s": SIGNER.sign(core), "kid": SIGNER.key_id, **overrides}
    return "https://verify.example/verify?" + urlencode(params)


def test_valid_and_each_way_it_fails() -> None:
    keys = keys_from_jwks({"keys": [jwk(SIGNER.key_id, SIGNER.public_raw), {"kty": "RSA", "kid": "x"}]})
    assert check_qr_url(qr_url(), keys).valid
    assert check_qr_url(qr_url(t="226.01"), keys).reason == "signature does not match"
    assert check_qr_url(qr_url(k="1" * 20), keys).reason == "signature does not match"
    assert check_qr_url(qr_url(kid="0" * 16), keys).reason.startswith("unknown key id")
    assert check_qr_url(qr_url(d="20261340"), keys).reason == "malformed fields: d"
    assert check_qr_url(qr_url(a="200"), keys).reason == "missing or malformed fields: a"
    assert not check_qr_url("", keys).valid


def test_page_escapes_and_shows_errors() -> None:
    html = render(
        422, form={"invoice_code": "<script>x</script>"}, errors={"invoice_code": "must be 12 digits"}
    ).content
    text = html.decode() if isinstance(html, bytes) else str(html)
    assert "&lt;script&gt;" in text and "<script>x" not in text and "must be 12 digits" in text
