"""The verification page (`GET /verify`, `POST /verify`): zh-CN first with English beside, one HTML page
with its stylesheet served from the package (nothing from a CDN, no inline script or style). Opened from an
invoice's QR URL it checks the QR's signature against our published key and verifies at once.

A page on another site cannot make its visitors verify (and be texted) through this form: the form carries
litestar's double-submit CSRF token (a cookie and a hidden field, HMAC-signed), and a post whose `Origin` or
`Sec-Fetch-Site` says it comes from another site is refused (403, on the page) before anything is checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Request, Response, Router, get, post
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.static_files import create_static_files_router
from litestar.utils.scope.state import ScopeState

from invoicing.errors import Forbidden, RateLimited, Unavailable, ValidationFailed
from invoicing.http import ACCEPTS, FORM
from invoicing.model import beijing_time
from verification import scan
from verification.bulk import MAX_ITEMS
from verification.challenge import ChallengeRequired
from verification.links import check_link, is_link, link_form, link_requester
from verification.model import OUTCOME_TEXT, RECEIPT_REFUSAL_TEXT, differing_text, parse_query
from verification.qr import QrCheck
from verification.scan_api import verify_file
from verification.services import Verification, verify
from verification.views import PublicApi, client_address

FORM_FIELDS = ("invoice_code", "invoice_number", "issue_date", "check_code_last6", "total_amount", "phone")
# The public pages' templates (verify, lottery, the closed loop), one environment for all of them.
TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape())
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
# The page runs no inline script or style: scripts and styles only from this origin's files ('self', where a
# widget's script may be added), no framing by any site (clickjacking), forms posted only to this origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "worker-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",  # same-origin, not no-referrer: with no-referrer the form's posts say `Origin: null`
    "X-Content-Type-Options": "nosniff",
}
STATIC = Path(__file__).parent / "static"


async def _nosniff(response: Response[Any]) -> Response[Any]:
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# The page's stylesheet and the proof-of-work widget with its loader, from the package: `/static/verify/<file>`.
verify_static = create_static_files_router(
    "/static/verify", directories=[STATIC], name="verify-static", include_in_schema=False, after_request=_nosniff
)


CSRF_COOKIE = "verify_csrf"
_SAME_SITE = frozenset({"same-origin", "none"})  # Sec-Fetch-Site of our own page's post, or of a typed URL


def render(status: int = 200, **context: Any) -> Response[str]:
    """The page with this context (form values, result, QR check, errors, the form's `csrf_token`)."""
    html = TEMPLATES.get_template("verify.html").render(bulk_max=MAX_ITEMS, **context)
    return Response(html, status_code=status, media_type="text/html", headers=PAGE_HEADERS)


def csrf_token(request: Request[Any, Any, Any]) -> str | None:
    """The CSRF token the page's form carries (set by the CSRF middleware; None where it does not run)."""
    token = ScopeState.from_scope(request.scope).csrf_token
    return token if isinstance(token, str) else None


def error_page(
    status: int, retry_after_s: int | None = None, form: dict[str, str] | None = None, csrf: str | None = None
) -> Response[str]:
    """The page saying the check could not be carried out: the service is briefly unavailable (503, with
    Retry-After), failed unexpectedly (500), or the form was not sent from this site's page (403); the form
    keeps what was asked when it is known."""
    response = render(status, form=form or {}, failure=status, retry_after=retry_after_s, csrf_token=csrf)
    if retry_after_s is not None:
        response.headers["Retry-After"] = str(retry_after_s)
    return response


def _result_context(result: Verification, qr: QrCheck | None) -> dict[str, Any]:
    zh, en = differing_text(result.differs) if result.differs else OUTCOME_TEXT[result.outcome]
    return {
        "result": result.outcome,
        "tone": TONE[result.outcome],
        "zh": zh,
        "en": en,
        "invoice": result.invoice,
        "times_verified": result.times_verified,
        "receipt": result.receipt,
        "receipt_reason": RECEIPT_REFUSAL_TEXT[result.receipt_reason] if result.receipt_reason else None,
        "first_verified_at": beijing_time(result.first_verified_at) if result.first_verified_at else None,
        "qr": qr,
        "tamper_reason": result.tamper_reason,
        "log": result.log,
    }


def challenge_page(exc: ChallengeRequired, form: dict[str, str], qr: QrCheck | None, csrf: str | None) -> Response[str]:
    """428: the form, still filled in (with its CSRF token), with the self-hosted ALTCHA widget holding the
    challenge."""
    return render(
        428, form=form, qr=qr, challenge=json.dumps(exc.challenge), challenge_reason=exc.reason, csrf_token=csrf
    )


async def _answer(
    request: Request[Any, Any, Any],
    public_api: PublicApi,
    fields: dict[str, str],
    qr: QrCheck | None,
    altcha: str | None = None,
) -> Response[str]:
    """Verify `fields` and render the result; field errors and the rate limit are shown on the page."""
    verifier = public_api.verifier
    client = client_address(request)
    shown = {k: v for k, v in fields.items() if k != "phone"}
    csrf = csrf_token(request)
    try:
        query = parse_query(fields)
    except ValidationFailed as exc:
        return render(422, form=shown, errors={e.field: e.message for e in exc.errors}, qr=qr, csrf_token=csrf)
    requester = link_requester(verifier, "web", client, query.phone, qr)
    try:
        result = await verify(verifier, query, requester, altcha=altcha)
    except ChallengeRequired as exc:
        return challenge_page(exc, shown, qr, csrf)
    except RateLimited as exc:
        response = render(429, form=shown, limited=exc.retry_after_s, csrf_token=csrf)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except Unavailable as exc:
        return error_page(503, exc.retry_after_s, shown, csrf)
    return render(form=shown, csrf_token=csrf, **_result_context(result, qr))


@get("/verify", tags=["verification"], include_in_schema=False)
async def verify_page(request: Request[Any, Any, Any], public_api: NamedDependency[PublicApi]) -> Response[str]:
    """The form; opened from a QR URL (`?c=&n=&d=&...`) it fills itself and shows the result at once."""
    params = {k: v for k, v in request.query_params.items() if isinstance(v, str)}
    if not is_link(params):
        return render(form={}, csrf_token=csrf_token(request))
    return await _answer(request, public_api, link_form(params), check_link(public_api.verifier, params))


def origin_of(url: str) -> str:
    """The origin (`scheme://host[:port]`) of an absolute URL, as a browser sends it in `Origin`."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].lower()
    default = {"http": ":80", "https": ":443"}.get(scheme.lower(), "")
    return f"{scheme.lower()}://{host.removesuffix(default) if default else host}"


def check_same_site(request: Request[Any, Any, Any], public_base_url: str) -> None:
    """Refuse (403) a post that its browser says comes from another site: `Sec-Fetch-Site` other than
    same-origin (or none, a typed URL), or an `Origin` other than PUBLIC_BASE_URL's (`null` included)."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if (site is not None and site.lower() not in _SAME_SITE) or (
        origin is not None and origin.lower() != origin_of(public_base_url)
    ):
        raise Forbidden("the verification form must be sent from this site's own page")


