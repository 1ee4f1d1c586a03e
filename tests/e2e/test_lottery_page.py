"""The lottery page: registration by the form (CSRF token and same-site check, refused without them), the offer on
the verify page after a `valid` result, the periods with masked winners; and the real page in headless Chromium at
phone width, with screenshots in test-output/lottery/."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from playwright.async_api import Browser

from invoicing.model import local_date
from tests.browser import SCREENS, new_page
from tests.conftest import ServerProcess
from tests.e2e.test_lottery import PAST, closed_period_with_entries
from tests.verification_fixtures import post_form, random_address, random_mobile
from verification import lottery as rules
from verification.lottery_services import draw


async def lottery_token(client: httpx.AsyncClient, path: str = "/lottery") -> str:
    page = await client.get(path)
    match = re.search(r'name="_csrf_token" value="([0-9a-f]+)"', page.text)
    assert match, page.text[:2000]
    return match[1]


def fields_of(invoice: dict[str, Any], phone: str) -> dict[str, str]:
    return {
        "invoice_code": invoice["invoice_code"],
        "invoice_number": invoice["invoice_number"],
        "issue_date": invoice["issue_date"],
        "check_code_last6": invoice["check_code"][-6:],
        "phone": phone,
    }


async def test_the_form_registers_and_refuses_without_its_token_or_from_another_site(
    consumer: httpx.AsyncClient, seller: Any, pool: asyncpg.Pool
) -> None:
    invoice, phone = await seller.issue(), random_mobile()
    async with httpx.AsyncClient(
        base_url=str(consumer.base_url), headers={"X-Forwarded-For": random_address()}
    ) as bare:
        forged = await bare.post("/lottery", data=fields_of(invoice, phone))  # a page elsewhere posting: no token
        assert forged.status_code == 403
    token = await lottery_token(consumer)
    other_site = await consumer.post(
        "/lottery", data={**fields_of(invoice, phone), "_csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert other_site.status_code == 403
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM lottery_entries WHERE phone = $1", phone) == 0
    page = await consumer.post("/lottery", data={**fields_of(invoice, phone), "_csrf_token": token})
    assert page.status_code == 201 and 'id="registered"' in page.text
    entry_id = rules.entry_id(
        rules.period_of(local_date(datetime.now(UTC))), invoice["invoice_code"], invoice["invoice_number"]
    )
    assert entry_id in page.text and phone not in page.text
    again = await consumer.post("/lottery", data={**fields_of(invoice, phone), "_csrf_token": token})
    assert again.status_code == 409 and "registered for the lottery already" in again.text


async def test_the_verify_page_offers_the_lottery_after_a_valid_result(
    consumer: httpx.AsyncClient, seller: Any
) -> None:
    invoice = await seller.issue()
    valid = await post_form(consumer, {k: v for k, v in fields_of(invoice, "").items() if v})
    assert 'id="lottery-offer"' in valid.text
    link = re.search(r'href="(/lottery\?[^"]+)"', valid.text)
    assert link and invoice["check_code"][-6:] not in link[1]
    filled = await consumer.get(link[1].replace("&amp;", "&"))
    assert f'value="{invoice["invoice_number"]}"' in filled.text
    wrong = await post_form(consumer, {**fields_of(invoice, ""), "phone": "", "check_code_last6": "000000"})
    assert 'id="lottery-offer"' not in wrong.text


async def test_the_page_on_a_phone(
    browser: Browser, verify_server: ServerProcess, seller: Any, pool: asyncpg.Pool, output_dir: Path
) -> None:
    shots = output_dir / "lottery"
    shots.mkdir(exist_ok=True)
    winners_phones = [phone for _, phone in await closed_period_with_entries(seller, pool, 6)]
    await draw(pool, PAST, rules.DEFAULT_PRIZES[:2], b"", datetime.now(UTC))
    invoice, phone = await seller.issue(), random_mobile()
    page = await new_page(browser, "phone")
    await page.goto(invoice["verify_url"])
    await page.screenshot(path=str(shots / "phone-verify-offer.png"), full_page=True)
    await page.click("#lottery-offer a")
    assert await page.input_value("#invoice_number") == invoice["invoice_number"]
    await page.fill("#check_code_last6", invoice["check_code"][-6:])
    await page.fill("#phone", phone[3:])  # as a person types it: 139..., no +86
    await page.click("#lottery-form button[type=submit]")
    await page.wait_for_selector("#registered")
    await page.screenshot(path=str(shots / "phone-registered.png"), full_page=True)
    text = await page.inner_text("body")
    assert "登记成功" in text and f"{PAST} 期" in text and "已开奖" in text
    assert not any(p in text or p[3:] in text for p in winners_phones)  # masked: +86 139****1234
    assert re.search(r"\+86 139\*{4}\d{4}", text)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= SCREENS["phone"]["width"]  # nothing wider than the phone
    await page.context.close()
