"""`POST /v1/sms/inbound`: Twilio's inbound-message webhook. The signature is checked against the public
URL, a repeated MessageSid gets the first reply without verifying again, and the answer is TwiML.

The MessageSid is recorded with its reply, in one transaction: an attempt that fails before its reply is
decided (Redis unreachable: 503) records nothing, so Twilio's retry does the work and gets the real answer."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency

from invoicing.errors import Forbidden
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


async def _reply_once(public_api: PublicApi, sid: str, params: dict[str, str]) -> str:
    """The reply to the message `sid`: the stored one when a delivery of it was answered, else a new one stored
    with the sid when the transaction commits (an error on the way rolls the sid back). A concurrent delivery of
    the same sid waits on the uncommitted row, then replays its reply. The transaction's connection is held
    while verifying, which takes another: `inbound_slots` bounds how many are held so the pool never runs dry."""
    verifier = public_api.verifier
    async with public_api.inbound_slots, verifier.pool.acquire() as conn, conn.transaction():
        if not await vrepo.claim_inbound(conn, sid):
            return await vrepo.inbound_reply(conn, sid) or EMPTY_TWIML
        xml = await _answer(verifier, params)
        await vrepo.set_inbound_reply(conn, sid, xml)
        return xml


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


@post(PATH, status_code=200, tags=["verification"], request_max_body_size=64 * 1024)
async def sms_inbound(request: Request[Any, Any, Any], public_api: NamedDependency[PublicApi]) -> Response[str]:
    """Twilio's webhook (form-encoded, `X-Twilio-Signature` checked; 403 when wrong or missing)."""
    form = await request.form()
    params = {key: str(form.get(key)) for key in form}
    url = public_api.public_base_url.rstrip("/") + PATH
    token, signature = public_api.twilio_auth_token, request.headers.get("x-twilio-signature")
    if not token or not verify_twilio_signature(token, url, params, signature):
        raise Forbidden("X-Twilio-Signature is missing or does not sign this request")
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if not sid:  # not from Twilio's messaging (it always sends one): answered, nothing to replay
        return _twiml(await _answer(public_api.verifier, params))
    return _twiml(await _reply_once(public_api, sid, params))
