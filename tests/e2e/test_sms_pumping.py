"""SMS pumping (issue 12, item 1): receipts go only to the right details' mobile in SMS_ALLOWED_COUNTRIES,
within the service's SMS_DAILY_BUDGET, and refusing one never fails the verification. Each test replays the
attack against a real server and drains the queue with a real arq worker into the fake Twilio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from invoiceloop.settings import Settings
from tests.conftest import RunRedis, ServerProcess, server_log
from tests.e2e.test_verify_page import form_of
from tests.e2e.test_verify_sms import run_worker
from tests.fake_twilio import FakeTwilio
from tests.verification_fixtures import TWILIO_FROM, post_form, query_of, random_address, random_mobile

LATVIA = [f"+371200000{n:02d}" for n in range(20)]  # valid Latvian mobiles: premium-rate pumping targets
CN_LANDLINE = "+862087654321"


def texts_to(twilio: FakeTwilio, phones: list[str]) -> list[str]:
    return [m.to for m in twilio.messages if m.to in phones]


async def ask(base_url: str, body: dict[str, Any], address: str | None = None) -> dict[str, Any]:
    """One verification from its own client address; the answer must be a 200 whatever the receipt."""
    headers = {"X-Forwarded-For": address or random_address()}
    async with httpx.AsyncClient(base_url=base_url, timeout=30, headers=headers) as client:
        answer = await client.post("/v1/verifications", json=body)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_twenty_addresses_pumping_an_unknown_invoice_send_nothing(
    verify_server: ServerProcess, seller: Any, session_twilio: FakeTwilio, twilio_settings: Settings
) -> None:
    """The replay of the attack: an unknown invoice, 20 addresses, 20 Latvian numbers: 20 answers, 0 texts. Wrong
    details of a real invoice to a CN mobile are refused the same way (a stranger cannot make us text anyone)."""
    unknown = {"invoice_code": "044012600111", "invoice_number": "99999999", "issue_date": "2026-11-27"}
    answers = [await ask(verify_server.base_url, {**unknown, "check_code_last6": "123456", "phone": p}) for p in LATVIA]
    assert {a["result"] for a in answers} == {"not_found"}
    assert {(a["sms_receipt"], a["sms_receipt_reason"]) for a in answers} == {("not_sent", "details_not_confirmed")}
    invoice, stranger_phone = await seller.issue(), random_mobile()
    wrong = query_of(invoice, check_code_last6=f"{(int(invoice['check_code'][-6:]) + 1) % 10**6:06d}")
    mismatch = await ask(verify_server.base_url, {**wrong, "phone": stranger_phone})
    assert mismatch["result"] == "mismatch" and mismatch["sms_receipt_reason"] == "details_not_confirmed"
    await run_worker(twilio_settings)
    assert texts_to(session_twilio, [*LATVIA, stranger_phone]) == []


async def test_foreign_mobile_and_cn_landline_are_refused_right_cn_mobile_texted(
    consumer: Any, seller: Any, session_twilio: FakeTwilio, twilio_settings: Settings
) -> None:
    """Right details: a Latvian mobile and a Guangzhou landline get the answer without a text; a CN mobile
    gets its text. The page (form path) says why no text went."""
    invoice, cn_mobile = await seller.issue(), random_mobile()
    foreign = (await consumer.post("/v1/verifications", json=query_of(invoice, phone=LATVIA[0]))).json()
    assert foreign["result"] == "valid" and foreign["invoice"] is not None
    assert (foreign["sms_receipt"], foreign["sms_receipt_reason"]) == ("not_sent", "country_not_allowed")
    landline = (await consumer.post("/v1/verifications", json=query_of(invoice, phone=CN_LANDLINE))).json()
    assert landline["result"] == "valid" and landline["sms_receipt_reason"] == "not_a_mobile"
    page = await post_form(consumer, form_of(invoice, phone=LATVIA[1]))
    assert page.status_code == 200 and 'data-result="valid"' in page.text
    assert 'id="receipt"' in page.text and "No SMS receipt: receipts go only to mobiles" in page.text
    right = (await consumer.post("/v1/verifications", json=query_of(invoice, phone=cn_mobile))).json()
    assert (right["result"], right["sms_receipt"]) == ("valid", "queued") and "sms_receipt_reason" not in right
    await run_worker(twilio_settings)
    assert texts_to(session_twilio, [LATVIA[0], LATVIA[1], CN_LANDLINE]) == []
    bodies = [m.body for m in session_twilio.messages if m.to == cn_mobile]
    assert len(bodies) == 1 and "查验一致" in bodies[0]


@pytest.fixture
async def budget_server(
    settings: Settings,
    session_twilio: FakeTwilio,
    run_redis: RunRedis,
    output_dir: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[ServerProcess]:
    """A server whose service-wide budget is 3 receipts a day, today's count starting at 0."""
    for key in run_redis.client.scan_iter("vl:rb:*"):
        run_redis.client.delete(key)
    srv = ServerProcess(
        settings,
        server_log(output_dir, request, "budget-server"),
        **session_twilio.server_env(TWILIO_FROM),
        SMS_DAILY_BUDGET="3",
    )
    try:
        yield srv
    finally:
        srv.stop()


async def test_the_daily_budget_stops_the_next_text_across_clients_and_phones(
    budget_server: ServerProcess, seller: Any, session_twilio: FakeTwilio, twilio_settings: Settings
) -> None:
    """Five holders, each with their own address, phone and invoice (every per-client and per-phone cap far
    away): the first 3 are texted, the 4th and 5th are answered without a text."""
    invoices, phones = [await seller.issue() for _ in range(5)], [random_mobile() for _ in range(5)]
    answers = [
        await ask(budget_server.base_url, query_of(invoice, phone=phone))
        for invoice, phone in zip(invoices, phones, strict=True)
    ]
    assert [a["result"] for a in answers] == ["valid"] * 5
    assert [a["sms_receipt"] for a in answers] == ["queued"] * 3 + ["not_sent"] * 2
    assert [a.get("sms_receipt_reason") for a in answers[3:]] == ["service_budget_reached"] * 2
    await run_worker(twilio_settings)
    assert sorted(texts_to(session_twilio, phones)) == sorted(phones[:3])
