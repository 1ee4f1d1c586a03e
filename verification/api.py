"""Public verification over HTTP (API.md "Public verification"): the JSON endpoint here, the page (`web`) and
the SMS webhook (`inbound`). The composition root provides each route's `PublicApi` as `public_api`."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from invoicing import formats
from invoicing.errors import FieldError, RateLimited, ValidationFailed
from invoicing.http import Strict
from verification.bulk import MAX_ITEMS, refusal_json
from verification.challenge import ChallengeRequired
from verification.model import OUTCOME_TEXT, VerificationQuery, parse_query
from verification.services import Verification, verify, verify_many
from verification.views import PublicApi, client_address


class VerificationIn(Strict):
    """`POST /v1/verifications`: identity, date, and the check code's last 6 or the amount excl. tax."""

    invoice_code: str | None = None
    invoice_number: str | None = None
    issue_date: str | None = None
    check_code_last6: str | None = None
    total_amount: str | None = None
    phone: str | None = None
    altcha: str | None = None  # a solved proof of work, after a 428 (API.md "Challenges")


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
    if result.differs:  # only from a QR link (the page today): which of its figures are not the record's
        body["differs"] = list(result.differs)
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
    locked or tampered; `phone` asks for an SMS receipt. 429 with Retry-After over the rate limit; 428 with a
    `challenge` (ALTCHA) when guessing concentrates on the invoice: send again with `altcha` set to the solution."""
    verifier = public_api.verifier
    query = parse_query(msgspec.structs.asdict(data))
    requester = verifier.requester("json", client_address(request), query.phone)
    result = await verify(verifier, query, requester, altcha=data.altcha)
    return verification_json(result)


class VerificationBatchIn(Strict):
    """`POST /v1/verifications/batch`: 1 to `MAX_ITEMS` items, each what `POST /v1/verifications` takes (without
    `altcha`: a proof of work is sent once, for the batch)."""

    items: list[VerificationIn]
    altcha: str | None = None


BATCH_MAX_BYTES = MAX_ITEMS * 512  # an item is about 150 bytes; 413 over this


@post(
    "/v1/verifications/batch",
    status_code=200,
    tags=["verification"],
    request_max_body_size=BATCH_MAX_BYTES,
)
async def create_verification_batch(
    request: Request[Any, Any, Any], public_api: NamedDependency[PublicApi], data: JSONBody[VerificationBatchIn]
) -> Response[dict[str, Any]]:
    """Verify up to 200 invoices: `results` holds each item's answer, in order, as `POST /v1/verifications`
    answers it. Every item counts against the client's rate and locks: an item over the rate answers
    `{"result": "rate_limited", "retry_after": N}`, one on an invoice that wants a proof of work
    `{"result": "challenge_required"}` (the answer then carries `challenge`: solve it and send the batch again with
    `altcha`). 429 with Retry-After when not one item got past the rate; 422 naming `items[i].field`."""
    verifier = public_api.verifier
    queries = _batch_queries(data)
    client = client_address(request)
    requesters = [verifier.requester("json", client, q.phone) for q in queries]
    answers = await verify_many(verifier, list(zip(queries, requesters, strict=True)), altcha=data.altcha)
    if all(isinstance(a, RateLimited) for a in answers):
        first = answers[0]
        assert isinstance(first, RateLimited)
        raise first
    body: dict[str, Any] = {
        "results": [verification_json(a) if isinstance(a, Verification) else refusal_json(a) for a in answers]
    }
    challenge = next((a.challenge for a in answers if isinstance(a, ChallengeRequired)), None)
    if challenge is not None:
        body["challenge"] = challenge
    return Response(body, status_code=200)


def _batch_queries(data: VerificationBatchIn) -> list[VerificationQuery]:
    """Each item's query; `ValidationFailed` naming `items` (the count) or every `items[i].field` at fault."""
    if not 1 <= len(data.items) <= MAX_ITEMS:
        why = f"must hold 1 to {MAX_ITEMS} items, this one has {len(data.items)}: split it"
        raise ValidationFailed([FieldError("items", why)])
    queries: list[VerificationQuery] = []
    errors: list[FieldError] = []
    for index, item in enumerate(data.items):
        if item.altcha is not None:
            errors.append(FieldError(f"items[{index}].altcha", "send the proof of work once, as the batch's altcha"))
        try:
            queries.append(parse_query(msgspec.structs.asdict(item)))
        except ValidationFailed as exc:
            errors += [FieldError(f"items[{index}].{e.field}", e.message) for e in exc.errors]
    if errors:
        raise ValidationFailed(errors)
    return queries
