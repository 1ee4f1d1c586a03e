"""SMS end to end: Twilio's signed inbound webhook answered with TwiML, and receipts and buyer notices
sent by a real arq worker through the real twilio client to the fake Twilio API."""

from __future__ import annotations

import re
import secrets
import uuid
import warnings
from typing import Any

import asyncpg
import httpx
import pytest

from invoiceloop.settings import Settings
from invoiceloop.worker import build_worker
from tests.conftest import ServerProcess
from tests.fake_twilio import FakeTwilio
from tests.verification_fixtures import (
    TWILIO_FROM,
    invoices_in_every_state,
    random_mobile,
    twilio_signature,
    wrong_last6,
)
from verification.sms import USAGE_TEXT, verify_twilio_signature

DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}


def test_twilio_documented_example_vector() -> None:
    assert twilio_signature("12345", DOC_URL, DOC_PARAMS) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert verify_twilio_signature("12345", DOC_URL, DOC_PARAMS, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not verify_twilio_signature(
        "12345", DOC_URL, {**DOC_PARAMS, "Digits": "1235"}, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    )


def sms_text(invoice: dict[str, Any], last6: str | None = None) -> str:
    day = invoice["issue_date"].replace("-", "")
    return f"查验 {invoice['invoice_code']} {invoice['invoice_number']} {day} {last6 or invoice['check_code'][-6:]}"


async def text_in(
    server: ServerProcess,
    token: str,
    body: str,
    *,
    sender: str | None = None,
    sid: str | None = None,
    signature: str | None = "sign",
) -> httpx.Response:
    params = {
        "MessageSid": sid or "SM" + secrets.token_hex(16),
        "AccountSid": "AC" + "0" * 32,
        "From": sender or random_mobile(),
        "To": TWILIO_FROM,
        "Body": body,
        "NumMedia": "0",
    }
    url = server.base_url + "/v1/sms/inbound"
    headers = (
        {}
        if signature is None
        else {"X-Twilio-Signature": twilio_signature(token, url, params) if signature == "sign" else signature}
    )
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url, data=params, headers=headers)


def message_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    match = re.search(r"<Message>(.*)</Message>", response.text, re.S)
    assert match, response.text
    return match[1]


