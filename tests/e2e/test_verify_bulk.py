"""Verify in bulk: `POST /v1/verifications/batch` and the page's CSV upload, on a real server. Every item counts
against its client's limits like a lone verification, so batching buys no extra guesses (the attacker tests)."""

from __future__ import annotations

import csv
import html
import io
import re
from pathlib import Path
from typing import Any

from playwright.async_api import Browser

from tests.browser import new_page
from tests.conftest import ServerProcess
from tests.verification_fixtures import altcha_payload, form_token, query_of, wrong_last6


async def batch(consumer: Any, items: list[dict[str, Any]], **extra: Any) -> Any:
    return await consumer.post("/v1/verifications/batch", json={"items": items, **extra})


async def test_a_batch_answers_each_item_in_order(consumer: Any, seller: Any) -> None:
    first, second = await seller.issue(), await seller.issue()
    items = [
        query_of(first),
        query_of(second, check_code_last6=wrong_last6(second)),
        query_of(first, invoice_number="99999999"),
        query_of(second),
        query_of(first),
    ]
    response = await batch(consumer, items)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["result"] for r in results] == ["valid", "mismatch", "not_found", "valid", "valid"]
    assert results[0]["invoice"]["invoice_number"] == first["invoice_number"] and results[0]["times_verified"] == 1
    assert results[3]["invoice"]["invoice_number"] == second["invoice_number"]
    assert results[4]["times_verified"] == 2  # counted one by one, as lone verifications are
    assert results[1]["invoice"] is None and results[1]["times_verified"] == 0
    assert all(set(r) >= {"result", "message", "invoice", "times_verified", "first_verified_at"} for r in results)


async def test_too_many_items_or_a_bad_item_is_refused_naming_it(consumer: Any, seller: Any) -> None:
    invoice = await seller.issue()
    too_many = await batch(consumer, [query_of(invoice)] * 201)
    assert too_many.status_code == 422 and too_many.headers["content-type"].startswith("application/problem+json")
    assert too_many.json()["errors"] == [
        {"field": "items", "message": "must hold 1 to 200 items, this one has 201: split it"}
    ]
    assert (await batch(consumer, [])).status_code == 422
    bad = await batch(consumer, [query_of(invoice), query_of(invoice, issue_date="2026-13-40", extra="x")])
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} >= {"items[1].extra"}
    bad_date = await batch(consumer, [query_of(invoice), query_of(invoice, issue_date="2026-13-40")])
    assert [e["field"] for e in bad_date.json()["errors"]] == ["items[1].issue_date"]
    proof_per_item = await batch(consumer, [query_of(invoice, altcha="x")])
    assert proof_per_item.json()["errors"][0]["field"] == "items[0].altcha"
    padded = [{**query_of(invoice), "phone": " " * 2000}] * 60  # over the body limit before any parsing
    huge = await batch(consumer, padded)
    assert huge.status_code == 413 and huge.headers["content-type"].startswith("application/problem+json")
    # nothing of the refused batches was verified or counted
    assert (await batch(consumer, [query_of(invoice)])).json()["results"][0]["times_verified"] == 1


async def test_batching_buys_no_more_verifications_a_minute(consumer: Any, seller: Any) -> None:
    """The attacker: 200 items in one request from one address. Only the rate's 30 a minute are verified (up to 60
    if a loaded machine crosses into the next minute's window), the rest come back rate_limited; a second batch
    and a lone request are then refused as a whole. Fails if items bypass the per-client rate."""
    invoice = await seller.issue()
    results = (await batch(consumer, [query_of(invoice)] * 200)).json()["results"]
    verified = [r for r in results if r["result"] == "valid"]
    limited = [r for r in results if r["result"] == "rate_limited"]
    assert 30 <= len(verified) <= 60 and len(verified) + len(limited) == 200
    assert results[:30] == [r for r in results[:30] if r["result"] == "valid"]  # in order: the first ones got in
    assert all(1 <= r["retry_after"] <= 60 and "invoice" not in r for r in limited)
    assert max(r["times_verified"] for r in verified) == len(verified)  # the limited ones were not counted
    again = await batch(consumer, [query_of(invoice)] * 200)
    if again.status_code == 200:  # a new window began: its 30 at most
        assert sum(r["result"] == "valid" for r in again.json()["results"]) <= 30
    else:
        assert again.status_code == 429 and 1 <= int(again.headers["retry-after"]) <= 60
        assert again.headers["content-type"].startswith("application/problem+json")
        alone = await consumer.post("/v1/verifications", json=query_of(invoice))
        assert alone.status_code in (200, 429)


async def test_guesses_in_a_batch_lock_like_guesses_one_by_one(consumer: Any, seller: Any) -> None:
    """The attacker: 12 check-code guesses in one batch. The client's lock on the invoice applies across items
    (5 wrong, then locked, the right code included), as it does to lone requests."""
    invoice = await seller.issue()
    right = invoice["check_code"][-6:]
    guesses = [f"{(int(right) + k) % 10**6:06d}" for k in range(1, 12)] + [right]
    results = (await batch(consumer, [query_of(invoice, check_code_last6=g) for g in guesses])).json()["results"]
    assert [r["result"] for r in results] == ["mismatch"] * 5 + ["locked"] * 7


