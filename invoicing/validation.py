"""Turning decoded request bodies into model objects: every wrong field is reported with its path.

Pure: tax IDs through python-stdnum, phones through phonenumbers, decimals by the model's rules."""

from __future__ import annotations

import functools
import re
from decimal import Decimal
from typing import Any, Literal

import phonenumbers
from stdnum import get_cc_module
from stdnum.cn import ric, uscc
from stdnum.exceptions import ValidationError as StdnumError

from invoicing.corrections import CreditRequestLine
from invoicing.errors import FieldErrors
from invoicing.model import (
    MAX_LINES,
    PROVINCES,
    Address,
    DeliveryMethod,
    InvoiceRequest,
    LineInput,
    Party,
    check_amounts,
    compute_line,
    parse_positive_decimal,
    province_code,
)
from invoicing.text import normalised, refusal

MAX_TEXT = {
    "name": 200,
    "description": 200,
    "unit": 20,
    "remarks": 500,
    "series": 32,
    "line1": 200,
    "line2": 200,
    "city": 60,
    "recipient": 100,
    "postal_code": 12,
    "reason": 500,
    "email": 254,
}


@functools.lru_cache(maxsize=65536)
def check_tax_id(value: str, country: str = "CN") -> str:
    """The compact form of a tax ID, or ValueError saying what is wrong.

    In China: the 18-character unified social credit code with its check character, or a resident
    ID number (individuals). Elsewhere: the country's VAT number where python-stdnum knows it."""
    compact = value.strip().upper().replace(" ", "")
    if country.upper() == "CN":
        for module in (uscc, ric):
            try:
                return str(module.validate(compact))
            except StdnumError:
                continue
        raise ValueError("is not a valid unified social credit code (18 characters with a valid check character)")
    try:
        vat: Any = get_cc_module(country.lower(), "vat")
    except (ImportError, ValueError):
        vat = None
    if vat is None:
        return compact
    try:
        return str(vat.validate(compact))
    except StdnumError as exc:
        raise ValueError(f"is not a valid {country.upper()} tax ID: {exc}") from None


@functools.lru_cache(maxsize=65536)  # parsing is slow beside the rest of a request, and buyers repeat
def check_phone(value: str, region: str = "CN") -> str:
    """E.164 form of a phone number, or ValueError."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        raise ValueError("is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


SmsRefusal = Literal["not_a_mobile", "country_not_allowed"]


@functools.lru_cache(maxsize=65536)  # a batch texts the same buyer many times; parsing is the slow part
def sms_refusal(phone_e164: str, countries: frozenset[str]) -> SmsRefusal | None:
    """Why we do not text this E.164 number (a landline; a mobile of a region outside `countries`, ISO 3166
    codes), or None when we may. The one rule for every text we send: receipts, the buyer's notice, and the
    buyer's download links (docs/security.md item 1)."""
    try:
        number = phonenumbers.parse(phone_e164, None)
    except phonenumbers.NumberParseException:
        return "not_a_mobile"
    kind = phonenumbers.number_type(number)
    if kind not in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
        return "not_a_mobile"
    return None if phonenumbers.region_code_for_number(number) in countries else "country_not_allowed"


MULTILINE = frozenset({"remarks", "reason"})


def text(data: dict[str, Any], key: str, path: str, errors: FieldErrors, *, required: bool = True) -> str:
    """A required (or optional) text field, NFC-normalised, trimmed and bounded in length, without control or
    format characters (`invoicing.text`); errors name `path`."""
    value = data.get(key)
    if value is None:
        value = ""
    value = normalised(str(value))
    why = refusal(value, multiline=key in MULTILINE)  # before trimming: strip() would drop a trailing NEL (C1)
    value = value.strip()
    if why:
        errors.add(path, why)
    elif required and not value:
        errors.add(path, "is required")
    elif len(value) > MAX_TEXT.get(key, 200):
        errors.add(path, f"is longer than {MAX_TEXT.get(key, 200)} characters")
    return value


_RATE = re.compile(r"[0-9]{1,2}(\.[0-9]{1,8})?")


def _rate(value: object) -> Decimal | None:
    """A tax rate as a plain decimal string (never NaN, sNaN or Infinity, which Decimal would accept)."""
    return Decimal(value) if isinstance(value, str) and _RATE.fullmatch(value) else None


