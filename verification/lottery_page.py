"""The lottery page (`GET /lottery`, `POST /lottery`): register an invoice, and each period's commitment, entries
root, draw and winners (phones masked). zh-CN first with English beside; the verify page's stylesheet, no inline
script or style. The form runs under litestar's double-submit CSRF token (its own cookie, path `/lottery`) and the
same same-site check as the verify page's form; registration is `lottery_services.register`, which verifies the
invoice as the verify page does (rate, locks, proof of work)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency

from invoicing.errors import Conflict, RateLimited, Unavailable, ValidationFailed
from invoicing.http import ACCEPTS, FORM
from invoicing.model import beijing_time, money_str
from verification import lottery as rules
from verification import lottery_services as lottery
from verification.challenge import ChallengeRequired
from verification.model import parse_query
from verification.views import PublicApi, client_address
from verification.web import FORM_FIELDS, PAGE_HEADERS, TEMPLATES, check_same_site, csrf_router, csrf_token

CSRF_COOKIE = "lottery_csrf"
PREFILL = ("invoice_code", "invoice_number", "issue_date")  # what the verify page's offer carries (never the code)
STATUS_TEXT = {
    "open": ("登记中", "open"),
    "closed": ("已截止，待开奖", "closed, to be drawn"),
    "drawn": ("已开奖", "drawn"),
}


async def _render(public_api: PublicApi, status: int = 200, **context: Any) -> Response[str]:
    """The page: the form with `context`, the rules and the latest periods."""
    lot = public_api.lottery
    assert lot is not None
    periods = await lottery.recent(lot)
    for period in periods:
        period["status_text"] = STATUS_TEXT[period["status"]]
        period["closes_local"] = beijing_time(rules.closes_at(period["period"]) - timedelta(minutes=1))  # 23:59
        names = {p["tier"]: p["name"] for p in period["prizes"]}
        for winner in period.get("winners", []):
            winner["name"] = names.get(winner["tier"], str(winner["tier"]))
    html = TEMPLATES.get_template("lottery.html").render(
        periods=periods,
        min_total=money_str(lot.min_total),
        per_day=rules.PHONE_ENTRIES_PER_DAY,
        prizes=rules.prizes_json(lot.prizes),
        form=context.pop("form", {}),
        **context,
    )
    return Response(html, status_code=status, media_type="text/html", headers=PAGE_HEADERS)


@get("/lottery", tags=["lottery"], include_in_schema=False)
async def lottery_page(request: Request[Any, Any, Any], public_api: NamedDependency[PublicApi]) -> Response[str]:
    """The form (filled with the invoice's code, number and date when the verify page offered it) and the periods."""
    form = {k: v for k, v in request.query_params.items() if k in PREFILL and isinstance(v, str) and len(v) <= 20}
    return await _render(public_api, form=form, csrf_token=csrf_token(request))


@post("/lottery", tags=["lottery"], include_in_schema=False, request_max_body_size=16 * 1024, opt={ACCEPTS: FORM})
async def lottery_form(request: Request[Any, Any, Any], public_api: NamedDependency[PublicApi]) -> Response[str]:
    """Register the form's invoice; the answer or the refusal on the page. Only from this site's own page."""
    check_same_site(request, public_api.public_base_url)
    data = await request.form()
    fields = {name: str(data.get(name) or "") for name in FORM_FIELDS}
    shown = {k: v for k, v in fields.items() if k in PREFILL}
    csrf = csrf_token(request)
    lot = public_api.lottery
    assert lot is not None
    try:
        query = parse_query(fields)
        requester = lot.verifier.requester("web", client_address(request), query.phone)
        entry = await lottery.register(lot, query, requester, altcha=str(data.get("altcha") or "") or None)
    except ValidationFailed as exc:
        return await _render(
            public_api, 422, form=shown, errors={e.field: e.message for e in exc.errors}, csrf_token=csrf
        )
    except ChallengeRequired as exc:
        return await _render(public_api, 428, form=shown, challenge=json.dumps(exc.challenge), csrf_token=csrf)
    except Conflict as exc:
        return await _render(public_api, 409, form=shown, refused=exc.detail, csrf_token=csrf)
    except RateLimited as exc:
        response = await _render(public_api, 429, form=shown, refused=exc.detail, csrf_token=csrf)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except Unavailable as exc:
        response = await _render(public_api, 503, form=shown, refused=exc.detail, csrf_token=csrf)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    return await _render(public_api, 201, entry=entry, csrf_token=csrf)


def lottery_page_router(csrf_secret: str, public_base_url: str) -> Router:
    """The page's routes under the CSRF middleware (a cookie of its own, path `/lottery`)."""
    return csrf_router(csrf_secret, public_base_url, CSRF_COOKIE, "/lottery", [lottery_page, lottery_form])
