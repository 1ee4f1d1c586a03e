"""Invoices, lines, money and tax rules, statuses. Pure: no I/O.

Money is `Decimal` everywhere. A line's `amount = round_half_up(quantity * unit_price, 2)` and
`tax_amount = round_half_up(amount * tax_rate, 2)`; totals are sums of the line figures (API.md).

The value objects are frozen `msgspec.Struct`s: immutable and compared by value as frozen dataclasses are, made
in a tenth of a microsecond instead of two (docs/decisions.md, "Model value objects are frozen msgspec structs").
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec

from invoicing.errors import FieldErrors

SHANGHAI = ZoneInfo("Asia/Shanghai")
CENT = Decimal("0.01")
DEFAULT_TAX_RATES = tuple(Decimal(r) for r in "0.13 0.09 0.06 0.05 0.03 0.01 0".split())
MAX_LINES = 500
# A batch's lines in all (INVOICELOOP_MAX_BATCH_LINES): its CPU work (checking, sealing, answering) grows with
# them, and one issuer's batch must not hold the process for seconds.
DEFAULT_MAX_BATCH_LINES = 20_000
MAX_AMOUNT = Decimal("9999999999999.99")  # numeric(15,2): the largest total we store and print
DEFAULT_SERIES = "default"
# Each new series takes one of its region's 999,999 invoice codes of the year: an issuer gets at most this many
# a year, so no one tenant can use up a region (INVOICELOOP_MAX_SERIES_PER_YEAR raises it for a large one).
DEFAULT_MAX_SERIES_PER_YEAR = 100

Kind = Literal["invoice", "credit_note"]
Status = Literal["issued", "voided", "partially_credited", "reversed"]
DeliveryMethod = Literal["electronic", "postal"]

# GB/T 2260 province-level divisions: code -> (full name, short name)
PROVINCES: dict[str, tuple[str, str]] = {
    "11": ("北京市", "北京"),
    "12": ("天津市", "天津"),
    "13": ("河北省", "河北"),
    "14": ("山西省", "山西"),
    "15": ("内蒙古自治区", "内蒙古"),
    "21": ("辽宁省", "辽宁"),
    "22": ("吉林省", "吉林"),
    "23": ("黑龙江省", "黑龙江"),
    "31": ("上海市", "上海"),
    "32": ("江苏省", "江苏"),
    "33": ("浙江省", "浙江"),
    "34": ("安徽省", "安徽"),
    "35": ("福建省", "福建"),
    "36": ("江西省", "江西"),
    "37": ("山东省", "山东"),
    "41": ("河南省", "河南"),
    "42": ("湖北省", "湖北"),
    "43": ("湖南省", "湖南"),
    "44": ("广东省", "广东"),
    "45": ("广西壮族自治区", "广西"),
    "46": ("海南省", "海南"),
    "50": ("重庆市", "重庆"),
    "51": ("四川省", "四川"),
    "52": ("贵州省", "贵州"),
    "53": ("云南省", "云南"),
    "54": ("西藏自治区", "西藏"),
    "61": ("陕西省", "陕西"),
    "62": ("甘肃省", "甘肃"),
    "63": ("青海省", "青海"),
    "64": ("宁夏回族自治区", "宁夏"),
    "65": ("新疆维吾尔自治区", "新疆"),
    "71": ("台湾省", "台湾"),
    "81": ("香港特别行政区", "香港"),
    "82": ("澳门特别行政区", "澳门"),
}
_PROVINCE_BY_NAME = {n: c for c, names in PROVINCES.items() for n in names}

_DECIMAL_RE = re.compile(r"^(?P<int>\d{1,13})(?:\.(?P<frac>\d{1,8}))?$")


def province_code(text: str) -> str | None:
    """`广东省`, `广东` or `44` -> `44`; None when it names no province."""
    text = text.strip()
    if text in PROVINCES:
        return text
    return _PROVINCE_BY_NAME.get(text)


def round_half_up(value: Decimal) -> Decimal:
    """To the cent, half up; never `-0.00` (a negative zero would print and hash as "-0.00")."""
    cents = value.quantize(CENT, ROUND_HALF_UP)  # positional: half the cost of the keyword
    return cents.copy_abs() if cents.is_zero() else cents


def _exact() -> Any:
    """A context wide enough that a product of two 21-digit decimals is exact before rounding."""
    return localcontext(prec=60)


def money_str(value: Decimal) -> str:
    """An amount as the API shows it: exactly 2 decimals, `-` for negatives, never `-0.00` (what
    `f"{round_half_up(value):.2f}"` gives, a test holds them together). `str` of a Decimal with two places is
    never in exponent notation; this runs 20-odd times for every invoice issued, at a third of the cost of the
    formatted round."""
    return str(round_half_up(value))


def plain_str(value: Decimal, min_places: int = 0) -> str:
    """A quantity/price/rate without exponent or needless trailing zeros (at least `min_places`)."""
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    places = len(text.split(".")[1]) if "." in text else 0
    if places < min_places:
        text = f"{value:.{min_places}f}"
    return text


def parse_positive_decimal(text: object, path: str, errors: FieldErrors) -> Decimal | None:
    """A decimal string with up to 8 decimals and greater than zero; errors name `path`."""
    if not isinstance(text, str):
        errors.add(path, 'must be a decimal string such as "2" or "100.00", not a number')
        return None
    match = _DECIMAL_RE.match(text.strip())
    if not match:
        errors.add(path, 'must be a positive decimal string with at most 8 decimals, e.g. "2.5"')
        return None
    value = Decimal(text.strip())
    if value <= 0:
        errors.add(path, "must be greater than zero")
        return None
    return value


class Address(msgspec.Struct, frozen=True):
    """A postal address; the province as its full name and its GB/T 2260 code."""

    recipient: str
    line1: str
    city: str
    province: str  # full name, e.g. 广东省
    province_code: str  # GB/T 2260, e.g. 44
    postal_code: str
    country: str = "CN"
    line2: str = ""


class Party(msgspec.Struct, frozen=True):
    """The buyer: a name, and an optional tax ID, phone (E.164), e-mail and address."""

    name: str
    tax_id: str | None = None
    phone: str | None = None  # E.164
    email: str | None = None
    address: Address | None = None


class Seller(msgspec.Struct, frozen=True):
    """The issuer as an invoice prints it."""

    name: str
    tax_id: str
    address: str
    phone: str | None


class LineInput(msgspec.Struct, frozen=True):
    """A line as asked for: description, unit, quantity, unit price and tax rate."""

    description: str
    unit: str
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal


class Line(msgspec.Struct, frozen=True):
    """A line with its figures: amount and tax to the cent (negative on a credit note)."""

    description: str
    unit: str
    quantity: Decimal  # negative on a credit note
    unit_price: Decimal
    tax_rate: Decimal
    amount: Decimal
    tax_amount: Decimal
    original_line: int | None = None  # on a credit note: the 1-based line of the original it takes back


class Totals(msgspec.Struct, frozen=True):
    """An invoice's totals: excluding tax, tax, and with tax."""

    total_amount: Decimal  # excluding tax
    total_tax: Decimal
    total: Decimal