def _address(data: dict[str, Any] | None, errors: FieldErrors) -> Address | None:
    if data is None:
        return None
    p = "buyer.address"
    country = text(data, "country", f"{p}.country", errors, required=False).upper() or "CN"
    province = text(data, "province", f"{p}.province", errors)
    code = province_code(province) if country == "CN" else None
    if country == "CN" and province and code is None:
        errors.add(f"{p}.province", "is not a Chinese province-level name or 2-digit GB/T 2260 code, e.g. 广东省 or 44")
    if country != "CN":
        errors.add(f"{p}.country", "postal delivery is only within China (CN)")
    return Address(
        recipient=text(data, "recipient", f"{p}.recipient", errors),
        line1=text(data, "line1", f"{p}.line1", errors),
        city=text(data, "city", f"{p}.city", errors),
        province=PROVINCES[code][0] if code else province,
        province_code=code or "",
        postal_code=text(data, "postal_code", f"{p}.postal_code", errors),
        country=country,
        line2=text(data, "line2", f"{p}.line2", errors, required=False),
    )


def party(data: dict[str, Any], errors: FieldErrors) -> Party:
    """The buyer of a request, validated and normalised."""
    address = _address(data.get("address"), errors)
    country = address.country if address else "CN"
    tax_id, phone = data.get("tax_id"), data.get("phone")
    if tax_id:
        try:
            tax_id = check_tax_id(tax_id, country)
        except ValueError as exc:
            errors.add("buyer.tax_id", str(exc))
    if phone:
        try:
            phone = check_phone(phone)
        except ValueError as exc:
            errors.add("buyer.phone", str(exc))
    email = text(data, "email", "buyer.email", errors, required=False) or None
    if email and ("@" not in email or email.startswith("@") or email.endswith("@")):
        errors.add("buyer.email", "is not an email address")
    return Party(text(data, "name", "buyer.name", errors), tax_id or None, phone or None, email, address)


def _line(data: dict[str, Any], i: int, rates: tuple[Decimal, ...], errors: FieldErrors) -> LineInput | None:
    p = f"lines[{i}]"
    quantity = parse_positive_decimal(data.get("quantity"), f"{p}.quantity", errors)
    unit_price = parse_positive_decimal(data.get("unit_price"), f"{p}.unit_price", errors)
    rate = _rate(data.get("tax_rate"))
    if rate is not None and rate not in rates:
        rate = None
    if rate is None:
        errors.add(f"{p}.tax_rate", "must be one of " + ", ".join(f'"{r}"' for r in rates))
    description = text(data, "description", f"{p}.description", errors)
    unit = text(data, "unit", f"{p}.unit", errors, required=False)
    if quantity is None or unit_price is None or rate is None:
        return None
    return LineInput(description, unit, quantity, unit_price, rate)


def invoice_request(data: dict[str, Any], rates: tuple[Decimal, ...]) -> InvoiceRequest:
    """A decoded InvoiceRequest body -> the model, or ValidationFailed listing every wrong field."""
    errors = FieldErrors()
    buyer = party(data["buyer"], errors)
    raw_lines = data.get("lines") or []
    if not raw_lines:
        errors.add("lines", "at least one line is required")
    elif len(raw_lines) > MAX_LINES:
        errors.add("lines", f"at most {MAX_LINES} lines per invoice")
    lines = [_line(item, i, rates, errors) for i, item in enumerate(raw_lines[:MAX_LINES])]
    delivery: DeliveryMethod = "postal" if data.get("delivery") == "postal" else "electronic"
    if delivery == "postal" and buyer.address is None:
        errors.add("buyer.address", "is required for postal delivery")
    series = text(data, "series", "series", errors, required=False) or "default"
    remarks = text(data, "remarks", "remarks", errors, required=False)
    good = [line for line in lines if line is not None]
    computed = [compute_line(line) for line in good] if len(good) == len(lines) else []
    if computed:
        check_amounts(computed, errors)
    errors.raise_if_any()
    return InvoiceRequest(buyer, tuple(computed), delivery, series, remarks)


def credit_request(data: dict[str, Any]) -> tuple[str, list[CreditRequestLine] | None]:
    """The reason and the lines asked for of a credit note request."""
    errors = FieldErrors()
    reason = text(data, "reason", "reason", errors)
    wanted: list[CreditRequestLine] | None = None
    if data.get("lines") is not None:
        wanted = []
        if not data["lines"]:
            errors.add("lines", "omit lines to credit everything, or list at least one")
        for i, item in enumerate(data["lines"]):
            qty = None
            if item.get("quantity") is not None:
                qty = parse_positive_decimal(item["quantity"], f"lines[{i}].quantity", errors)
            wanted.append(CreditRequestLine(int(item["line_no"]), qty))
    errors.raise_if_any()
    return reason, wanted
