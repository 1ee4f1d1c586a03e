"""Fixtures of the verification tests (registered by conftest's pytest_plugins).

One verification server per test module that asks for it (`verify_server`), started with
SMS_BACKEND=twilio against a run-wide fake Twilio, so the JSON endpoint, the page and the SMS webhook are
all tested on it. The tests of a module share its database and its server, so each test gets its own
client address (uvicorn trusts X-Forwarded-For from 127.0.0.1) and its own phone numbers, and per-address
and per-phone limits never leak between tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import random
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import altcha
import httpx
import pytest
from twilio.request_validator import RequestValidator

from invoiceloop.settings import Settings
from tests.conftest import ServerProcess, server_log
from tests.fake_twilio import FakeTwilio
from tests.samples import invoice_body

TWILIO_FROM = "+15005550006"


def random_mobile() -> str:
    """A valid Chinese mobile number in E.164 that no other test uses."""
    return "+86139" + f"{random.randrange(10**8):08d}"


def random_address() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def keyed_hash(settings: Settings, kind: str, value: str) -> str:
    """The service's keyed hash of an address or phone (Verifier.hash)."""
    secret = (settings.check_code_secret or "").encode()
    return hmac.new(secret, f"{kind}|{value}".encode(), hashlib.sha256).hexdigest()[:32]


def twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature as Twilio documents it: HMAC-SHA1 over the URL and the sorted parameters."""
    return str(RequestValidator(token).compute_signature(url, params))


@pytest.fixture(scope="session")
def session_twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio().start()
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def twilio_settings(settings: Settings, session_twilio: FakeTwilio) -> Settings:
    """The test settings with the Twilio SMS backend pointed at the fake."""
    return dataclasses.replace(
        settings,
        sms_backend="twilio",
        twilio_account_sid=session_twilio.account_sid,
        twilio_auth_token=session_twilio.auth_token,
        twilio_from_number=TWILIO_FROM,
        twilio_api_base_url=session_twilio.base_url,
    )


@pytest.fixture(scope="module")
def verify_server(
    settings: Settings, session_twilio: FakeTwilio, output_dir: Path, request: pytest.FixtureRequest
) -> Iterator[ServerProcess]:
    """`invoiceloop serve` with SMS_BACKEND=twilio at the fake Twilio, on the module's database."""
    srv = ServerProcess(
        settings,
        server_log(output_dir, request, "verify-server"),
        **session_twilio.server_env(TWILIO_FROM),
    )
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def consumer(verify_server: ServerProcess) -> AsyncIterator[Any]:
    """An unauthenticated client with its own client address (`.address`)."""
    address = random_address()
    async with httpx.AsyncClient(
        base_url=verify_server.base_url, timeout=30, headers={"X-Forwarded-For": address}
    ) as client:
        client.address = address  # type: ignore[attr-defined]
        yield client


@pytest.fixture
async def seller(verify_server: ServerProcess, pool: Any) -> AsyncIterator[Any]:
    """An issuer's client on the verification server; `await seller.issue(**overrides)` -> Invoice JSON."""
    from tests.conftest import new_issuer

    issuer, key = await new_issuer(pool)
    async with httpx.AsyncClient(
        base_url=verify_server.base_url, timeout=60, headers={"Authorization": f"Bearer {key}"}
    ) as client:

        async def issue(**overrides: Any) -> dict[str, Any]:
            response = await client.post("/v1/invoices", json=invoice_body(**overrides))
            assert response.status_code == 201, response.text
            return dict(response.json())

        client.issuer = issuer  # type: ignore[attr-defined]
        client.issue = issue  # type: ignore[attr-defined]
        yield client


def query_of(invoice: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The JSON verification fields of an issued invoice (right details unless overridden)."""
    body = {
        "invoice_code": invoice["invoice_code"],
        "invoice_number": invoice["invoice_number"],
        "issue_date": invoice["issue_date"],
        "check_code_last6": invoice["check_code"][-6:],
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def altcha_payload(challenge: dict[str, Any]) -> str:
    """What a client does with a 428: solve the challenge with the altcha library's own solver (about a second)."""
    parsed = altcha.Challenge.from_dict(challenge)
    solution = altcha.solve_challenge(parsed)
    assert solution is not None
    return str(altcha.Payload(parsed, solution).to_base64())


def wrong_last6(invoice: dict[str, Any]) -> str:
    """Six digits that are not the invoice's check code tail."""
    right = invoice["check_code"][-6:]
    return f"{(int(right) + 1) % 10**6:06d}"


async def invoices_in_every_state(seller: Any, pool: Any) -> list[dict[str, Any]]:
    """Five invoices of `seller`: issued, voided, reversed, partially credited, and one whose stored
    content was edited behind the service's back (so it verifies as tampered)."""
    ok, voided, reversed_, partial, tampered = [await seller.issue() for _ in range(5)]
    await seller.post(f"/v1/invoices/{voided['id']}/void", json={"reason": "开错了"})
    await seller.post(f"/v1/invoices/{reversed_['id']}/credit-notes", json={"reason": "退货"})
    await seller.post(
        f"/v1/invoices/{partial['id']}/credit-notes",
        json={"reason": "部分", "lines": [{"line_no": 1, "quantity": "1"}]},
    )
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE invoices SET content = jsonb_set(content, '{remarks}', '\"x\"') WHERE id = $1",
            uuid.UUID(tampered["id"]),
        )
    return [ok, voided, reversed_, partial, tampered]


async def form_token(client: httpx.AsyncClient) -> str:
    """What a person's browser has after opening the page: the CSRF cookie (kept by the client) and the form's
    hidden token, which it returns."""
    page = await client.get("/verify")
    match = re.search(r'name="_csrf_token" value="([0-9a-f]+)"', page.text)
    assert match, page.text[:2000]
    return match[1]


async def post_form(client: httpx.AsyncClient, fields: dict[str, str], **headers: str) -> httpx.Response:
    """POST /verify as the page itself sends it: the cookie and token of a GET first."""
    token = await form_token(client)
    return await client.post("/verify", data={**fields, "_csrf_token": token}, headers=headers)
