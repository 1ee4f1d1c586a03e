"""The page's and the API's headers, as a browser and a cache see them: a CSP with no inline script or style and
no framing, nosniff, a Referrer-Policy, one charset, `no-store` on every answer that carries a check code, the
API reference UI served from the package, and times in Beijing time with the zone shown."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser, ConsoleMessage

from invoicing.formats import parse_rfc3339
from invoicing.model import beijing_time
from tests.browser import new_page
from tests.conftest import ServerProcess
from tests.e2e.test_verify_page import form_of
from tests.samples import invoice_body
from tests.verification_fixtures import post_form, query_of, random_address


def test_beijing_time_shows_the_zone() -> None:
    assert beijing_time(datetime(2026, 11, 30, 15, 5, tzinfo=UTC)) == "2026-11-30 23:05 (北京时间 UTC+8)"
    assert beijing_time(datetime(2026, 12, 31, 16, 0, tzinfo=UTC)) == "2027-01-01 00:00 (北京时间 UTC+8)"


def page_headers_are_safe(answer: httpx.Response) -> None:
    headers = answer.headers
    assert headers["content-type"] == "text/html; charset=utf-8"  # once, not twice
    csp = {d.split()[0]: d.split()[1:] for d in (p.strip() for p in headers["content-security-policy"].split(";"))}
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"] and csp["default-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["form-action"] == ["'self'"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "same-origin"
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
    html = answer.text
    assert "<style" not in html and " style=" not in html  # no inline style for the CSP to allow
    assert all(re.search(r"\bsrc=", tag) for tag in re.findall(r"<script[^>]*>", html))  # no inline script
    for url in re.findall(r'(?:href|src)="([^"]+)"', html):
        assert url.startswith("/") and not url.startswith("//"), url  # nothing from another origin


async def test_every_page_carries_the_headers(consumer: Any, seller: Any) -> None:
    invoice = await seller.issue()
    page_headers_are_safe(await consumer.get("/verify"))
    page_headers_are_safe(await consumer.get(invoice["verify_url"]))  # the QR page
    page_headers_are_safe(await post_form(consumer, form_of(invoice)))
    page_headers_are_safe(await post_form(consumer, form_of(invoice, invoice_code="12")))  # 422
    page_headers_are_safe(await consumer.post("/verify", data=form_of(invoice)))  # 403, no token
    css = await consumer.get("/static/verify/verify.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert css.headers["x-content-type-options"] == "nosniff"


async def test_text_answers_say_their_charset_once(consumer: Any) -> None:
    for path in ("/v1/log/key", "/verify"):  # the checkpoint and the manifest CSV: their own tests
        answer = await consumer.get(path)
        assert answer.headers["content-type"].count("charset") == 1, (path, answer.headers["content-type"])


async def test_answers_with_a_check_code_are_not_stored(seller: Any) -> None:
    invoice = await seller.issue()
    assert "check_code" in invoice
    for path in (f"/v1/invoices/{invoice['id']}", "/v1/invoices", f"/v1/invoices/{invoice['id']}/pdf"):
        answer = await seller.get(path)
        assert answer.status_code == 200 and "no-store" in answer.headers["cache-control"], path
    issued = await seller.post("/v1/invoices", json=invoice_body())
    assert issued.status_code == 201 and issued.headers["cache-control"] == "no-store"


async def test_the_api_reference_loads_nothing_from_elsewhere(consumer: Any) -> None:
    page = await consumer.get("/schema")
    assert page.status_code == 200 and "swagger-ui" in page.text
    urls = re.findall(r"""(?:href|src)=['"]([^'"]+)['"]""", page.text)
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert "cdn." not in page.text and "unpkg" not in page.text and "@latest" not in page.text
    for url in urls:
        assert (await consumer.get(url)).status_code == 200, url


async def test_chromium_verifies_under_the_csp_with_no_violation(
    browser: Browser, verify_server: ServerProcess, seller: Any, output_dir: Path
) -> None:
    """The whole verification in Chromium under the page's CSP: no violation in the console, the stylesheet
    applied, and the first verification's time in Beijing time with the zone."""
    invoice = await seller.issue()
    async with httpx.AsyncClient(base_url=verify_server.base_url, headers={"X-Forwarded-For": random_address()}) as c:
        first = (await c.post("/v1/verifications", json=query_of(invoice))).json()["first_verified_at"]
    page = await new_page(browser, "phone")
    messages: list[str] = []
    page.on("console", lambda m: messages.append(f"{m.type}: {m.text}") if isinstance(m, ConsoleMessage) else None)
    await page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error('CSP violation ' + e.violatedDirective))"
    )
    await page.goto(verify_server.base_url + "/verify")
    brand = await page.evaluate("getComputedStyle(document.querySelector('header')).backgroundColor")
    assert brand == "rgb(179, 38, 30)"  # the stylesheet from /static/verify/ is applied
    await page.fill("#invoice_code", invoice["invoice_code"])
    await page.fill("#invoice_number", invoice["invoice_number"])
    await page.fill("#issue_date", invoice["issue_date"])
    await page.fill("#check_code_last6", invoice["check_code"][-6:])
    await page.click("button[type=submit]")
    assert await page.get_attribute("#result", "data-result") == "valid"
    text = await page.inner_text("#result")
    assert beijing_time(parse_rfc3339(first)) in text and "UTC+8" in text and " UTC<" not in await page.content()
    shots = output_dir / "verify"
    shots.mkdir(exist_ok=True)
    await page.screenshot(path=str(shots / "csp-valid-beijing-time.png"), full_page=True)
    await page.goto(invoice["verify_url"])
    assert await page.get_attribute("#result", "data-result") == "valid"
    await page.goto(verify_server.base_url + "/schema")
    await page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    await page.screenshot(path=str(output_dir / "verify" / "api-reference.png"))
    await page.context.close()
    violations = [m for m in messages if "Content Security Policy" in m or "CSP violation" in m]
    assert not violations, violations
