"""What a stranger may see of an invoice: the public view of a matched record, with the buyer's name and phone
masked and no check code. Pure: no I/O."""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Mapping
from typing import Any

import phonenumbers


def mask_name(name: str) -> str:
    """Mask a person's or company's name for a public answer.

    Latin-script names keep the first letter of each word (`John Smith` -> `J*** S****`); other names
    keep the first and last character from 3 characters up (`欧阳娜娜` -> `欧**娜`), the first of 2
    (`张三` -> `张*`), and nothing of 1 (`*`)."""
    name = " ".join(name.split())
    if not name:
        return ""
    if all(unicodedata.name(ch, "").startswith("LATIN") for ch in name if ch.isalpha()):
        return " ".join(word[0] + "*" * (len(word) - 1) for word in name.split(" "))
    if len(name) == 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def public_invoice(content: Mapping[str, Any], status: str) -> dict[str, Any]:
    """The invoice as a stranger may see it, from its stored content: the seller in full, the buyer's name and
    phone masked, no check code; every figure as the signed record states it."""
    buyer, seller = content["buyer"], content["seller"]
    return {
        "kind": content["kind"],
        "invoice_code": content["invoice_code"],
        "invoice_number": content["invoice_number"],
        "issue_date": content["issue_date"],
        "status": status,
        "currency": content["currency"],
        "seller": {"name": seller["name"], "tax_id": seller["tax_id"]},
        "buyer": {
            "name": mask_name(buyer["name"]),
            "phone": cached_mask_phone(buyer["phone"]) if buyer["phone"] else None,
        },
        "lines": [{key: line[key] for key in _PUBLIC_LINE} for line in content["lines"]],
        "total_amount": content["total_amount"],
        "total_tax": content["total_tax"],
        "total": content["total"],
        "total_in_words": content["total_in_words"],
    }


_PUBLIC_LINE = ("description", "unit", "quantity", "unit_price", "tax_rate", "amount", "tax_amount")


def mask_phone(phone: str) -> str:
    """`+8613800138000` -> `+86 138****8000`: country code, first 3 and last 4 national digits.

    Short national numbers show only their last 2 digits; text that is no phone shows none."""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return "***"
    national = phonenumbers.national_significant_number(number)
    if len(national) >= 8:
        shown = national[:3] + "*" * (len(national) - 7) + national[-4:]
    elif len(national) >= 4:
        shown = "*" * (len(national) - 2) + national[-2:]
    else:
        shown = "***"
    return f"+{number.country_code} {shown}"


# Parsing a phone is slow beside the rest of a verification; the same buyers' phones come back again and again.
cached_mask_phone = functools.lru_cache(maxsize=4096)(mask_phone)