@post(
    "/verify",
    tags=["verification"],
    include_in_schema=False,
    request_max_body_size=16 * 1024,
    opt={ACCEPTS: FORM},
)
async def verify_form(request: Request[Any, Any, Any], public_api: NamedDependency[PublicApi]) -> Response[str]:
    """The form's answer as a page (the same field names as `POST /v1/verifications`), only from this site's own
    page: the CSRF middleware of `page_router` checked the token, this checks the browser's word on the origin."""
    check_same_site(request, public_api.public_base_url)
    form = await request.form()
    fields = {name: str(form.get(name) or "") for name in FORM_FIELDS}  # empty fields count as absent
    return await _answer(request, public_api, fields, None, str(form.get("altcha") or "") or None)


@post(
    "/verify/scan",
    tags=["verification"],
    include_in_schema=False,
    request_max_body_size=scan.MAX_BYTES,
    opt={ACCEPTS: ("multipart/form-data",)},
)
async def verify_scan_form(request: Request[Any, Any, Any], public_api: NamedDependency[PublicApi]) -> Response[str]:
    """The page's upload (a photo taken on the phone, or a PDF): every invoice QR code in it verified as
    `POST /v1/verifications/scan` does, shown as a list of results; only from this site's own page (CSRF, origin)."""
    check_same_site(request, public_api.public_base_url)
    csrf = csrf_token(request)
    upload = (await request.form()).get("file")
    if not isinstance(upload, UploadFile):
        return render(422, form={}, errors={"file": "请选择发票照片或 PDF · choose a photo or a PDF"}, csrf_token=csrf)
    try:
        found = await verify_file(public_api.verifier, await upload.read(), "web", client_address(request))
    except ValidationFailed as exc:
        return render(422, form={}, errors={e.field: e.message for e in exc.errors}, csrf_token=csrf)
    except RateLimited as exc:
        response = render(429, form={}, limited=exc.retry_after_s, csrf_token=csrf)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except ChallengeRequired:  # a forged code on a hot invoice: the typed form, with its proof of work, is the way
        return render(
            428, form={}, errors={"file": "请手动输入查验 · please verify by typing the details"}, csrf_token=csrf
        )
    except Unavailable as exc:
        return error_page(503, exc.retry_after_s, csrf=csrf)
    return render(form={}, csrf_token=csrf, scans=[_result_context(result, qr) for qr, result in found])


def csrf_router(csrf_secret: str, public_base_url: str, cookie: str, path: str, handlers: list[Any]) -> Router:
    """A page's routes under litestar's CSRF middleware: a GET sets the cookie `cookie` for `path` (HttpOnly,
    SameSite=Strict, Secure on https) and gives the form its token; a POST without a matching, signed pair is
    refused (403)."""
    csrf = CSRFConfig(
        secret=csrf_secret,
        cookie_name=cookie,
        cookie_path=path,
        cookie_httponly=True,
        cookie_samesite="strict",
        cookie_secure=public_base_url.startswith("https://"),
    )
    return Router(path="/", route_handlers=handlers, middleware=[DefineMiddleware(CSRFMiddleware, config=csrf)])


def page_router(csrf_secret: str, public_base_url: str) -> Router:
    """The verify page's routes (the form, and the CSV upload of `bulk_page`) under the CSRF middleware."""
    from verification.bulk_page import verify_csv, verify_csv_download  # it builds on this module's page

    handlers = [verify_page, verify_form, verify_scan_form, verify_csv, verify_csv_download]
    return csrf_router(csrf_secret, public_base_url, CSRF_COOKIE, "/verify", handlers)
