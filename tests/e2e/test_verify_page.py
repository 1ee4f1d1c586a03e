"""The verification page: every outcome over HTTP, and the real page in headless Chromium (Playwright),
on a phone-sized and a desktop-sized screen, with screenshots in test-output/verify/."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser

from invoiceloop.app import log_signer
from invoicing import transparency
from tests.browser import SCREENS, new_page
from tests.conftest import ServerProcess
from tests.delivery_fixtures import wait_until
from tests.verification_fixtures import invoices_in_every_state, post_form, query_of, wrong_last6


def form_of(invoice: dict[str, Any], **overrides: str) -> dict[str, str]:
    fields = {
        "invoice_code": invoice["invoice_code"],
        "invoice_number": invoice["invoice_number"],
        "issue_date": invoice["issue_date"],
        "check_code_last6": invoice["check_code"][-6:],
        "total_amount": "",
        "phone": "",
    }
    fields.update(overrides)
    return fields


def result_of(html: str) -> str:
    match = re.search(r'data-result="([a-z_]+)"', html)
    assert match, html[:2000]
    return match[1]


async def test_every_outcome_on_the_page(consumer: Any, seller: Any, pool: asyncpg.Pool) -> None:
    ok, voided, reversed_, partial, tampered = await invoices_in_every_state(seller, pool)
    cases = [
        (ok, {}, "valid"),
        (voided, {}, "voided"),
        (reversed_, {}, "reversed"),
        (partial, {}, "partially_credited"),
        (tampered, {}, "tampered"),
        (ok, {"invoice_number": "99999999"}, "not_found"),
        (ok, {"check_code_last6": "", "total_amount": ok["total_amount"]}, "valid"),
    ]
    for invoice, overrides, outcome in cases:
        page = await post_form(consumer, form_of(invoice, **overrides))
        assert page.status_code == 200 and result_of(page.text) == outcome
        assert page.headers["content-type"].startswith("text/html")
    for _ in range(5):
        page = await post_form(consumer, form_of(ok, check_code_last6=wrong_last6(ok)))
        assert result_of(page.text) == "mismatch"
    assert result_of((await post_form(consumer, form_of(ok))).text) == "locked"


async def test_page_shows_masked_buyer_and_field_errors(consumer: Any, seller: Any) -> None:
    invoice = await seller.issue()
    page = (await post_form(consumer, form_of(invoice))).text
    assert "张*" in page and "+86 138****8000" in page and "13800138000" not in page
    assert invoice["check_code"] not in page and invoice["seller"]["tax_id"] in page
    bad = await post_form(consumer, form_of(invoice, invoice_code="12", issue_date="2026-13-40"))
    assert bad.status_code == 422 and "12-digit invoice code" in bad.text and "issue date" in bad.text
    blank = await consumer.get("/verify")
    assert blank.status_code == 200 and "data-result" not in blank.text and "<form" in blank.text
    assert re.findall(r'(?:href|src)="([^"]+)"', blank.text) == ["/static/verify/verify.css"]  # nothing from elsewhere


async def test_qr_url_with_forged_signature_says_so(consumer: Any, seller: Any) -> None:
    invoice = await seller.issue()
    forged = re.sub(r"&s=[^&]+", "&s=" + "A" * 86, invoice["verify_url"])
    page = (await consumer.get(forged)).text
    assert 'id="qr-signature"' in page and "QR signature invalid" in page
    assert result_of(page) == "valid"  # the details still match; the badge warns about the QR itself


async def in_the_log(pool: asyncpg.Pool, settings: Any, server: ServerProcess) -> None:
    """Sequence what is queued (as the worker would), and wait until the server shows the new checkpoint."""
    while await transparency.sequence(pool, log_signer(settings)):
        pass
    size = await pool.fetchval("SELECT size FROM log_head")

    async def served() -> bool:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            return int((await client.get("/v1/log/checkpoint")).text.splitlines()[1]) >= size

    await wait_until(served, timeout_s=30, every_s=0.2)


@pytest.mark.parametrize("screen", ["phone", "desktop"])
async def test_browser_form_qr_and_mismatch(
    browser: Browser,
    verify_server: ServerProcess,
    seller: Any,
    output_dir: Path,
    screen: str,
    pool: asyncpg.Pool,
    settings: Any,
) -> None:
    shots = output_dir / "verify"
    shots.mkdir(exist_ok=True)
    invoice = await seller.issue(lines=3)
    await in_the_log(pool, settings, verify_server)
    page = await new_page(browser, screen)
    await page.goto(verify_server.base_url + "/verify")
    await page.screenshot(path=str(shots / f"{screen}-form.png"), full_page=True)
    await page.fill("#invoice_code", invoice["invoice_code"])
    await page.fill("#invoice_number", invoice["invoice_number"].lstrip("0"))
    await page.fill("#issue_date", invoice["issue_date"])
    await page.fill("#check_code_last6", invoice["check_code"][-6:])
    await page.click("button[type=submit]")
    assert await page.get_attribute("#result", "data-result") == "valid"
    assert "查验一致" in await page.inner_text("#result") and "张*" in await page.inner_text("#invoice")
    assert "已记入公开日志" in await page.inner_text("#log-entry")
    await page.screenshot(path=str(shots / f"{screen}-valid.png"), full_page=True)

    await page.goto(invoice["verify_url"])
    assert await page.get_attribute("#result", "data-result") == "valid"
    assert "QR signature valid" in await page.inner_text("#qr-signature")
    await page.screenshot(path=str(shots / f"{screen}-qr.png"), full_page=True)

    await page.fill("#check_code_last6", wrong_last6(invoice))
    await page.click("button[type=submit]")
    assert await page.get_attribute("#result", "data-result") == "mismatch"
    assert "查验不一致" in await page.inner_text("#result")
    assert await page.query_selector("#invoice") is None
    await page.screenshot(path=str(shots / f"{screen}-mismatch.png"), full_page=True)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= SCREENS[screen]["width"]  # nothing sticks out sideways
    await page.context.close()


async def test_an_unreachable_cache_is_a_503_page_and_problem(
    browser: Browser, settings: Any, seller: Any, output_dir: Path
) -> None:
    """Redis down: the page tells the person to try again shortly, the JSON endpoint answers problem+json,
    both 503 with Retry-After (the request may be sent again as it is), and the server keeps serving."""
    invoice = await seller.issue()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # a port nobody listens on
    port = closed.getsockname()[1]
    server = ServerProcess(settings, output_dir / "verify-no-redis.log", REDIS_URL=f"redis://127.0.0.1:{port}/0")
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            answer = await client.post("/v1/verifications", json=query_of(invoice))
            assert answer.status_code == 503 and answer.headers["content-type"].startswith("application/problem+json")
            assert answer.headers["retry-after"] == str(answer.json()["retry_after"]) and answer.json()["status"] == 503
            form = await post_form(client, form_of(invoice))
            assert form.status_code == 503 and form.headers["content-type"].startswith("text/html")
            assert 'id="failure"' in form.text and "data-result" not in form.text and form.headers["retry-after"]
            assert (await client.get("/healthz")).status_code == 200
        page = await new_page(browser, "phone")
        opened = await page.goto(server.base_url + "/verify" + invoice["verify_url"].split("/verify", 1)[1])
        assert opened is not None and opened.status == 503
        assert "暂时不可用" in await page.inner_text("#failure") and await page.query_selector("#result") is None
        assert await page.input_value("#invoice_code") == invoice["invoice_code"]  # ready to try again
        await page.screenshot(path=str(output_dir / "verify" / "phone-unavailable.png"), full_page=True)
        await page.context.close()
    finally:
        server.stop()
        closed.close()
    assert "unexpected" not in (output_dir / "verify-no-redis.log").read_text()  # a 503, not a 500 bug
