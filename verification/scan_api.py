"""`POST /v1/verifications/scan`: a photo or a PDF of invoices, every invoice QR code in it verified exactly as
opening its link does (`verification.links`). The scan itself counts against the client's rate before anything
is decoded, and each code verified counts again, as each opened link would."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body

from invoicing.errors import ValidationFailed
from invoicing.http import ACCEPTS
from verification import scan
from verification.api import verification_json
from verification.links import link_params, verify_link
from verification.services import prove
from verification.views import PublicApi, client_address

MULTIPART = ("multipart/form-data",)
MAX_CODES = 20  # distinct invoice QR codes verified per file; more are left unread (each counts against the rate)


@dataclass
class ScanIn:
    """The upload: one file, a PNG or JPEG photo or a PDF."""

    file: UploadFile
    altcha: str | None = None  # a solved proof of work, after a 428 (a code whose signature fails is a guess)


@post(
    "/v1/verifications/scan",
    status_code=200,
    tags=["verification"],
    request_max_body_size=scan.MAX_BYTES,
    opt={ACCEPTS: MULTIPART},
)
async def scan_verification(
    request: Request[Any, Any, Any],
    public_api: NamedDependency[PublicApi],
    data: Annotated[ScanIn, Body(media_type=RequestEncodingType.MULTI_PART)],
) -> dict[str, Any]:
    """Verify every invoice QR code in a photo (PNG, JPEG) or a PDF (up to 10 pages, 10 MB) sent as the
    multipart field `file`: `results` holds, per code, its fields (`qr`), whether its signature checks (`qr_check`)
    and the answer of `POST /v1/verifications` (`verification`). 422 naming `file` when no invoice QR code is found
    or the file cannot be read (not a PNG, JPEG or PDF; more pixels or pages than allowed; too slow to read)."""
    verifier = public_api.verifier
    client = client_address(request)
    await verifier.limits.charge(verifier.hash("client", client))
    if data.altcha:
        await prove(verifier, verifier.hash("client", client), data.altcha)
    texts = await scan.read_codes(await data.file.read())
    results: list[dict[str, Any]] = []
    for text in dict.fromkeys(texts):  # each distinct code once, in the order found
        params = link_params(text)
        if params is None:
            continue
        try:
            qr, result = await verify_link(verifier, params, "json", client)
        except ValidationFailed:  # a link whose fields name no invoice: not an invoice QR code
            continue
        results.append(
            {
                "qr": qr.fields,
                "qr_check": {"valid": qr.valid, "reason": qr.reason},
                "verification": verification_json(result),
            }
        )
        if len(results) == MAX_CODES:
            break
    if not results:
        raise scan.refused("no invoice QR code was found in it")
    return {"results": results}
