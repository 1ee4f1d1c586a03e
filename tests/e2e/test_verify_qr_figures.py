"""A QR link with altered figures (issue 12, item 5): its `t=` changed to 114.70 said "查验一致 Genuine" with only a
red badge below. The headline is now a mismatch naming the figure, over HTTP and in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.async_api import Browser

from tests.browser import new_page
from tests.conftest import ServerProcess
from tests.e2e.test_verify_page import result_of


def altered(url: str, **figures: str) -> str:
    for name, value in figures.items():
        url = re.sub(rf"&{name}=[^&]+", f"&{name}={value}", url)
    return url


async def test_an_altered_total_makes_the_headline_a_mismatch(consumer: Any, seller: Any) -> None:
    invoice = await seller.issue()
    assert invoice["total"] != "114.70"
    page = await consumer.get(altered(invoice["verify_url"], t="114.70"))
    assert result_of(page.text) == "mismatch" and "查验一致" not in page.text and 'id="invoice"' not in page.text
    assert "查验不一致：二维码中的价税合计与记录不符" in page.text
    assert "the QR code&#39;s total incl. tax differs" in page.text and "QR signature invalid" in page.text
    both = await consumer.get(altered(invoice["verify_url"], a="1.00", x="0.13"))
    assert "二维码中的金额、税额与记录不符" in both.text
    genuine = await consumer.get(invoice["verify_url"])
    assert result_of(genuine.text) == "valid"


async def test_a_guessed_link_learns_nothing_of_its_figures(consumer: Any, seller: Any) -> None:
    """Without the invoice's full check code the answer names no figure: else it would tell a guesser that its
    guessed total was right and its code wrong."""
    invoice = await seller.issue()
    code = invoice["check_code"]
    wrong = code[:-6] + f"{(int(code[-6:]) + 1) % 10**6:06d}"
    page = await consumer.get(altered(invoice["verify_url"], k=wrong, t="114.70"))
    assert result_of(page.text) == "mismatch" and "二维码中的" not in page.text and "查验不一致" in page.text


async def test_the_altered_link_in_chromium(
    browser: Browser, verify_server: ServerProcess, seller: Any, output_dir: Path
) -> None:
    invoice = await seller.issue()
    page = await new_page(browser, "phone")
    await page.goto(altered(invoice["verify_url"], t="114.70"))
    assert await page.get_attribute("#result", "data-result") == "mismatch"
    headline = await page.inner_text("#result h2")
    assert headline == "查验不一致：二维码中的价税合计与记录不符"
    assert "total incl. tax differs" in await page.inner_text("#result .en")
    assert "QR signature invalid" in await page.inner_text("#qr-signature")
    assert await page.query_selector("#invoice") is None
    shots = output_dir / "verify"
    shots.mkdir(exist_ok=True)
    await page.screenshot(path=str(shots / "phone-qr-altered.png"), full_page=True)
    await page.context.close()
