"""UPU S10 postal tracking numbers (FORMATS.md): `AA NNNNNNNN C CC`, the check digit, parsing. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
FORBIDDEN_SERVICE_STARTS = frozenset("JKSTW")
_S10_RE = re.compile(r"([A-Z]{2})([0-9]{8})([0-9])([A-Z]{2})")


@dataclass(frozen=True)
class TrackingNumber:
    """A parsed S10 number; `str()` gives it back in its canonical form."""

    service: str  # 2 letters, e.g. RR
    serial: str  # 8 digits, leading zeros kept
    check: int
    country: str  # ISO 3166-1 alpha-2

    def __str__(self) -> str:
        return f"{self.service}{self.serial}{self.check}{self.country}"


def s10_check_digit(serial: str) -> int:
    """The S10 check digit of an 8-digit serial: weights 8 6 4 2 3 5 9 7, `11 - sum mod 11`, 10->0, 11->5."""
    if not re.fullmatch(r"[0-9]{8}", serial):
        raise ValueError(f"an S10 serial is 8 digits, not {serial!r}")
    c = 11 - sum(w * int(d) for w, d in zip(S10_WEIGHTS, serial, strict=True)) % 11
    return {10: 0, 11: 5}.get(c, c)


def validate_service_indicator(service: str) -> str | None:
    """Why `service` cannot be an S10 service indicator, or None when it can (two capital letters,
    not starting J, K, S, T or W, which FORMATS.md keeps out)."""
    if not re.fullmatch(r"[A-Z]{2}", service):
        return "the service indicator must be two capital letters, e.g. RR"
    if service[0] in FORBIDDEN_SERVICE_STARTS:
        return "the service indicator must not start with J, K, S, T or W"
    return None


def make_tracking_number(service: str, serial: int, country: str) -> str:
    """`RR` + 8-digit serial + check digit + country, e.g. `make_tracking_number("RR", 47312482, "CN")`
    -> `RR473124829CN`. Raises ValueError on a bad indicator, serial or country."""
    problem = validate_service_indicator(service)
    if problem:
        raise ValueError(problem)
    if not 0 <= serial <= 99_999_999:
        raise ValueError(f"an S10 serial is 0 to 99999999, not {serial}")
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise ValueError(f"the country must be an ISO 3166-1 alpha-2 code such as CN, not {country!r}")
    digits = f"{serial:08d}"
    return f"{service}{digits}{s10_check_digit(digits)}{country}"


def parse_tracking_number(text: object) -> TrackingNumber | None:
    """The S10 number in `text` (case and spaces ignored), or None when it is not a valid one."""
    number, _ = check_tracking_number(text)
    return number


def check_tracking_number(text: object) -> tuple[TrackingNumber | None, str | None]:
    """The tracking number, or None and why not (the reason names the field `tracking_number`)."""
    if not isinstance(text, str):
        return None, "tracking_number must be a string"
    # ASCII only, so that e.g. a dotless ı cannot upper-case its way into a valid number
    normalised = re.sub(r"\s+", "", text).upper() if text.isascii() else ""
    match = _S10_RE.fullmatch(normalised)
    if not match:
        return None, "tracking_number is not an S10 number (2 letters, 9 digits, 2 letters, e.g. RR473124829CN)"
    service, serial, check, country = match.groups()
    if validate_service_indicator(service):
        return None, "tracking_number has a service indicator starting with J, K, S, T or W"
    if s10_check_digit(serial) != int(check):
        return None, "tracking_number has a wrong check digit"
    return TrackingNumber(service, serial, int(check), country), None
