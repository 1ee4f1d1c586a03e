"""The verification page (`GET /verify`, `POST /verify`): zh-CN first with English beside, one HTML page
with inline CSS (nothing from a CDN). Opened from an invoice's QR URL it checks the QR's signature against
our published key and verifies at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Request, Response, get, post
from litestar.di import NamedDependency

from invoicing.errors import RateLimited, Unavailable, ValidationFailed
from verification.model import OUTCOME_TEXT, RECEIPT_REFUSAL_TEXT, fields_from_qr, parse_query
from verification.qr import QR_FIELDS, QrCheck, check_qr_params
from verification.services import Verification, verify
from verification.views import PublicApi, client_address

FORM_FIELDS = ("invoice_code", "invoice_number", "issue_date", "check_code_last6", "total_amount", "phone")
_ENV = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape())
# Colour of each outcome on the page: good, warning, bad.
TONE = {
    "valid": "good",
    "voided": "warn",
    "reversed": "warn",
    "partially_credited": "warn",
    "locked": "warn",
    "mismatch": "bad",
    "not_found": "bad",
    "tampered": "bad",
}
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}


def render(status: int = 200, **context: Any) -> Response[str]:
    """The page with this context (form values, result, QR check, errors)."""
    html = _ENV.get_template("verify.html").render(**context)
    return Response(html, status_code=status, media_type="text/html; charset=utf-8", headers=_HEADERS)


def error_page(status: int, retry_after_s: int | None = None, form: dict[str, str] | None = None) -> Response[str]:
    """The page saying the check could not be carried out: the service is briefly unavailable (503, with
    Retry-After) or failed unexpectedly (500); the form keeps what was asked when it is known."""
    response = render(status, form=form or {}, failure=status, retry_after=retry_after_s)
    if retry_after_s is not None:
        response.headers["Retry-After"] = str(retry_after_s)
    return response


def _result_context(result: Verification, qr: QrCheck | None) -> dict[str, Any]:
    zh, en = OUTCOME_TEXT[result.outcome]
    return {
        "result": result.outcome,
        "tone": TONE[result.outcome],
        "zh": zh,
        "en": en,
        "invoice": result.invoice,
        "times_verified": result.times_verified,
        "receipt": result.receipt,
        "receipt_reason": RECEIPT_REFUSAL_TEXT[result.receipt_reason] if result.receipt_reason else None,
        "first_verified_at": result.first_verified_at.strftime("%Y-%m-%d %H:%M UTC")
        if result.first_verified_at
        else None,
        "qr": qr,
        "tamper_reason": result.tamper_reason,
        "log": result.log,
    }


async def _answer(
    request: Request[Any, Any, Any], public_api: PublicApi, fields: dict[str, str], qr: QrCheck | None
) -> Response[str]:
    """Verify `fields` and render the result; field errors and the rate limit are shown on the page."""
    verifier = public_api.verifier
    client = client_address(request)
    shown = {k: v for k, v in fields.items() if k != "phone"}
    try:
        query = parse_query(fields)
    except ValidationFailed as exc:
        return render(422, form=shown, errors={e.field: e.message for e in exc.errors}, qr=qr)
    trusted = qr is not None and qr.valid
    requester = verifier.requester(
        "web", client, query.phone, via_qr=trusted, full_check_code=qr.fields["k"] if trusted and qr else None
    )
    try:
        result = await verify(verifier, query, requester)
    except RateLimited as exc:
        response = render(429, form=shown, limited=exc.retry_after_s)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except Unavailable as exc:
        return error_page(503, exc.retry_after_s, shown)
    return render(form=shown, **_result_context(result, qr))


@get("/verify", tags=["verification"], include_in_schema=False)
async def verify_page(request: Request[Any, Any, Any], public_api: NamedDependency[PublicApi]) -> Response[str]:
    """The form; opened from a QR URL (`?c=&n=&d=&...`) it fills itself and shows the result at once."""
    params = {k: v for k, v in request.query_params.items() if isinstance(v, str)}
    if not any(name in params for name in QR_FIELDS):
        return render(form={})
    ring = public_api.verifier.keyring.current()
    trusted = ring.keys.get(params.get("kid", ""))
    keys = {trusted.key_id: trusted.public_raw} if trusted else {}
    revoked = {trusted.key_id: trusted.revoked_since} if trusted and trusted.revoked_since else {}
    qr = check_qr_params(params, keys, revoked)
    fields = fields_from_qr(params)
    day = fields.get("issue_date", "")
    if len(day) == 8 and day.isdigit():  # shown in the form as YYYY-MM-DD
        fields["issue_date"] = f"{day[:4]}-{day[4:6]}-{day[6:]}"
    return await _answer(request, public_api, fields, qr)


@post("/verify", tags=["verification"], include_in_schema=False, request_max_body_size=16 * 1024)
async def verify_form(request: Request[Any, Any, Any], public_api: NamedDependency[PublicApi]) -> Response[str]:
    """The form's answer as a page (the same field names as `POST /v1/verifications`)."""
    form = await request.form()
    fields = {name: str(form.get(name) or "") for name in FORM_FIELDS}  # empty fields count as absent
    return await _answer(request, public_api, fields, None)
