"""The buyer's text (issue 14, item 1): the real service, the real arq worker in a subprocess sending through the
real twilio client to the fake Twilio (`tests.fake_twilio`), and the texted link opened over HTTP. Each test
uses its own buyer phone and client address, so the module's tests never see each other's texts or limits."""

from __future__ import annotations

import asyncio
import base64
import io
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from pypdf import PdfReader

from invoiceloop.settings import Settings
from invoicing import buyer_texts
from tests.conftest import ServerProcess, server_log
from tests.delivery_fixtures import wait_until
from tests.fake_twilio import FakeMessage, FakeTwilio
from tests.samples import invoice_body
from tests.verification_fixtures import TWILIO_FROM, random_address, random_mobile


@pytest.fixture(scope="module")
def server(settings: Settings, output_dir: Any, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """The module's service, its rate window an hour long, so a flood's count never straddles two windows."""
    srv = ServerProcess(settings, server_log(output_dir, request), VERIFY_RATE_WINDOW_S="3600")
    try:
        yield srv
    finally:
        srv.stop()


def worker_env(twilio: FakeTwilio) -> dict[str, str]:
    return twilio.server_env(TWILIO_FROM)


async def issue(client: Any, phone: str, **overrides: Any) -> dict[str, Any]:
    body = invoice_body(**overrides)
    body["buyer"]["phone"] = phone
    resp = await client.post("/v1/invoices", json=body)
    assert resp.status_code == 201, resp.text
    answer: dict[str, Any] = resp.json()
    return answer


async def texts_to(twilio: FakeTwilio, phone: str, count: int, timeout_s: float = 90) -> list[FakeMessage]:
    async def check() -> list[FakeMessage]:
        found = [m for m in twilio.messages if m.to == phone]
        return found if len(found) >= count else []

    found: list[FakeMessage] = await wait_until(check, timeout_s)
    return found


def link_in(text: str) -> str:
    start = text.index("http")
    return text[start : start + text[start:].index(buyer_texts.PATH) + len(buyer_texts.PATH) + buyer_texts.TOKEN_CHARS]


def pdf_text(resp: httpx.Response) -> str:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/pdf" and "no-store" in resp.headers["cache-control"]
    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(resp.content)).pages)


async def token_of(pool: asyncpg.Pool, record_id: str, kind: str = "invoice") -> str:
    async with pool.acquire() as conn:
        body = await conn.fetchval(
            "SELECT body FROM sms_outbox WHERE invoice_id = $1 AND kind = $2", uuid.UUID(record_id), kind
        )
    assert body is not None, f"no {kind} text for {record_id}"
    return str(link_in(body).rsplit("/", 1)[1])


def public(server: ServerProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, timeout=60, headers={"X-Forwarded-For": random_address()})


async def test_the_invoice_its_void_and_a_credit_note_are_texted_with_links_that_open(
    issuer_client: Any, server: ServerProcess, fake_twilio: FakeTwilio, start_worker: Any
) -> None:
    start_worker(**worker_env(fake_twilio))
    phone = random_mobile()
    inv = await issue(issuer_client, phone)
    [text] = await texts_to(fake_twilio, phone, 1)
    assert text.from_ == TWILIO_FROM and text.body.startswith("【电子发票】")
    assert buyer_texts.segments(text.body) == 1, (len(text.body), text.body)
    link = link_in(text.body)
    assert link.startswith(server.base_url + buyer_texts.PATH)
    async with public(server) as consumer:
        assert inv["invoice_number"] in pdf_text(await consumer.get(link))

        resp = await issuer_client.post(f"/v1/invoices/{inv['id']}/void", json={"reason": "开错了"})
        assert resp.status_code == 200, resp.text
        void = (await texts_to(fake_twilio, phone, 2))[1]
        assert void.body.startswith("【发票作废】") and link_in(void.body) != link
        assert inv["invoice_number"] in pdf_text(await consumer.get(link_in(void.body)))

        other = await issue(issuer_client, phone)
        resp = await issuer_client.post(f"/v1/invoices/{other['id']}/credit-notes", json={"reason": "退货"})
        assert resp.status_code == 201, resp.text
        note = resp.json()
        texts = await texts_to(fake_twilio, phone, 4)
        [credit] = [m for m in texts if m.body.startswith("【红字发票】")]
        assert note["invoice_number"] in pdf_text(await consumer.get(link_in(credit.body)))
    await asyncio.sleep(1)  # nothing more comes: one text per record and kind
    assert len([m for m in fake_twilio.messages if m.to == phone]) == 4


async def test_no_text_for_paper_a_landline_or_a_foreign_mobile(issuer_client: Any, pool: asyncpg.Pool) -> None:
    postal = await issue(issuer_client, random_mobile(), delivery="postal")
    landline = await issue(issuer_client, "+862087654321")
    foreign = await issue(issuer_client, "+37120000000")
    async with pool.acquire() as conn:
        kinds = await conn.fetch(
            "SELECT kind FROM sms_outbox WHERE invoice_id = ANY($1::uuid[])",
            [uuid.UUID(i["id"]) for i in (postal, landline, foreign)],
        )
    assert kinds == []


