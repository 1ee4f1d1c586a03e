"""Verify in bulk (the accounts-payable clerk's job): the CSV a clerk uploads on the page, the results as rows
(the page's table) and as a CSV download, and the per-item answers of refused items. Pure: the use case is
`services.verify_many`, which counts every item against its client's limits like a lone request.

The CSV in: a header row naming `invoice_code`, `invoice_number`, `issue_date` and `check_code_last6` and/or
`total_amount` (a row gives one of the two), then at most `MAX_ITEMS` rows; UTF-8 with or without a BOM. The CSV
out: `RESULT_COLUMNS`, every cell through the one spreadsheet rule (`invoicing.spreadsheet`), since cells hold what
the clerk's file said and what issuers typed (a seller named `=HYPERLINK(...)`)."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

from invoicing.errors import FieldError, RateLimited, ValidationFailed
from invoicing.spreadsheet import spreadsheet_safe
from verification.challenge import ChallengeRequired
from verification.model import OUTCOME_TEXT

MAX_ITEMS = 200  # items of POST /v1/verifications/batch, rows of the page's CSV
CSV_MAX_BYTES = 64 * 1024  # a 200-row file is about 12 KB
IDENTITY_COLUMNS = ("invoice_code", "invoice_number", "issue_date")
SECRET_COLUMNS = ("check_code_last6", "total_amount")
CSV_COLUMNS = (*IDENTITY_COLUMNS, *SECRET_COLUMNS)
RESULT_COLUMNS = (
    "row",
    "invoice_code",
    "invoice_number",
    "issue_date",
    "result",
    "message_zh",
    "message_en",
    "seller_name",
    "seller_tax_id",
    "total",
    "times_verified",
    "retry_after",
)
# The results an item of a bulk verification may have besides the outcomes of a verification.
REFUSAL_TEXT = {
    "rate_limited": (
        "查验过于频繁，本条未查验，请稍后再试",
        "Too many verifications from your address: not verified, try later",
    ),
    "challenge_required": (
        "本发票近期被多次错误查验，请在上方表单单独查验",
        "Many wrong answers for this invoice: verify it on its own (a proof of work is needed)",
    ),
    "invalid": ("本行有误，未查验", "This row is invalid and was not verified"),
}
ALL_TEXT: dict[str, tuple[str, str]] = {**dict(OUTCOME_TEXT.items()), **REFUSAL_TEXT}
_SIGNED = "bulk-results|"


def refusal_json(refusal: RateLimited | ChallengeRequired) -> dict[str, Any]:
    """The answer of an item that was not verified: over the rate (`retry_after`), or wanting a proof of work."""
    if isinstance(refusal, RateLimited):
        zh, en = REFUSAL_TEXT["rate_limited"]
        return {"result": "rate_limited", "message": {"zh": zh, "en": en}, "retry_after": refusal.retry_after_s}
    zh, en = REFUSAL_TEXT["challenge_required"]
    return {"result": "challenge_required", "message": {"zh": zh, "en": en}}


def read_csv(data: bytes) -> list[dict[str, str]]:
    """The rows of an uploaded CSV as field dicts (only `CSV_COLUMNS`, empty cells left out); `ValidationFailed` on
    field `csv` when the file is not such a CSV: not UTF-8, no header, a column missing or unknown, too many rows."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _refused("is not UTF-8 text: save the file as CSV UTF-8") from None
    try:
        table = [row for row in csv.reader(io.StringIO(text, newline="")) if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise _refused(f"is not a readable CSV ({exc})") from None
    if not table:
        raise _refused("is empty: it needs a header row and at least one row")
    header = [name.strip().lower() for name in table[0]]
    missing = [name for name in IDENTITY_COLUMNS if name not in header]
    unknown = [name for name in header if name not in CSV_COLUMNS]
    if missing or unknown or not set(SECRET_COLUMNS) & set(header) or len(set(header)) != len(header):
        raise _refused(
            f"needs the header row {','.join(IDENTITY_COLUMNS)},check_code_last6 (or total_amount), once each"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    rows = table[1:]
    if not rows:
        raise _refused("has a header row but no rows")
    if len(rows) > MAX_ITEMS:
        raise _refused(f"has {len(rows)} rows: at most {MAX_ITEMS} in one file, split it")
    for number, row in enumerate(rows, start=2):
        if len(row) > len(header):
            raise _refused(f"line {number} has more cells than the header")
    return [{name: cell.strip() for name, cell in zip(header, row, strict=False) if cell.strip()} for row in rows]


def _refused(message: str) -> ValidationFailed:
    return ValidationFailed([FieldError("csv", message)])


def result_row(number: int, fields: Mapping[str, str], answer: Mapping[str, Any]) -> dict[str, str]:
    """One line of the results (the page's table, the CSV): what the row asked and what it got, as text.
    `answer` is the item's JSON answer, or `{"result": "invalid", "errors": [...]}` for a row that was not valid."""
    result = str(answer["result"])
    zh, en = ALL_TEXT[result]
    if result == "invalid":
        en += ": " + "; ".join(f"{e.field} {e.message}" for e in answer["errors"])
    invoice = answer.get("invoice") or {}
    return {
        "row": str(number),
        **{name: fields.get(name, "") for name in IDENTITY_COLUMNS},
        "result": result,
        "message_zh": zh,
        "message_en": en,
        "seller_name": str((invoice.get("seller") or {}).get("name", "")),
        "seller_tax_id": str((invoice.get("seller") or {}).get("tax_id", "")),
        "total": str(invoice.get("total", "")),
        "times_verified": str(answer.get("times_verified") or "") if invoice else "",
        "retry_after": str(answer.get("retry_after", "")),
    }


def results_csv(rows: Iterable[Mapping[str, str]]) -> str:
    """The results as CSV (RFC 4180, CRLF, every cell quoted and through `spreadsheet_safe`), header first."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(RESULT_COLUMNS)
    for row in rows:
        writer.writerow([spreadsheet_safe(row.get(name, "")) for name in RESULT_COLUMNS])
    return out.getvalue()


def sign_results(secret: bytes, rows: list[dict[str, str]]) -> tuple[str, str]:
    """The results as the page's download form carries them: JSON and its HMAC, so the download route writes only
    what this service answered (and needs nothing stored)."""
    payload = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
    return payload, _mac(secret, payload)


def signed_results(secret: bytes, payload: str, signature: str) -> list[dict[str, str]] | None:
    """The rows of a signed payload, or None when the signature does not check."""
    if not hmac.compare_digest(_mac(secret, payload).encode(), signature.encode()):
        return None
    rows = json.loads(payload)
    return [{name: str(row.get(name, "")) for name in RESULT_COLUMNS} for row in rows]


def _mac(secret: bytes, payload: str) -> str:
    return hmac.new(secret, (_SIGNED + payload).encode(), hashlib.sha256).hexdigest()