async def test_signed_text_gets_twiml_and_bad_signature_403(
    verify_server: ServerProcess, session_twilio: FakeTwilio, seller: Any
) -> None:
    token = session_twilio.auth_token
    invoice = await seller.issue()
    reply = message_of(await text_in(verify_server, token, sms_text(invoice)))
    assert "查验一致" in reply and invoice["invoice_number"] in reply and "第1次" in reply
    for signature in (None, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", twilio_signature("other", "x", {})):
        refused = await text_in(verify_server, token, sms_text(invoice), signature=signature)
        assert refused.status_code == 403 and refused.headers["content-type"].startswith("application/problem+json")
    assert message_of(await text_in(verify_server, token, "你好")) == USAGE_TEXT


async def test_repeated_message_sid_is_answered_once(
    verify_server: ServerProcess, session_twilio: FakeTwilio, seller: Any, pool: asyncpg.Pool
) -> None:
    invoice = await seller.issue()
    sid, sender = "SM" + secrets.token_hex(16), random_mobile()
    first = await text_in(verify_server, session_twilio.auth_token, sms_text(invoice), sid=sid, sender=sender)
    again = await text_in(verify_server, session_twilio.auth_token, sms_text(invoice), sid=sid, sender=sender)
    assert message_of(first) == message_of(again)
    async with pool.acquire() as conn:
        count = await conn.fetchval(
            "SELECT times_verified FROM invoice_counts WHERE invoice_id = $1", uuid.UUID(invoice["id"])
        )
        logged = await conn.fetchval(
            "SELECT count(*) FROM verifications WHERE invoice_id = $1", uuid.UUID(invoice["id"])
        )
    assert count == 1 and logged == 1


async def test_every_outcome_by_sms(
    verify_server: ServerProcess, session_twilio: FakeTwilio, seller: Any, pool: asyncpg.Pool
) -> None:
    token, sender = session_twilio.auth_token, random_mobile()
    ok, voided, reversed_, partial, tampered = await invoices_in_every_state(seller, pool)
    expected = [
        (ok, None, "查验一致"),
        (voided, None, "已作废"),
        (reversed_, None, "已全额红冲"),
        (partial, None, "已部分红冲"),
        (tampered, None, "记录校验异常"),
        (ok, wrong_last6(ok), "信息不符"),
    ]
    for invoice, last6, words in expected:
        assert words in message_of(await text_in(verify_server, token, sms_text(invoice, last6), sender=sender))
    missing = {**ok, "invoice_number": "99999999"}
    assert "查无此票" in message_of(await text_in(verify_server, token, sms_text(missing), sender=sender))
    for _ in range(4):
        await text_in(verify_server, token, sms_text(ok, wrong_last6(ok)), sender=sender)
    assert "锁定" in message_of(await text_in(verify_server, token, sms_text(ok), sender=sender))


async def run_worker(settings: Settings) -> None:
    """A real arq worker in this process until the queue is empty (retries included)."""
    worker = build_worker(settings, burst=True, poll_delay=0.1)
    try:
        await worker.main()
    finally:
        with warnings.catch_warnings():  # arq 0.28 calls redis' deprecated close() in Worker.close
            warnings.simplefilter("ignore", DeprecationWarning)
            await worker.close()


async def test_receipt_and_buyer_notice_reach_twilio(
    consumer: Any, seller: Any, session_twilio: FakeTwilio, twilio_settings: Settings, pool: asyncpg.Pool
) -> None:
    buyer_phone, verifier_phone = random_mobile(), random_mobile()
    body = __import__("tests.samples", fromlist=["x"]).invoice_body()
    body["buyer"]["phone"] = buyer_phone
    created = await seller.post("/v1/invoices", json=body)
    invoice = created.json()
    query = {
        "invoice_code": invoice["invoice_code"],
        "invoice_number": invoice["invoice_number"],
        "issue_date": invoice["issue_date"],
        "check_code_last6": invoice["check_code"][-6:],
    }
    session_twilio.fail_next(1)  # the first send fails: the job retries
    answer = (await consumer.post("/v1/verifications", json={**query, "phone": verifier_phone})).json()
    assert answer["result"] == "valid" and answer["sms_receipt"] == "queued"
    await consumer.post("/v1/verifications", json=query)  # a second verification: no second notice
    await run_worker(twilio_settings)
    to_verifier = [m for m in session_twilio.messages if m.to == verifier_phone]
    to_buyer = [m for m in session_twilio.messages if m.to == buyer_phone and "/d/" not in m.body]  # not the link
    assert len(to_verifier) == 1 and len(to_buyer) == 1
    assert to_verifier[0].from_ == TWILIO_FROM and "查验一致" in to_verifier[0].body
    assert invoice["invoice_number"] in to_buyer[0].body and "他人查验" in to_buyer[0].body
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT status, provider_id FROM sms_outbox WHERE phone = ANY($1)", [buyer_phone, verifier_phone]
        )
    assert {r["status"] for r in rows} == {"sent"} and all(r["provider_id"].startswith("SM") for r in rows)


async def test_buyer_verifying_own_invoice_gets_no_notice_and_caps(
    consumer: Any, seller: Any, session_twilio: FakeTwilio, twilio_settings: Settings
) -> None:
    buyer_phone = random_mobile()
    body = __import__("tests.samples", fromlist=["x"]).invoice_body()
    body["buyer"]["phone"] = buyer_phone
    invoice = (await seller.post("/v1/invoices", json=body)).json()
    query = {
        "invoice_code": invoice["invoice_code"],
        "invoice_number": invoice["invoice_number"],
        "issue_date": invoice["issue_date"],
        "check_code_last6": invoice["check_code"][-6:],
        "phone": buyer_phone,
    }
    answers = [(await consumer.post("/v1/verifications", json=query)).json() for _ in range(6)]
    receipts = [(a["sms_receipt"], a.get("sms_receipt_reason")) for a in answers]
    assert receipts == [("queued", None)] * 5 + [("not_sent", "daily_limit_reached")]
    await run_worker(twilio_settings)
    to_buyer = [m for m in session_twilio.messages if m.to == buyer_phone and "/d/" not in m.body]  # not the link
    assert len(to_buyer) == 5 and all("查验一致" in m.body for m in to_buyer)


@pytest.mark.parametrize("phone", ["12345", "not a phone"])
async def test_receipt_needs_a_phone_number(consumer: Any, seller: Any, phone: str) -> None:
    invoice = await seller.issue()
    query = {
        "invoice_code": invoice["invoice_code"],
        "invoice_number": invoice["invoice_number"],
        "issue_date": invoice["issue_date"],
        "check_code_last6": invoice["check_code"][-6:],
        "phone": phone,
    }
    refused = await consumer.post("/v1/verifications", json=query)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "phone"
