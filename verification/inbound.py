"""`POST /v1/sms/inbound`: Twilio's inbound-message webhook. The signature is checked against the public
URL, a repeated MessageSid gets the first reply without verifying again, and the answer is TwiML."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency

from invoicing.errors import Forbidden
from invoicing.http import ACCEPTS, FORM
from verification import repository as vrepo
from verification.model import InvoiceSummary
from verification.services import Verifier, verify
from verification.sms import USAGE_TEXT, normalise_phone, parse_sms, reply_text, twiml_reply, verify_twilio_signature
from verification.views import PublicApi

log = logging.getLogger("invoiceloop.verification")
PATH = "/v1/sms/inbound"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'


def _twiml(xml: str) -> Response[str]:
    return Response(xml, media_type="application/xml", status_code=200)


async def _first_reply(verifier: Verifier, sid: str) -> str:
    """The reply of an earlier delivery of this message (waits briefly while that one is answered)."""
    for _ in range(20):
        async with verifier.pool.acquire() as conn:
            reply = await vrepo.inbound_reply(conn, sid)
        if reply is not None:
            return reply
        await asyncio.sleep(0.1)
    return EMPTY_TWIML


async def _answer(verifier: Verifier, params: dict[str, str]) -> str:
    """TwiML for one new message: the outcome, the usage line, or nothing over the sender's daily cap."""
    sender = normalise_phone(params.get("From", ""), "US") or params.get("From", "")
    sender_hash = verifier.hash("phone", sender)
    if not await verifier.limits.allow_inbound(sender_hash):
        return EMPTY_TWIML  # over the cap: answering would spend money for an abuser
    query = parse_sms(params.get("Body", ""))
    if query is None:
        return twiml_reply(USAGE_TEXT)
    requester = verifier.requester("sms", f"sms:{sender}", sender)  # the sender, not Twilio's address, is the client
    result = await verify(verifier, query, requester, rate=False)  # texts have their own daily cap
    summary = InvoiceSummary.of(result.invoice) if result.invoice else None
    return twiml_reply(reply_text(result.outcome, result.times_verified, summary))


@post(PATH, status_code=200, tags=["verification"], request_max_body_size=64 * 1024, opt={ACCEPTS: FORM})
async def sms_inbound(request: Request[Any, Any, Any], public_api: NamedDependency[PublicApi]) -> Response[str]:
    """Twilio's webhook (form-encoded, `X-Twilio-Signature` checked; 403 when wrong or missing)."""
    form = await request.form()
    params = {key: str(form.get(key)) for key in form}
    url = public_api.public_base_url.rstrip("/") + PATH
    token, signature = public_api.twilio_auth_token, request.headers.get("x-twilio-signature")
    if not token or not verify_twilio_signature(token, url, params, signature):
        raise Forbidden("X-Twilio-Signature is missing or does not sign this request")
    verifier = public_api.verifier
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    async with verifier.pool.acquire() as conn:
        first = bool(sid) and await vrepo.claim_inbound(conn, sid)
    if sid and not first:
        return _twiml(await _first_reply(verifier, sid))
    xml = await _answer(verifier, params)
    if sid:
        async with verifier.pool.acquire() as conn:
            await vrepo.set_inbound_reply(conn, sid, xml)
    return _twiml(xml)