async def test_a_challenged_item_is_answered_after_the_batch_proves(consumer: Any, seller: Any) -> None:
    """The amount path asks a client not yet proven for a proof of work: that item answers challenge_required
    (the others are answered), the answer carries the challenge, and the batch sent again with `altcha` gets it."""
    invoice = await seller.issue()
    by_amount = query_of(invoice, check_code_last6=None, total_amount=invoice["total_amount"])
    other = await seller.issue()
    first = (await batch(consumer, [by_amount, query_of(other, invoice_number="99999999")])).json()
    assert [r["result"] for r in first["results"]] == ["challenge_required", "not_found"]
    assert "invoice" not in first["results"][0] and first["challenge"]["parameters"]
    proven = await batch(consumer, [by_amount], altcha=altcha_payload(first["challenge"]))
    assert proven.status_code == 200 and proven.json()["results"][0]["result"] == "valid"
    replay = await batch(consumer, [by_amount], altcha=altcha_payload(first["challenge"]))
    assert replay.status_code == 428 and replay.json()["challenge"]


def upload_of(rows: list[list[str]], bom: bool = False) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(
        [["invoice_code", "invoice_number", "issue_date", "check_code_last6"], *rows]
    )
    return (("\ufeff" if bom else "") + out.getvalue()).encode()


def row_of(invoice: dict[str, Any], **overrides: str) -> list[str]:
    q = query_of(invoice, **overrides)
    return [q["invoice_code"], q["invoice_number"], q["issue_date"], q["check_code_last6"]]


async def upload(consumer: Any, data: bytes) -> Any:
    token = await form_token(consumer)
    return await consumer.post(
        "/verify/batch", data={"_csrf_token": token}, files={"csv": ("invoices.csv", data, "text/csv")}
    )


async def test_csv_upload_over_http_and_a_formula_comes_back_as_text(consumer: Any, seller: Any) -> None:
    invoice = await seller.issue()
    formula = '=HYPERLINK("http://evil.example/","click")'
    page = await upload(consumer, upload_of([row_of(invoice), row_of(invoice, invoice_number=formula)], bom=True))
    assert page.status_code == 200, page.text[:2000]
    assert page.text.count('data-result="valid"') == 1 and 'data-result="invalid"' in page.text
    token = await form_token(consumer)
    found = re.findall(r'name="(results|signature)" value="([^"]*)"', page.text)
    fields = {name: html.unescape(value) for name, value in found}
    download = await consumer.post("/verify/batch.csv", data={"_csrf_token": token, **fields})
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(download.content.decode("utf-8-sig"))))
    assert [r["result"] for r in table] == ["valid", "invalid"]
    assert table[1]["invoice_number"] == "'" + formula  # a spreadsheet shows it as text
    assert table[0]["seller_name"] == invoice["seller"]["name"]
    forged = await consumer.post(
        "/verify/batch.csv", data={"_csrf_token": token, "results": fields["results"], "signature": "0" * 64}
    )
    assert forged.status_code == 422
    no_token = await consumer.post("/verify/batch", files={"csv": ("a.csv", upload_of([row_of(invoice)]))})
    assert no_token.status_code == 403  # the CSRF middleware: a page elsewhere cannot make visitors verify


async def test_a_bad_csv_is_refused_on_the_page(consumer: Any, seller: Any) -> None:
    invoice = await seller.issue()
    too_many = await upload(consumer, upload_of([row_of(invoice)] * 201))
    assert too_many.status_code == 422 and "at most 200" in too_many.text and 'data-result="' not in too_many.text
    not_utf8 = await upload(consumer, "invoice_code,发票\r\n".encode("gb18030"))
    assert not_utf8.status_code == 422 and "UTF-8" in not_utf8.text
    no_header = await upload(consumer, b"044012600111,00000001,2026-11-27,123456\r\n")
    assert no_header.status_code == 422 and "header row" in no_header.text


async def test_the_clerk_uploads_a_csv_in_chromium_and_downloads_the_results(
    browser: Browser, verify_server: ServerProcess, seller: Any, output_dir: Path, tmp_path: Path
) -> None:
    ok, other = await seller.issue(), await seller.issue()
    rows = [row_of(ok), row_of(other, check_code_last6=wrong_last6(other)), row_of(ok, invoice_number="99999999")]
    rows.append(row_of(ok, invoice_number="=1+2"))
    source = tmp_path / "invoices.csv"
    source.write_bytes(upload_of(rows, bom=True))
    page = await new_page(browser, "phone")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(verify_server.base_url + "/verify")
    await page.set_input_files("#csv", str(source))
    await page.click("#bulk-form button[type=submit]")
    await page.wait_for_selector("#bulk-table")
    shots = output_dir / "verify"
    shots.mkdir(exist_ok=True)
    await page.screenshot(path=str(shots / "phone-bulk.png"), full_page=True)
    shown = await page.eval_on_selector_all("#bulk-table tbody tr", "rows => rows.map(r => r.dataset.result)")
    assert shown == ["valid", "mismatch", "not_found", "invalid"]
    async with page.expect_download() as info:
        await page.click("#bulk-download button[type=submit]")
    saved = tmp_path / "results.csv"
    await (await info.value).save_as(saved)
    table = list(csv.DictReader(io.StringIO(saved.read_bytes().decode("utf-8-sig"))))
    assert [r["result"] for r in table] == shown
    assert table[0]["invoice_number"] == ok["invoice_number"] and table[0]["total"] == ok["total"]
    assert table[3]["invoice_number"] == "'=1+2"
    assert not [e for e in errors if "Content Security Policy" in e], errors
    await page.context.close()


async def test_the_batch_route_documents_its_refusals(consumer: Any) -> None:
    schema = (await consumer.get("/schema/openapi.json")).json()
    answers = schema["paths"]["/v1/verifications/batch"]["post"]["responses"]
    assert {"200", "400", "413", "415", "422", "428", "429", "503"} <= set(answers)
    assert "Retry-After" in answers["429"]["headers"]
