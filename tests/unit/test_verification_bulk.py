"""The pure half of verifying in bulk: reading the clerk's CSV and writing the results."""

from __future__ import annotations

import csv
import io

import pytest

from invoicing.errors import ValidationFailed
from verification.bulk import read_csv, result_row, results_csv, sign_results, signed_results

HEADER = "invoice_code,invoice_number,issue_date,check_code_last6\r\n"


def test_a_bom_and_blank_lines_are_fine() -> None:
    data = ("\ufeff" + HEADER + "044012600111, 00000001 ,2026-11-27,123456\r\n\r\n").encode()
    assert read_csv(data) == [
        {
            "invoice_code": "044012600111",
            "invoice_number": "00000001",
            "issue_date": "2026-11-27",
            "check_code_last6": "123456",
        }
    ]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"\xff\xfe", "UTF-8"),
        (b"", "empty"),
        (HEADER.encode(), "no rows"),
        (b"invoice_code,invoice_number,issue_date\r\n1,2,3\r\n", "header row"),
        (b"invoice_code,invoice_number,issue_date,check_code_last6,phone\r\n1,2,3,4,5\r\n", "unknown: phone"),
        ((HEADER + "1,2,3,4\r\n" * 201).encode(), "at most 200"),
        ((HEADER + "1,2,3,4,5\r\n").encode(), "more cells"),
    ],
)
def test_a_file_that_is_not_such_a_csv_is_refused_naming_why(data: bytes, says: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        read_csv(data)
    assert refused.value.errors[0].field == "csv" and says in refused.value.errors[0].message


def test_every_cell_of_the_results_is_neutralised_for_spreadsheets() -> None:
    fields = {"invoice_code": "+cmd|' /C calc'!A0", "invoice_number": "@SUM(A1)", "issue_date": "-1"}
    answer = {
        "result": "valid",
        "invoice": {"seller": {"name": "=HYPERLINK(1)", "tax_id": "x"}, "total": "1.00"},
        "times_verified": 1,
    }
    row = next(csv.DictReader(io.StringIO(results_csv([result_row(1, fields, answer)]))))
    assert row["invoice_code"].startswith("'+") and row["invoice_number"] == "'@SUM(A1)"
    assert row["issue_date"] == "'-1" and row["seller_name"] == "'=HYPERLINK(1)" and row["total"] == "1.00"


def test_only_signed_results_come_back() -> None:
    rows = [result_row(1, {}, {"result": "rate_limited", "retry_after": 7})]
    payload, signature = sign_results(b"k", rows)
    assert signed_results(b"k", payload, signature) == rows
    assert signed_results(b"k", payload.replace("7", "8"), signature) is None
    assert signed_results(b"other", payload, signature) is None
