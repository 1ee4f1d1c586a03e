"""Verify in bulk on the page: `POST /verify/batch` takes a CSV (multipart, field `csv`, with the CSRF token) and
shows a table of results; `POST /verify/batch.csv` gives those results back as a CSV file. Both run under the
page's CSRF middleware and same-site check (`web.page_router`). Every row is verified by `services.verify_many`, so
it counts against the client's rate and locks like a lone check; a row over the rate answers `rate_limited`, one on
an invoice that wants a proof of work `challenge_required` (the clerk verifies that one on its own, in the form)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from litestar import Request, Response, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency

from invoicing.errors import Unavailable, ValidationFailed
from invoicing.http import ACCEPTS, FORM
from verification.api import verification_json
from verification.bulk import (
    CSV_MAX_BYTES,
    read_csv,
    refusal_json,
    result_row,
    results_csv,
    sign_results,
    signed_results,
)
from verification.model import VerificationQuery, parse_query
from verification.services import Verification, verify_many
from verification.views import PublicApi, client_address
from verification.web import TONE, check_same_site, csrf_token, error_page, render

REFUSAL_TONE = {"rate_limited": "warn", "challenge_required": "warn", "invalid": "bad"}
DOWNLOAD_MAX_BYTES = 512 * 1024  # 200 signed result rows are about 80 KB


def _refused(status: int, zh: str, en: str, csrf: str | None) -> Response[str]:
    return render(status, form={}, bulk_error=(zh, en), csrf_token=csrf)


@post(
    "/verify/batch",
    status_code=200,
    include_in_schema=False,
    request_max_body_size=CSV_MAX_BYTES + 16 * 1024,
    opt={ACCEPTS: ("multipart/form-data",)},
)
async def verify_csv(request: Request[Any, Any, Any], public_api: NamedDependency[PublicApi]) -> Response[str]:
    """The uploaded CSV's rows verified, shown as a table with a form to download them as CSV."""
    check_same_site(request, public_api.public_base_url)
    csrf = csrf_token(request)
    upload = (await request.form()).get("csv")
    if not isinstance(upload, UploadFile):
        return _refused(422, "请选择 CSV 文件", "choose a CSV file", csrf)
    data = await upload.read(CSV_MAX_BYTES + 1)
    if len(data) > CSV_MAX_BYTES:
        return _refused(
            413, f"文件超过 {CSV_MAX_BYTES // 1024} KB", f"the file is over {CSV_MAX_BYTES // 1024} KB", csrf
        )
    try:
        fields = read_csv(data)
    except ValidationFailed as exc:
        return _refused(422, "CSV 文件格式有误", f"the file {exc.errors[0].message}", csrf)
    queries: list[VerificationQuery | ValidationFailed] = []
    for row in fields:
        try:
            queries.append(parse_query(row))
        except ValidationFailed as exc:
            queries.append(exc)
    verifier = public_api.verifier
    requester = verifier.requester("web", client_address(request))
    try:
        answers = iter(
            await verify_many(verifier, [(q, requester) for q in queries if isinstance(q, VerificationQuery)])
        )
    except Unavailable as exc:
        return error_page(503, exc.retry_after_s, None, csrf)
    rows = []
    for number, (row, query) in enumerate(zip(fields, queries, strict=True), start=1):
        if isinstance(query, ValidationFailed):
            answer: dict[str, Any] = {"result": "invalid", "errors": query.errors}
        else:
            got = next(answers)
            answer = verification_json(got) if isinstance(got, Verification) else refusal_json(got)
        rows.append(result_row(number, row, answer))
    return _results_page(verifier.secret, rows, csrf)


def _results_page(secret: bytes, rows: list[dict[str, str]], csrf: str | None) -> Response[str]:
    payload, signature = sign_results(secret, rows)
    shown = [{**r, "tone": TONE.get(r["result"]) or REFUSAL_TONE[r["result"]]} for r in rows]
    limited = [int(r["retry_after"]) for r in rows if r["result"] == "rate_limited"]
    all_limited = bool(limited) and len(limited) == sum(r["result"] != "invalid" for r in rows)
    response = render(
        429 if all_limited else 200,
        form={},
        csrf_token=csrf,
        bulk_rows=shown,
        bulk_counts=sorted(Counter(r["result"] for r in rows).items()),
        bulk_payload=payload,
        bulk_signature=signature,
        limited=max(limited) if limited else None,
    )
    if all_limited:
        response.headers["Retry-After"] = str(max(limited))
    return response


@post(
    "/verify/batch.csv",
    status_code=200,
    include_in_schema=False,
    request_max_body_size=DOWNLOAD_MAX_BYTES,
    opt={ACCEPTS: FORM},
)
async def verify_csv_download(request: Request[Any, Any, Any], public_api: NamedDependency[PublicApi]) -> Response[str]:
    """The results the page showed, as `text/csv` (UTF-8 with a BOM, so that spreadsheets read the Chinese), every
    cell through the spreadsheet rule. Only results this service signed: nothing is verified again."""
    check_same_site(request, public_api.public_base_url)
    form = await request.form()
    try:
        rows = signed_results(
            public_api.verifier.secret, str(form.get("results") or ""), str(form.get("signature") or "")
        )
    except (ValueError, TypeError, AttributeError):  # signed but not ours? never; still no 500
        rows = None
    if rows is None:
        return _refused(
            422, "结果已失效，请重新上传", "these results cannot be downloaded: upload again", csrf_token(request)
        )
    return Response(
        "\ufeff" + results_csv(rows),
        status_code=200,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="verification-results.csv"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
