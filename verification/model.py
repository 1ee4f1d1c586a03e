"""Verification rules: the query, the comparison, the outcome, masking and the phrases. Pure: no I/O.

Outcome precedence (`outcome_for`), first rule that applies wins:

1. no record with this code and number            -> `not_found`
2. this client is locked out of this invoice (too many of its mismatches today) -> `locked`, even when the details are right:
   answering anything else while locked would let a guesser keep testing check codes
3. the details given do not match                  -> `mismatch`: a stranger with wrong details learns
   nothing more (not the status, not whether the stored record is sound)
4. the stored record fails its hash or signature   -> `tampered`: we cannot vouch for a record we cannot
   prove, so this outranks the status. The caller raises its integrity alarm whatever the answer; if
   tampering changed the stored date, amount or check code, the holder of the genuine paper sees
   `mismatch`, itself a warning, and a stranger never learns that a record is unsound
5. the status: issued -> `valid`; `voided`, `reversed`, `partially_credited` as they are

Invoice numbers may be typed without their leading zeros (`1` means `00000001`): numbers are fixed
width, so padding is unambiguous, and it spares people whose spreadsheet ate the zeros.
"""

from __future__ import annotations

import hmac
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, get_args

import phonenumbers

from invoicing.errors import FieldErrors
from invoicing.model import Status
from invoicing.validation import sms_refusal

