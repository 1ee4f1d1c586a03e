"""An invoice's QR link, verified: the one path that opening the link on the page (`GET /verify?c=&n=&...`) and a
scanned photo or PDF (`POST /v1/verifications/scan`) both take. The link's signature is checked against the
keyring (never the database); a link whose signature checks is no guess (`via_qr`: the guessing locks do not
apply, the client's rate still does) and its figures are compared with the record's."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

from verification.model import fields_from_qr, parse_query
from verification.qr import QR_FIELDS, QrCheck, check_qr_params
from verification.services import Requester, Verification, Verifier, verify


def is_link(params: Mapping[str, str]) -> bool:
    """The parameters carry QR fields: they are an invoice's QR link (checked or not)."""
    return any(name in params for name in QR_FIELDS)


def link_params(text: str) -> dict[str, str] | None:
    """The query of a URL read from a QR code (first value of each name), when it is an invoice's QR link."""
    try:
        query = parse_qs(urlsplit(text.strip()).query, keep_blank_values=True)
    except ValueError:
        return None
    params = {name: values[0] for name, values in query.items()}
    return params if is_link(params) else None


def check_link(verifier: Verifier, params: Mapping[str, str]) -> QrCheck:
    """The link's signature, checked against the keyring's key `kid` and its revocation."""
    ring = verifier.keyring.current()
    trusted = ring.keys.get(params.get("kid", ""))
    keys = {trusted.key_id: trusted.public_raw} if trusted else {}
    revoked = {trusted.key_id: trusted.revoked_since} if trusted and trusted.revoked_since else {}
    return check_qr_params(params, keys, revoked)


def link_form(params: Mapping[str, str]) -> dict[str, str]:
    """The verification fields the link carries (the issue date as YYYY-MM-DD, as the form shows it)."""
    fields = fields_from_qr(params)
    day = fields.get("issue_date", "")
    if len(day) == 8 and day.isdigit():
        fields["issue_date"] = f"{day[:4]}-{day[4:6]}-{day[6:]}"
    return fields


def link_requester(verifier: Verifier, channel: str, client: str, phone: str | None, qr: QrCheck | None) -> Requester:
    """Who asks: trusted (`via_qr`) only when the link's signature checked; the link's fields go along so its
    figures are compared with the record's."""
    trusted = qr is not None and qr.valid
    return verifier.requester(channel, client, phone, via_qr=trusted, qr_link=qr.fields if qr is not None else None)


async def verify_link(
    verifier: Verifier, params: Mapping[str, str], channel: str, client: str
) -> tuple[QrCheck, Verification]:
    """Verify the invoice a QR link names, exactly as opening the link does: `ValidationFailed` when its fields are
    no verification query, `RateLimited`, `ChallengeRequired` and `Unavailable` as for any verification."""
    qr = check_link(verifier, params)
    query = parse_query(link_form(params))
    result = await verify(verifier, query, link_requester(verifier, channel, client, query.phone, qr))
    return qr, result
