"""Real headless Chromium for the page tests (Debian's `chromium`, driven by Playwright; registered by conftest's
pytest_plugins): one browser per test module that asks for `browser`, and `new_page` for a fresh context (its
own cookies and client address) at a phone's or a desktop's size."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.verification_fixtures import random_address

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def new_page(browser: Browser, screen: str | None = "phone", **context: Any) -> Page:
    """A page in a context of its own: the screen's viewport (None: Playwright's default), zh-CN, and a client
    address no other test uses (the server trusts X-Forwarded-For from loopback; limits never leak between
    tests). `context` overrides any of these. Close it with `page.context.close()`."""
    options: dict[str, Any] = {"locale": "zh-CN", "extra_http_headers": {"X-Forwarded-For": random_address()}}
    if screen is not None:
        options["viewport"] = SCREENS[screen]
    made = await browser.new_context(**(options | context))
    return await made.new_page()
