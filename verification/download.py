"""`GET /d/{token}`: the buyer's signed download link (issue 14 item 1), texted with the invoice, its void or a
credit note (`invoicing.buyer_texts`). No key: the token is the permission, for one record, until it expires.

Each request counts against the client's rate (the verification rate, `Limits.charge`) before the token is
looked at, so a flood of guessed tokens is refused like any other public flood. A token that is not exactly one
we signed answers 404, as an unknown record would; one we signed whose time is up answers 410 (only its holder
learns that). The token is never logged: the access log is off and the errors carry no path."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from invoicing import formats, repository
from invoicing.buyer_texts import PATH, BadToken, ExpiredToken, link_key, read_token
from invoicing.errors import Gone, NotFound
from invoicing.pdf import render_invoice_pdf
from verification.views import PublicApi, client_address

HEADERS = {
    "Cache-Control": "private, no-store",  # the link is a capability: no shared cache keeps what it opened
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}


@get(PATH + "{token:str}", tags=["consumers"], media_type="application/pdf")
async def download(
    request: Request[Any, Any, Any], public_api: NamedDependency[PublicApi], token: FromPath[str]
) -> Response[bytes]:
    """The PDF of the record a texted download link names, as it stands now (a voided invoice shows voided). 404
    for a link we did not sign, 410 for one that has expired (DOWNLOAD_LINK_TTL_DAYS after it was sent)."""
    verifier = public_api.verifier
    await verifier.limits.charge(verifier.hash("client", client_address(request)))
    try:
        link = read_token(link_key(verifier.secret), token, time.time())
    except BadToken:
        raise NotFound("no such download link") from None
    except ExpiredToken:
        raise Gone(
            "this download link has expired: verify the invoice on /verify, or ask the seller to send it again"
        ) from None
    async with verifier.pool.acquire() as conn:  # the primary: a link texted a moment ago must open
        row = await repository.get_invoice_row_by_identity(conn, link.invoice_code, link.invoice_number)
    inv = repository.to_invoice(row) if row is not None else None
    if inv is None or (inv.kind == "credit_note") != (link.kind == "credit_note"):
        raise NotFound("no such download link")
    pdf = await asyncio.to_thread(render_invoice_pdf, inv, formats.verify_url(public_api.public_base_url, inv))
    name = f"fapiao-{inv.invoice_code}-{inv.invoice_number}.pdf"
    return Response(
        pdf, media_type="application/pdf", headers={**HEADERS, "Content-Disposition": f'inline; filename="{name}"'}
    )
