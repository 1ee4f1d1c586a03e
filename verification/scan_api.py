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
from verification.qr import QrCheck
from verification.services import Verification, Verifier, prove
from verification.views import PublicApi, client_address

MULTIPART = ("multipart/form-data",)
MAX_CODES = 20  # distinct invoice QR codes verified per file; more are left unread (each counts against the rate)


async def verify_file(
    verifier: Verifier, content: bytes, channel: str, client: str
) -> list[tuple[QrCheck, Verification]]:
    """Every distinct invoice QR code of the file (at most MAX_CODES, in the order found), verified as opening its
    link does; 422 naming `file` when there is none or the file cannot be read. The file counts against the
    client's rate before it is read, and each code verified once more."""
    await verifier.limits.charge(verifier.hash("client", client))
    found: list[tuple[QrCheck, Verification]] = []
    for text in dict.fromkeys(await verifier.scanner.read_codes(content)):
        params = link_params(text)
        if params is None:
            continue
        try:
            found.append(await verify_link(verifier, params, channel, client))
        except ValidationFailed:  # a link whose fields name no invoice: not an invoice QR code
            continue
        if len(found) == MAX_CODES:
            break
    if not found:
        raise scan.refused("no invoice QR code was found in it")
    return found


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
    multipart field `file`: `results` holds, per code, the answer of `POST /v1/verifications` (API.md), with the
    code's fields (`qr`) and whether its signature checks (`qr_check`) beside them. 422 naming `file` when no invoice QR code is found
    or the file cannot be read (not a PNG, JPEG or PDF; more pixels or pages than allowed; too slow to read)."""
    verifier = public_api.verifier
    client = client_address(request)
    if data.altcha:
        await prove(verifier, verifier.hash("client", client), data.altcha)
    found = await verify_file(verifier, await data.file.read(), "json", client)
    results = [
        {**verification_json(result), "qr": qr.fields, "qr_check": {"valid": qr.valid, "reason": qr.reason}}
        for qr, result in found
    ]
    return {"results": results}
