"""Public verification over HTTP (API.md "Public verification"): the JSON endpoint, the page and the SMS
webhook (in `web` and `inbound`), and the start-up hook that builds the `Verifier` on `app.state`."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, post
from litestar.datastructures import State
from litestar.params import JSONBody

from invoicing import formats
from invoicing.api import Strict
from verification.inbound import sms_inbound
from verification.limits import LimitFigures, Limits
from verification.model import OUTCOME_TEXT, parse_query
from verification.services import Verification, Verifier, verify
from verification.views import client_address
from verification.web import verify_form, verify_page


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
    return body


@post("/v1/verifications", status_code=200, tags=["verification"], request_max_body_size=16 * 1024)
async def create_verification(
    request: Request[Any, Any, Any], state: State, data: JSONBody[VerificationIn]
) -> dict[str, Any]:
    """Verify an invoice: `result` is valid, mismatch, not_found, voided, reversed, partially_credited,
    locked or tampered; `phone` asks for an SMS receipt. 429 with Retry-After over the rate limit."""
    verifier: Verifier = state.verifier
    query = parse_query(msgspec.structs.asdict(data))
    result = await verify(verifier, query, verifier.asker("json", client_address(request), query.phone))
    return verification_json(result)


async def start_verifier(app: Any) -> None:
    """Build the `Verifier` of this process on `app.state.verifier`."""
    settings = app.state.settings
    limits = Limits(app.state.redis, LimitFigures.from_extra(settings.extra))
    app.state.verifier = Verifier(app.state.pool, limits, settings.secret_bytes(), app.state.queue)


ROUTES = [create_verification, verify_page, verify_form, sms_inbound]
STARTUP = [start_verifier]