def spliced(token_a: str, token_b: str) -> str:
    """A's token with B's record in it (and A's MAC): what an attacker holding A's link can make of B's."""
    a, b = (base64.urlsafe_b64decode(t) for t in (token_a, token_b))
    return base64.urlsafe_b64encode(a[:1] + b[1:10] + a[10:]).decode()


async def test_the_attacker_tampers_splices_replays_late_and_floods(
    issuer_client: Any, server: ServerProcess, settings: Settings, pool: asyncpg.Pool
) -> None:
    a, b = await issue(issuer_client, random_mobile()), await issue(issuer_client, random_mobile())
    token_a, token_b = await token_of(pool, a["id"]), await token_of(pool, b["id"])
    key = buyer_texts.link_key(settings.secret_bytes())
    now_hour = int(time.time() // 3600)
    async with public(server) as client:
        assert a["invoice_number"] in pdf_text(await client.get(buyer_texts.PATH + token_a))
        assert b["invoice_number"] in pdf_text(await client.get(buyer_texts.PATH + token_b))
        # A's link cannot be turned into B's; a changed character, another key's token: as unknown as no record
        flipped = token_a[:5] + ("A" if token_a[5] != "A" else "B") + token_a[6:]
        forged = buyer_texts.make_token(
            buyer_texts.link_key(b"a guess"), "invoice", b["invoice_code"], b["invoice_number"], now_hour + 24
        )
        for bad in (spliced(token_a, token_b), flipped, forged, token_a[:-1], "x" * 28):
            resp = await client.get(buyer_texts.PATH + bad)
            assert resp.status_code == 404 and resp.headers["content-type"].startswith("application/problem+json")
        # signed by us but expired: 410; the same minted with a future hour opens (the key is the service's)
        late = buyer_texts.make_token(key, "invoice", a["invoice_code"], a["invoice_number"], now_hour)
        assert (await client.get(buyer_texts.PATH + late)).status_code == 410
        fresh = buyer_texts.make_token(key, "invoice", a["invoice_code"], a["invoice_number"], now_hour + 2)
        assert a["invoice_number"] in pdf_text(await client.get(buyer_texts.PATH + fresh))
        # a credit note's link names a credit note: the same figures with another kind open nothing
        wrong_kind = buyer_texts.make_token(key, "credit_note", a["invoice_code"], a["invoice_number"], now_hour + 2)
        assert (await client.get(buyer_texts.PATH + wrong_kind)).status_code == 404

    async with public(server) as flood:  # a fresh address guessing tokens
        answers = [(await flood.get(buyer_texts.PATH + f"{i:028d}")) for i in range(35)]
        codes = [r.status_code for r in answers]
        assert set(codes) == {404, 429} and codes.index(429) > 0 and codes[-1] == 429
        assert int(answers[-1].headers["retry-after"]) >= 1
        assert (await flood.get(buyer_texts.PATH + token_a)).status_code == 429  # counted before the token is read

    logged = server.log_path.read_text()
    for token in (token_a, token_b, late, fresh, flipped):
        assert token not in logged


@pytest.mark.slow
@pytest.mark.timeout(300)  # a lease and a sweep to wait out, on a loaded machine
async def test_worker_killed_after_twilio_took_the_text_sends_it_once(
    issuer_client: Any, fake_twilio: FakeTwilio, start_worker: Any, pool: asyncpg.Pool, output_dir: Any
) -> None:
    fake_twilio.gate.clear()  # Twilio takes each text, its answer is held: the worker never hears it
    first = start_worker(**worker_env(fake_twilio))
    phone = random_mobile()
    inv = await issue(issuer_client, phone)

    async def taken() -> bool:  # Twilio has this text (other tests' unsent texts may be held beside it)
        return any(m.to == phone for m in fake_twilio.messages)

    await wait_until(taken, 90)
    first.kill()  # kill -9 between Twilio taking the text and the row being marked sent
    fake_twilio.gate.set()
    start_worker(**worker_env(fake_twilio), SMS_LEASE_S="5")  # the row is taken again 5 s after the lost claim

    async def marked() -> asyncpg.Record | None:
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT status, attempts, provider_id FROM sms_outbox WHERE invoice_id = $1 AND kind = 'invoice'",
                uuid.UUID(inv["id"]),
            )
        return row if row is not None and row["status"] == "sent" else None

    row = await wait_until(marked, 240)
    [text] = [m for m in fake_twilio.messages if m.to == phone]
    assert row["attempts"] >= 2 and row["provider_id"] == text.sid  # taken again, found at Twilio, not resent
    worker_log = (output_dir / "delivery" / "worker.log").read_text()
    assert link_in(text.body).rsplit("/", 1)[1] not in worker_log