Outcome = Literal["valid", "mismatch", "not_found", "voided", "reversed", "partially_credited", "locked", "tampered"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
# Outcomes that show the invoice (masked): the details matched and the record is sound.
SHOWS_INVOICE: frozenset[Outcome] = frozenset({"valid", "voided", "reversed", "partially_credited"})
# Outcomes an SMS receipt may report: the invoice exists and the details given matched it. Anything else (an
# unknown invoice, wrong details, a lock) would let anyone make us text any number: SMS pumping.
RECEIPT_OUTCOMES: frozenset[Outcome] = SHOWS_INVOICE | {"tampered"}
DEFAULT_SMS_COUNTRIES: frozenset[str] = frozenset({"CN"})

# Why an asked-for SMS receipt was not sent (`sms_receipt_reason`). The first three are decided here, before
# anything is counted; the limits (`verification.limits`) decide the last three.
ReceiptRefusal = Literal[
    "details_not_confirmed",  # the outcome is not one a receipt reports (not_found, mismatch, locked)
    "not_a_mobile",  # a valid number, but a landline or another kind that cannot take SMS
    "country_not_allowed",  # a mobile outside SMS_ALLOWED_COUNTRIES
    "daily_limit_reached",  # this client or this phone has had its receipts for the day
    "service_budget_reached",  # the whole service has sent SMS_DAILY_BUDGET receipts today
    "unavailable",  # the counters could not be reached: no receipt rather than an uncounted one
]
RECEIPT_REFUSAL_TEXT: dict[ReceiptRefusal, tuple[str, str]] = {
    "details_not_confirmed": ("查验信息未核实，不发送短信", "the details were not confirmed"),
    "not_a_mobile": ("该号码不是手机号码", "that number is not a mobile number"),
    "country_not_allowed": ("仅向中国大陆手机号发送", "receipts go only to mobiles of the served countries"),
    "daily_limit_reached": ("今日短信回执已达上限", "today's limit is reached"),
    "service_budget_reached": ("今日短信额度已用完", "today's SMS budget of the service is spent"),
    "unavailable": ("短信服务暂时不可用", "SMS receipts are briefly unavailable"),
}

OUTCOME_TEXT: dict[Outcome, tuple[str, str]] = {
    "valid": ("查验一致：发票真实有效", "Genuine: the invoice matches our records"),
    "mismatch": ("查验不一致：所填信息与记录不符", "Mismatch: the details given differ from our records"),
    "not_found": ("查无此票：没有该发票代码和号码的发票", "Not found: no invoice has this code and number"),
    "voided": ("发票已作废", "Voided: the seller cancelled this invoice"),
    "reversed": ("发票已全额红冲", "Reversed: this invoice has been fully credited"),
    "partially_credited": ("发票已部分红冲", "Partially credited: part of this invoice has been credited"),
    "locked": (
        "今日查验错误次数过多，该发票已锁定，请明日再试",
        "Locked: too many wrong tries today; try again tomorrow",
    ),
    "tampered": (
        "记录校验失败：存储的发票记录未通过完整性校验",
        "Integrity failure: the stored record fails its checks",
    ),
}

_STATUS_OUTCOME: dict[Status, Outcome] = {
    "issued": "valid",
    "voided": "voided",
    "reversed": "reversed",
    "partially_credited": "partially_credited",
}
_CODE_RE = re.compile(r"[0-9]{12}")
_NUMBER_RE = re.compile(r"[0-9]{1,8}")
_LAST6_RE = re.compile(r"[0-9]{6}")
_DATE_RE = re.compile(r"([0-9]{4})-?([0-9]{2})-?([0-9]{2})")
_AMOUNT_RE = re.compile(r"-?[0-9]{1,13}(?:\.[0-9]{1,2})?")
_SPACES_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class VerificationQuery:
    """What someone asks about: identity, date, and one secret-ish detail (check code tail or amount)."""

    invoice_code: str  # 12 digits
    invoice_number: str  # 8 digits
    issue_date: date
    check_code_last6: str | None = None  # 6 digits; exactly one of this and total_amount
    total_amount: Decimal | None = None  # excluding tax, as printed
    phone: str | None = None  # E.164 number that asked for an SMS receipt (whether one is sent: `receipt_refusal`)


@dataclass(frozen=True)
class InvoiceSummary:
    """What an SMS reply may say about a matched invoice."""

    invoice_code: str
    invoice_number: str
    issue_date: date
    total: Decimal  # including tax

    @classmethod
    def of(cls, shown: Mapping[str, Any]) -> InvoiceSummary:
        """The summary of a record from its stored content or its public view (the same keys)."""
        return cls(
            shown["invoice_code"],
            shown["invoice_number"],
            date.fromisoformat(shown["issue_date"]),
            Decimal(shown["total"]),
        )


def _clean(value: object) -> str | None:
    """NFKC (full-width digits become ASCII), whitespace removed; None when absent or empty.

    A value that is not a string (a JSON number) becomes U+FFFD, which no field pattern accepts, so
    the field's own message reports it, once."""
    if value is None:
        return None
    if not isinstance(value, str):
        return "\ufffd"
    text = _SPACES_RE.sub("", unicodedata.normalize("NFKC", value))
    return text or None


def parse_date(text: str) -> date | None:
    """`YYYY-MM-DD` or `YYYYMMDD` -> a calendar date; None when it is neither or no such day."""
    match = _DATE_RE.fullmatch(text)
    if not match or text.count("-") not in (0, 2):
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def pad_number(text: str) -> str | None:
    """1 to 8 digits, not all zeros, left-padded to 8; None otherwise."""
    if not _NUMBER_RE.fullmatch(text) or int(text) == 0:
        return None
    return text.zfill(8)


def parse_amount(text: str) -> Decimal | None:
    """An amount with at most 2 decimals (`¥`, thousands commas allowed); None otherwise."""
    text = text.removeprefix("¥").replace(",", "")
    if not _AMOUNT_RE.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        return None


def _identity(fields: Mapping[str, object], errors: FieldErrors) -> tuple[str | None, str | None, date | None]:
    """Code, number (padded to 8) and issue date; each bad or missing one is reported."""
    code, number, day = (_clean(fields.get(name)) for name in ("invoice_code", "invoice_number", "issue_date"))
    if code is None or not _CODE_RE.fullmatch(code):
        errors.add("invoice_code", "must be the 12-digit invoice code, e.g. 044012600111")
        code = None
    padded = None if number is None else pad_number(number)
    if padded is None:
        errors.add("invoice_number", "must be the invoice number: up to 8 digits, e.g. 00000001")
    parsed = None if day is None else parse_date(day)
    if parsed is None:
        errors.add("issue_date", "must be the issue date as YYYY-MM-DD or YYYYMMDD, e.g. 2026-11-27")
    return code, padded, parsed


def parse_query(fields: Mapping[str, object]) -> VerificationQuery:
    """A verification query from form or JSON fields (strings); `ValidationFailed` names every bad field.

    Full-width digits and spaces are accepted; fields other than the query's own are ignored."""
    errors = FieldErrors()
    code, number, day = _identity(fields, errors)
    last6, amount = _secret(fields, errors)
    phone = _phone(fields, errors)
    errors.raise_if_any()
    assert code is not None and number is not None and day is not None
    return VerificationQuery(code, number, day, last6, amount, phone)


def _secret(fields: Mapping[str, object], errors: FieldErrors) -> tuple[str | None, Decimal | None]:
    """Exactly one of `check_code_last6` and `total_amount`."""
    last6 = _clean(fields.get("check_code_last6"))
    amount_text = _clean(fields.get("total_amount"))
    if last6 is not None and amount_text is not None:
        errors.add("check_code_last6", "give either check_code_last6 or total_amount, not both")
        return None, None
    if last6 is None and amount_text is None:
        errors.add("check_code_last6", "is required: the last 6 digits of the check code (or give total_amount)")
        return None, None
    if last6 is not None and not _LAST6_RE.fullmatch(last6):
        errors.add("check_code_last6", "must be the last 6 digits of the check code, e.g. 123456")
    amount = None if amount_text is None else parse_amount(amount_text)
    if amount_text is not None and amount is None:
        errors.add("total_amount", "must be the amount excluding tax with at most 2 decimals, e.g. 200.00")
    return last6, amount


def _phone(fields: Mapping[str, object], errors: FieldErrors) -> str | None:
    text = _clean(fields.get("phone"))
    if text is None:
        return None
    phone = normalise_phone(text)
    if phone is None:  # a valid number that may not be texted is answered, with the receipt refused
        errors.add("phone", "must be a mobile number that can receive SMS, e.g. +8613800138000")
    return phone


def fields_from_qr(params: Mapping[str, str]) -> dict[str, str]:
    """The query fields carried by an invoice's QR URL (FORMATS.md: `c`, `n`, `d`, `k`)."""
    names = {"c": "invoice_code", "n": "invoice_number", "d": "issue_date"}
    fields = {field: params[key] for key, field in names.items() if key in params}
    if params.get("k"):
        fields["check_code_last6"] = params["k"][-6:]
    return fields


# The figures an invoice's QR link states (FORMATS.md "QR code"), by link field: the record's key, its words.
QR_FIGURES: dict[str, tuple[str, str, str]] = {
    "d": ("issue_date", "开票日期", "issue date"),
    "a": ("total_amount", "金额", "amount excl. tax"),
    "x": ("total_tax", "税额", "tax"),
    "t": ("total", "价税合计", "total incl. tax"),
}


def qr_figures_differing(link: Mapping[str, str], content: Mapping[str, Any]) -> tuple[str, ...]:
    """The record's figures (keys of its content, in link order) that a QR link states otherwise: a figure present in
    the link that is not the record's, or unreadable, differs; one absent is not compared. Only to be told to someone
    whose link carries the invoice's full check code (the caller's gate): else it would tell a guesser which of its
    guessed figures were right."""
    differing = []
    for name, (key, _, _) in QR_FIGURES.items():
        if name not in link:
            continue
        if name == "d":
            same = parse_date(link[name]) == date.fromisoformat(content[key])
        else:
            stated = parse_amount(link[name])
            same = stated is not None and stated == Decimal(content[key])
        if not same:
            differing.append(key)
    return tuple(differing)


def differing_text(keys: tuple[str, ...]) -> tuple[str, str]:
    """The headline of a QR link whose figures differ from the record, naming them (zh, en)."""
    words = {key: (zh, en) for key, zh, en in QR_FIGURES.values()}
    zh = "、".join(words[k][0] for k in keys)
    en = ", ".join(words[k][1] for k in keys)
    return (
        f"查验不一致：二维码中的{zh}与记录不符",
        f"Mismatch: the QR code's {en} {'differs' if len(keys) == 1 else 'differ'} from our records",
    )


def matches(query: VerificationQuery, *, check_code: str, total_amount: Decimal, issue_date: date) -> bool:
    """Whether the query's date and its check code tail (or amount excluding tax) match the record.

    The check code tail is compared in constant time; the amount exactly (no rounding). The record was
    found by code and number, so those are equal already. Every part is computed, then combined."""
    date_ok = query.issue_date == issue_date
    if query.check_code_last6 is not None:
        secret_ok = hmac.compare_digest(query.check_code_last6.encode(), check_code[-6:].encode())
    elif query.total_amount is not None:
        secret_ok = query.total_amount == total_amount
    else:
        secret_ok = False
    return date_ok & secret_ok


def outcome_for(status: Status | None, matched: bool, tampered: bool, *, locked: bool = False) -> Outcome:
    """The answer to a query (precedence in the module docstring); `status` None: no such invoice."""
    if status is None:
        return "not_found"
    if locked:
        return "locked"
    if not matched:
        return "mismatch"
    if tampered:
        return "tampered"
    return _STATUS_OUTCOME[status]


def normalise_phone(text: str, default_region: str = "CN") -> str | None:
    """A phone number in E.164 (`+8613800138000`), or None when it is not a valid number."""
    try:
        number = phonenumbers.parse(unicodedata.normalize("NFKC", text), default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def is_mobile(phone_e164: str) -> bool:
    """Whether an E.164 number can take SMS: a mobile, or a number its plan leaves ambiguous."""
    return sms_refusal(phone_e164, frozenset()) != "not_a_mobile"


def phone_refusal(phone_e164: str, countries: frozenset[str]) -> ReceiptRefusal | None:
    """Why we do not text this number (a landline; a mobile of a region outside `countries`, ISO 3166 codes), or
    None when we may. The one rule for every text (`invoicing.validation.sms_refusal`): receipts, the buyer's
    notice and the buyer's download links."""
    return sms_refusal(phone_e164, countries)


def receipt_refusal(outcome: Outcome, phone_e164: str, countries: frozenset[str]) -> ReceiptRefusal | None:
    """Why no receipt of this outcome goes to this phone, before the daily caps are counted; None: ask the caps.
    The outcome comes first, so an unknown invoice or wrong details never reach the counters."""
    if outcome not in RECEIPT_OUTCOMES:
        return "details_not_confirmed"
    return phone_refusal(phone_e164, countries)


def parse_countries(text: str) -> frozenset[str]:
    """`SMS_ALLOWED_COUNTRIES`: ISO 3166 region codes, comma-separated (`CN`, `CN,HK`); ValueError names an
    unknown one."""
    codes = frozenset(code.strip().upper() for code in text.split(",") if code.strip())
    unknown = sorted(codes - phonenumbers.SUPPORTED_REGIONS)
    if unknown or not codes:
        raise ValueError(f"unknown region code(s) {', '.join(unknown) or '(none given)'}: use ISO codes such as CN")
    return codes
