"""The closed-loop page `/stats` in headless Chromium (Playwright), on a phone-sized and a desktop-sized screen:
the server-drawn SVG charts render, every number in its tables and bars is the one `/v1/stats/public` gives,
nothing breaks the page's CSP, and nothing sticks out sideways. Screenshots in test-output/stats/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, Page

from tests.browser import SCREENS, new_page
from tests.conftest import ServerProcess, new_issuer
from tests.samples import invoice_body
from tests.verification_fixtures import query_of, random_address


@pytest.fixture(scope="module")
async def loop_data(stats_server: ServerProcess, pool: asyncpg.Pool) -> None:
    """Three issuers in each of three provinces, some invoices verified; one issuer alone in Tibet."""
    for region, count in (("4401", 3), ("3301", 3), ("1101", 3), ("5401", 1)):
        for n in range(count):
            _, key = await new_issuer(pool, region)
            headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": random_address()}
            async with httpx.AsyncClient(base_url=stats_server.base_url, timeout=60, headers=headers) as seller:
                answer = await seller.post("/v1/invoices/batch", json={"invoices": [invoice_body()] * (n + 2)})
                assert answer.status_code == 201, answer.text
                for inv in answer.json()["invoices"][: n + 1]:
                    verified = await seller.post("/v1/verifications", json=query_of(inv))
                    assert verified.status_code == 200, verified.text


async def _page(browser: Browser, screen: str, errors: list[str]) -> Page:
    page = await new_page(browser, screen)
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


async def _table(page: Page, table_id: str) -> dict[str, dict[str, str]]:
    """Each row of a table: its key -> {field: text (or data-value for shares)}."""
    rows: dict[str, dict[str, str]] = {}
    for row in await page.query_selector_all(f"#{table_id} tbody tr"):
        key = await row.get_attribute("data-key") or ""
        cells: dict[str, str] = {}
        for cell in await row.query_selector_all("td[data-field]"):
            field = await cell.get_attribute("data-field") or ""
            cells[field] = await cell.get_attribute("data-value") or (await cell.inner_text()).strip()
        rows[key] = cells
    return rows


def _expected(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, str]]:
    fields = ("invoices", "amount", "verified_share", "delivered_share", "returned")
    return {str(r[key]): {f: str(r[f]) for f in fields} for r in rows}


@pytest.mark.parametrize("screen", ["phone", "desktop"])
async def test_the_page_draws_the_json_figures(
    browser: Browser, stats_server: ServerProcess, loop_data: None, output_dir: Path, screen: str
) -> None:
    shots = output_dir / "stats"
    shots.mkdir(exist_ok=True)
    errors: list[str] = []
    page = await _page(browser, screen, errors)
    response = await page.goto(stats_server.base_url + "/stats")
    assert response is not None and response.status == 200
    async with httpx.AsyncClient(base_url=stats_server.base_url) as client:
        figures = (await client.get("/v1/stats/public")).json()

    assert len(await page.query_selector_all("svg.chart")) == 4
    for chart in await page.query_selector_all("svg.chart"):
        box = await chart.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 30  # drawn, not collapsed
    provinces = {p["province"] for p in figures["provinces"]}
    assert provinces == {"11", "33", "44"}  # Tibet's lone issuer is left out
    bars = await page.query_selector_all("#chart-province-issued g.bar")
    bar_values = sorted([float(await b.get_attribute("data-value") or "nan") for b in bars])
    assert bar_values == sorted(float(p["invoices"]) for p in figures["provinces"])

    assert await _table(page, "table-month") == _expected(figures["months"], "month")
    assert await _table(page, "table-province") == _expected(figures["provinces"], "province")
    total = figures["total"]
    assert (await page.inner_text("#totals dd[data-field=invoices]")).strip() == str(total["invoices"])
    assert (await page.inner_text("#totals dd[data-field=amount]")).strip() == total["amount"]
    assert "西藏" not in await page.content()

    await page.screenshot(path=str(shots / f"{screen}.png"), full_page=True)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= SCREENS[screen]["width"]  # nothing sticks out sideways
    assert errors == []  # no CSP violation, no script error
    await page.context.close()


async def test_the_page_runs_under_the_strict_csp(stats_server: ServerProcess, loop_data: None) -> None:
    async with httpx.AsyncClient(base_url=stats_server.base_url) as client:
        answer = await client.get("/stats")
        css = await client.get("/static/verify/stats.css")
    headers = answer.headers
    assert headers["content-type"] == "text/html; charset=utf-8"
    csp = {d.split()[0]: d.split()[1:] for d in (p.strip() for p in headers["content-security-policy"].split(";"))}
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"] and csp["default-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"] and "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "public, max-age=0"  # this server keeps nothing; 60 by default
    html = answer.text
    assert "<script" not in html and "<style" not in html and " style=" not in html
    assert len(html) < 64 * 1024  # charts and tables in kilobytes, not a megabyte of JavaScript
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
