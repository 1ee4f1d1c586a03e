"""Public verification over HTTP (API.md "Public verification"): the JSON endpoint here, the page (`web`) and
the SMS webhook (`inbound`). The composition root provides each route's `PublicApi` as `public_api`."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from invoicing import formats
from invoicing.http import Strict
from verification.model import OUTCOME_TEXT, parse_query
from verification.services import Verification, verify
from verification.views import PublicApi, client_address


class VerificationIn(Strict):
    """`POST /v1/verifications`: identity, date, and the check code's last 6 or the amount excl. tax."""

    invoice_code: str | None = None
    invoice_number: str | None = None
    issue_date: str | None = None
    check_code_last6: str | None = None
    total_amount: str | None = None
    phone: str | None = None


def verification_json(result: Verification) -> dict[str, Any]:
    """The JSON answer of a verification."""
    zh, en = OUTCOME_TEXT[result.outcome]
    body: dict[str, Any] = {
        "result": result.outcome,
        "message": {"zh": zh, "en": en},
        "invoice": result.invoice,
        "times_verified": result.times_verified,
        "first_verified_at": formats.rfc3339(result.first_verified_at) if result.first_verified_at else None,
    }
    if result.receipt is not None:
        body["sms_receipt"] = result.receipt
    if result.receipt_reason is not None:
        body["sms_receipt_reason"] = result.receipt_reason
    if result.tamper_reason is not None:
        body["tamper_reason"] = result.tamper_reason
    if result.log is not None:
        body["log"] = result.log.as_json()
    return body


@get("/.well-known/jwks.json", tags=["verification"])
async def jwks(public_api: NamedDependency[PublicApi]) -> dict[str, Any]:
    """The keyring's public keys (never the database's), every one ever used to sign, so old invoices stay
    checkable after a rotation; a revoked key says since when and why (`revoked`)."""
    return public_api.verifier.keyring.current().jwks()


@post("/v1/verifications", status_code=200, tags=["verification"], request_max_body_size=16 * 1024)
async def create_verification(
    request: Request[Any, Any, Any], public_api: NamedDependency[PublicApi], data: JSONBody[VerificationIn]
) -> dict[str, Any]:
    """Verify an invoice: `result` is valid, mismatch, not_found, voided, reversed, partially_credited,
    locked or tampered; `phone` asks for an SMS receipt. 429 with Retry-After over the rate limit."""
    verifier = public_api.verifier
    query = parse_query(msgspec.structs.asdict(data))
    result = await verify(verifier, query, verifier.requester("json", client_address(request), query.phone))
    return verification_json(result)
