"""Request bodies for tests: a valid InvoiceRequest, varied by keyword."""

from __future__ import annotations

import copy
from typing import Any

BUYER: dict[str, Any] = {
    "name": "张三",
    "tax_id": None,
    "phone": "+8613800138000",
    "email": None,
    "address": {
        "recipient": "张三",
        "line1": "天河路 1 号",
        "city": "广州市",
        "province": "广东省",
        "postal_code": "510000",
        "country": "CN",
    },
}
LINE: dict[str, Any] = {
    "description": "办公椅",
    "unit": "把",
    "quantity": "2",
    "unit_price": "100.00",
    "tax_rate": "0.13",
}


def invoice_body(
    *, lines: int | list[Any] = 1, delivery: str = "electronic", series: str = "default", **overrides: Any
) -> dict[str, Any]:
    """`lines` is a count of the sample line, or the lines themselves."""
    items = [dict(LINE) for _ in range(lines)] if isinstance(lines, int) else lines
    body: dict[str, Any] = {
        "buyer": copy.deepcopy(BUYER),
        "lines": items,
        "delivery": delivery,
        "series": series,
        "remarks": "",
    }
    body.update(overrides)
    return body