class InvoiceRequest(msgspec.Struct, frozen=True):
    """A validated, normalised issue request (what the issuer asked for, before numbering), its lines' figures
    computed (`compute_line`: validation checks them)."""

    buyer: Party
    lines: tuple[Line, ...]
    delivery: DeliveryMethod = "electronic"
    series: str = DEFAULT_SERIES
    remarks: str = ""


class Invoice(msgspec.Struct, frozen=True):
    """An issued record: an invoice or a red-letter credit note, with its identity and proofs."""

    id: str
    issuer_id: str
    kind: Kind
    series: str
    invoice_code: str
    invoice_number: str
    issue_date: date
    issued_at: datetime
    status: Status
    seller: Seller
    buyer: Party
    currency: str
    lines: tuple[Line, ...]
    totals: Totals
    total_in_words: str
    check_code: str
    record_hash: str
    prev_hash: str
    signature: str
    key_id: str
    delivery_method: DeliveryMethod
    remarks: str
    original_invoice_id: str | None = None
    original_invoice_code: str | None = None
    original_invoice_number: str | None = None
    delivery_status: str | None = None
    tracking_number: str | None = None
    voided_at: datetime | None = None
    void_reason: str | None = None

    def with_status(self, status: Status) -> Invoice:
        """The same record with another status."""
        return msgspec.structs.replace(self, status=status)

    def sealed(
        self, code: str, number: str, check_code: str, prev_hash: str, record_hash: str, signature: str, key_id: str
    ) -> Invoice:
        """The same record given its place in the series (code, number, check code, chain link) and its proofs."""
        return msgspec.structs.replace(
            self,
            invoice_code=code,
            invoice_number=number,
            check_code=check_code,
            prev_hash=prev_hash,
            record_hash=record_hash,
            signature=signature,
            key_id=key_id,
        )


def compute_line(item: LineInput, sign: int = 1) -> Line:
    """The line's figures, half-up to the cent; `sign=-1` for a credit note line."""
    quantity = item.quantity * sign
    with _exact():
        amount = round_half_up(quantity * item.unit_price)
        tax_amount = round_half_up(amount * item.tax_rate)
    return Line(item.description, item.unit, quantity, item.unit_price, item.tax_rate, amount, tax_amount)


def compute_totals(lines: tuple[Line, ...] | list[Line]) -> Totals:
    """The totals: sums of the line figures."""
    total_amount = sum((line.amount for line in lines), Decimal("0.00"))
    total_tax = sum((line.tax_amount for line in lines), Decimal("0.00"))
    return Totals(total_amount, total_tax, total_amount + total_tax)


def check_amounts(lines: list[Line], errors: FieldErrors) -> None:
    """Refuse figures too large to store or print (numeric(15,2))."""
    for i, line in enumerate(lines):
        if abs(line.amount) > MAX_AMOUNT:
            errors.add(f"lines[{i}]", f"the line amount exceeds {MAX_AMOUNT}")
    totals = compute_totals(lines)
    if abs(totals.total) > MAX_AMOUNT:
        errors.add("lines", f"the invoice total exceeds {MAX_AMOUNT}")


def series_year(issued_at: datetime) -> int:
    """A series lives one calendar year in Asia/Shanghai."""
    return issued_at.astimezone(SHANGHAI).year


def new_series_refusal(opened_this_year: int, cap: int) -> str | None:
    """Why the issuer may not open another series this year, or None."""
    if opened_this_year >= cap:
        return f"at most {cap} series a year per issuer; issue in a series already open (`series`)"
    return None


def beijing_time(moment: datetime) -> str:
    """A moment as a person in China reads it, with the zone shown: `2026-11-30 23:05 (北京时间 UTC+8)`."""
    return f"{moment.astimezone(SHANGHAI):%Y-%m-%d %H:%M} (北京时间 UTC+8)"


def local_date(moment: datetime) -> date:
    """The calendar day of a moment in Asia/Shanghai."""
    return moment.astimezone(SHANGHAI).date()
