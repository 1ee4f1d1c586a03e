"""Cross-site requests, replayed as the attacker sends them: a page on another site posting to the JSON endpoint
as `text/plain` (no CORS preflight) or submitting the verification form on its visitors' behalf. Each is refused
before anything is verified, over real HTTP and from a page on another origin in headless Chromium."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import httpx
from playwright.async_api import Browser, Route

from tests.browser import new_page
from tests.conftest import ServerProcess
from tests.delivery_fixtures import new_operator
from tests.e2e.test_verify_page import form_of
from tests.samples import invoice_body
from tests.verification_fixtures import form_token, post_form, query_of, random_address

EVIL = "https://evil.example"
PLAIN = {"Content-Type": "text/plain", "Origin": EVIL}


async def times_verified(server: ServerProcess, invoice: dict[str, Any]) -> int:
    """A genuine JSON verification from a fresh address: how many verifications the invoice has had, this one
    included."""
    async with httpx.AsyncClient(base_url=server.base_url, headers={"X-Forwarded-For": random_address()}) as client:
        answer = await client.post("/v1/verifications", json=query_of(invoice))
        assert answer.status_code == 200 and answer.json()["result"] == "valid", answer.text
        return int(answer.json()["times_verified"])


def refused_as_415(answer: httpx.Response, sent: str) -> None:
    assert answer.status_code == 415, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["status"] == 415 and body["sent"] == sent and body["accepted"] == ["application/json"]
    assert sent in body["detail"] and "application/json" in body["detail"]


async def test_the_json_endpoint_reads_only_json(consumer: Any, seller: Any, verify_server: ServerProcess) -> None:
    """The attack: `fetch(url, {method: "POST", body: JSON.stringify(q)})` from another site sends text/plain, which
    needs no preflight; it was verified. Now 415 for it and for a form, and nothing is counted."""
    invoice = await seller.issue()
    body = json.dumps(query_of(invoice, phone="+8613900139000"))
    plain = await consumer.post(
        "/v1/verifications", content=body, headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": EVIL}
    )
    refused_as_415(plain, "text/plain")
    form = await consumer.post("/v1/verifications", data=query_of(invoice), headers={"Origin": EVIL})
    refused_as_415(form, "application/x-www-form-urlencoded")
    bare = await consumer.post("/v1/verifications", content=body, headers={"Content-Type": ""})
    assert bare.status_code == 415
    assert await times_verified(verify_server, invoice) == 1  # none of the three was carried out
    charset = await consumer.post(
        "/v1/verifications", content=body, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert charset.status_code == 200 and charset.json()["times_verified"] == 2


async def test_issuer_and_postal_routes_read_only_json(
    seller: Any, verify_server: ServerProcess, pool: asyncpg.Pool
) -> None:
    invoice = await seller.issue()
    issued = await seller.post("/v1/invoices", content=json.dumps(dict(invoice_body())), headers=PLAIN)
    refused_as_415(issued, "text/plain")
    void = await seller.post(f"/v1/invoices/{invoice['id']}/void", content='{"reason": "x"}', headers=PLAIN)
    refused_as_415(void, "text/plain")
    listed = (await seller.get("/v1/invoices")).json()["items"]
    assert [i["id"] for i in listed] == [invoice["id"]]  # nothing issued, nothing voided
    assert listed[0]["status"] == "issued"
    _, key = await new_operator(pool, ["63"])
    async with httpx.AsyncClient(base_url=verify_server.base_url, headers={"Authorization": f"Bearer {key}"}) as op:
        events = await op.post("/v1/postal/events", content='{"events": []}', headers=PLAIN)
        refused_as_415(events, "text/plain")


async def test_a_form_post_without_the_pages_token_is_refused(
    consumer: Any, seller: Any, verify_server: ServerProcess
) -> None:
    """The attack: an auto-submitting form on another site posts the fields to /verify. Without the page's cookie
    and token pair, or with another browser's token, or announced as cross-site, it is a 403 page."""
    invoice = await seller.issue()
    fields = form_of(invoice, phone="+8613900139001")
    no_token = await consumer.post("/verify", data=fields)
    assert no_token.status_code == 403 and no_token.headers["content-type"].startswith("text/html")
    assert 'id="failure"' in no_token.text and "data-result" not in no_token.text
    async with httpx.AsyncClient(
        base_url=verify_server.base_url, headers={"X-Forwarded-For": random_address()}
    ) as other:
        foreign = await form_token(other)  # a valid token of the attacker's own, without the victim's cookie
    assert (await consumer.post("/verify", data={**fields, "_csrf_token": foreign})).status_code == 403
    mine = await form_token(consumer)
    altered = mine[:-1] + ("1" if mine.endswith("0") else "0")  # always another token (ended in "0" 1 time in 16)
    assert (await consumer.post("/verify", data={**fields, "_csrf_token": altered})).status_code == 403
    for headers in (
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        refused = await post_form(consumer, fields, **headers)  # a valid pair, but the browser says: another site
        assert refused.status_code == 403 and "请在本站查验页面提交表单" in refused.text, headers
    assert await times_verified(verify_server, invoice) == 1  # none of the refused posts was verified
    same = await post_form(consumer, fields, Origin=verify_server.base_url, **{"Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200 and 'data-result="valid"' in same.text


async def test_a_page_on_another_origin_cannot_make_its_visitor_verify(
    browser: Browser, seller: Any, verify_server: ServerProcess
) -> None:
    """A visitor who has used the verify page before opens the attacker's page, which submits a form (with a
    token the attacker fetched for itself) to our /verify. Chromium sends no cookie (SameSite=Strict) and says
    where the post comes from: the visitor sees the 403 page, and nothing is verified or texted."""
    invoice = await seller.issue()
    async with httpx.AsyncClient(base_url=verify_server.base_url) as attacker:
        token = await form_token(attacker)
    inputs = "".join(
        f'<input name="{k}" value="{v}">'
        for k, v in {**form_of(invoice, phone="+8613900139002"), "_csrf_token": token}.items()
    )
    evil_page = f'<form id="f" method="post" action="{verify_server.base_url}/verify">{inputs}</form>'
    evil_page += '<script>document.getElementById("f").submit()</script>'

    async def serve_evil(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/html", body=evil_page)

    page = await new_page(browser, None)
    await page.goto(verify_server.base_url + "/verify")  # the visitor has the page's cookie
    await page.route(EVIL + "/**", serve_evil)
    async with page.expect_navigation(url=verify_server.base_url + "/verify") as navigation:
        await page.goto(EVIL + "/win-a-prize")
    answer = await navigation.value
    assert answer is not None and answer.status == 403
    assert "请在本站查验页面提交表单" in await page.inner_text("#failure")
    assert await page.query_selector("#result") is None
    await page.context.close()
    assert await times_verified(verify_server, invoice) == 1
