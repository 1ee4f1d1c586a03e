"""`POST /v1/sms/inbound`: Twilio's inbound-message webhook. The signature is checked against the public
URL, a repeated MessageSid gets the first reply without verifying again, and the answer is TwiML.

The MessageSid is recorded with its reply, in one transaction: an attempt that fails before its reply is
decided (Redis unreachable: 503) records nothing, so Twilio's retry does the work and gets the real answer."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency

from invoicing.errors import Conflict, Forbidden, RateLimited
from invoicing.http import ACCEPTS, FORM
from verification import repository as vrepo
from verification.lottery_services import Lottery, NotEligible, register
from verification.model import InvoiceSummary
from verification.services import Verifier, verify
from verification.sms import (
    LOTTERY_USAGE_TEXT,
    USAGE_TEXT,
    lottery_reply,
    lottery_request,
    normalise_phone,
    parse_sms,
    reply_text,
    twiml_reply,
    verify_twilio_signature,
)
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
        xml = await _answer(verifier, params, public_api.lottery)
        await vrepo.set_inbound_reply(conn, sid, xml)
        return xml


async def _answer(verifier: Verifier, params: dict[str, str], lottery: Lottery | None = None) -> str:
    """TwiML for one new message: the outcome, the usage line, or nothing over the sender's daily cap; a lottery
    text (`抽奖 ...`) registers the invoice with the sender's phone."""
    sender = normalise_phone(params.get("From", ""), "US") or params.get("From", "")
    sender_hash = verifier.hash("phone", sender)
    if not await verifier.limits.allow_inbound(sender_hash):
        return EMPTY_TWIML  # over the cap: answering would spend money for an abuser
    rest = lottery_request(params.get("Body", ""))
    if rest is not None and lottery is not None:
        return twiml_reply(await _register(lottery, rest, sender))
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
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if not sid:  # not from Twilio's messaging (it always sends one): answered, nothing to replay
        return _twiml(await _answer(public_api.verifier, params, public_api.lottery))
    return _twiml(await _reply_once(public_api, sid, params))


async def _register(lottery: Lottery, rest: str, sender: str) -> str:
    """The reply to a lottery text: the invoice registered for the sender's phone, or why not. It is verified as
    a verification text is (the sender's locks; the daily cap of texts was counted already)."""
    query = parse_sms(rest)
    if query is None:
        return LOTTERY_USAGE_TEXT
    query = dataclasses.replace(query, phone=sender)
    requester = lottery.verifier.requester("sms", f"sms:{sender}", sender)
    try:
        entry = await register(lottery, query, requester, rate=False)
    except NotEligible as exc:
        return lottery_reply(refused=(exc.zh, exc.errors[0].message))
    except Conflict:
        return lottery_reply(refused=("该发票已登记过", "this invoice is registered already"))
    except RateLimited:
        return lottery_reply(refused=("该手机号今日登记已满", "this phone's entries for today are used up"))
    return lottery_reply(entry.period, entry.seq)
