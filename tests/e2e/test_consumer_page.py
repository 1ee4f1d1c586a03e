"""What a consumer sees on a phone (issue 14 item 5): the verify page in headless Chromium at 390×844, the photo
upload before the accountant's CSV, and each way of verifying answered. The screenshots go to
test-output/consumers/; docs/consumers.md shows copies of them (docs/img/)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from tests.browser import SCREENS, new_page
from tests.conftest import ServerProcess
from tests.e2e.test_verify_scan import pdf_of, phone_photo


@pytest.fixture
async def phone(browser: Browser) -> AsyncIterator[Page]:
    page = await new_page(browser, "phone")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    assert not errors, errors  # no CSP refusal, no script error
    await page.context.close()


async def shoot(page: Page, output_dir: Path, name: str) -> None:
    shots = output_dir / "consumers"
    shots.mkdir(exist_ok=True)
    await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    await page.screenshot(path=str(shots / f"{name}-screen.png"))  # what the phone shows first
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= SCREENS["phone"]["width"], f"{name}: the page is {width} px wide"  # nothing sticks out


async def test_on_a_phone_the_typed_form_then_the_photo_then_the_csv(
    phone: Page, verify_server: ServerProcess, output_dir: Path
) -> None:
    await phone.goto(verify_server.base_url + "/verify")
    order = await phone.eval_on_selector_all("main form.card", "forms => forms.map(f => f.id)")
    assert order == ["verify-form", "scan-form", "bulk-form"]  # one invoice's photo far more often than a CSV
    assert await phone.get_attribute("#scan-file", "capture") == "environment"
    await shoot(phone, output_dir, "phone-verify-page")


async def test_on_a_phone_a_photo_of_the_invoice_verifies(
    phone: Page, verify_server: ServerProcess, seller: Any, output_dir: Path, tmp_path: Path
) -> None:
    invoice = await seller.issue(lines=2)
    photo = tmp_path / "invoice.jpg"
    photo.write_bytes(phone_photo(await pdf_of(seller, invoice), 3.0))
    await phone.goto(verify_server.base_url + "/verify")
    await phone.set_input_files("#scan-file", str(photo))
    await phone.click("#scan-form button[type=submit]")
    await phone.wait_for_selector("#scan-1")
    assert await phone.get_attribute("#scan-1", "data-result") == "valid"
    assert invoice["invoice_number"] in await phone.inner_text("#scan-1")
    await shoot(phone, output_dir, "phone-photo-valid")


async def test_on_a_phone_a_typed_check_and_a_qr_link(
    phone: Page, verify_server: ServerProcess, seller: Any, output_dir: Path
) -> None:
    invoice = await seller.issue(lines=3)
    await phone.goto(verify_server.base_url + "/verify")
    await phone.fill("#invoice_code", invoice["invoice_code"])
    await phone.fill("#invoice_number", invoice["invoice_number"])
    await phone.fill("#issue_date", invoice["issue_date"])
    await phone.fill("#check_code_last6", invoice["check_code"][-6:])
    await phone.click("#verify-form button[type=submit]")
    assert await phone.get_attribute("#result", "data-result") == "valid"
    await shoot(phone, output_dir, "phone-typed-valid")
    await phone.goto(invoice["verify_url"])  # what the camera app opens from the printed QR code
    assert await phone.get_attribute("#result", "data-result") == "valid"
    await shoot(phone, output_dir, "phone-qr-valid")


async def test_on_a_phone_a_csv_of_invoices(
    phone: Page, verify_server: ServerProcess, seller: Any, output_dir: Path, tmp_path: Path
) -> None:
    issued = [await seller.issue() for _ in range(3)]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["invoice_code", "invoice_number", "issue_date", "check_code_last6"])
    for inv in issued:
        writer.writerow([inv["invoice_code"], inv["invoice_number"], inv["issue_date"], inv["check_code"][-6:]])
    writer.writerow([issued[0]["invoice_code"], issued[0]["invoice_number"], issued[0]["issue_date"], "000000"])
    source = tmp_path / "invoices.csv"
    source.write_text(out.getvalue(), encoding="utf-8")
    await phone.goto(verify_server.base_url + "/verify")
    await phone.set_input_files("#csv", str(source))
    await phone.click("#bulk-form button[type=submit]")
    await phone.wait_for_selector("#bulk-table")
    shown = await phone.eval_on_selector_all("#bulk-table tbody tr", "rows => rows.map(r => r.dataset.result)")
    assert shown == ["valid", "valid", "valid", "mismatch"]
    await shoot(phone, output_dir, "phone-bulk")
