"""The closed-loop figures: one row of figures, the shares worked out of it, and what the public may see. Pure.

The public page shows the service by month and by province. A (month, province) cell that covers fewer than
`K_MIN` issuers is left out, and it is left out of everything: every figure the public sees (a month, a province,
the total) is a sum of shown cells only. A total over all cells beside a list with one cell missing would give
that cell away by subtraction; a sum of shown cells gives away nothing a shown cell does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from invoicing.model import PROVINCES, money_str

K_MIN = 3  # a cell covering fewer issuers than this is not shown publicly

# English names beside the GB/T 2260 province-level divisions of `model.PROVINCES`.
PROVINCES_EN: dict[str, str] = {
    "11": "Beijing",
    "12": "Tianjin",
    "13": "Hebei",
    "14": "Shanxi",
    "15": "Inner Mongolia",
    "21": "Liaoning",
    "22": "Jilin",
    "23": "Heilongjiang",
    "31": "Shanghai",
    "32": "Jiangsu",
    "33": "Zhejiang",
    "34": "Anhui",
    "35": "Fujian",
    "36": "Jiangxi",
    "37": "Shandong",
    "41": "Henan",
    "42": "Hubei",
    "43": "Hunan",
    "44": "Guangdong",
    "45": "Guangxi",
    "46": "Hainan",
    "50": "Chongqing",
    "51": "Sichuan",
    "52": "Guizhou",
    "53": "Yunnan",
    "54": "Tibet",
    "61": "Shaanxi",
    "62": "Gansu",
    "63": "Qinghai",
    "64": "Ningxia",
    "65": "Xinjiang",
    "71": "Taiwan",
    "81": "Hong Kong",
    "82": "Macao",
}


@dataclass(frozen=True)
class Figures:
    """One group's figures: invoices issued (voided ones included), live (not voided), their amount with tax, the
    live invoices verified at least once, postal ones, delivered, returned, and the rest the issuer sees."""

    invoices: int = 0
    live: int = 0
    amount: Decimal = Decimal(0)
    verified: int = 0
    postal: int = 0
    delivered: int = 0
    returned: int = 0
    voided: int = 0
    credit_notes: int = 0
    credited: Decimal = Decimal(0)
    mismatches: int = 0

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Figures:
        """From a row of sums (None, as SQL's sum of nothing, is zero)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = row[f.name]
            values[f.name] = Decimal(value or 0) if f.type == "Decimal" else int(value or 0)
        return cls(**values)

    def __add__(self, other: Figures) -> Figures:
        return Figures(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @property
    def verified_share(self) -> float:
        """Of the live invoices, the share verified at least once: the closed-loop rate."""
        return round(self.verified / self.live, 4) if self.live else 0.0

    @property
    def delivered_share(self) -> float:
        """Of the live postal invoices, the share the post delivered."""
        return round(self.delivered / self.postal, 4) if self.postal else 0.0

    def public(self) -> dict[str, Any]:
        """What the public page and JSON show of it."""
        return {
            "invoices": self.invoices,
            "amount": money_str(self.amount),
            "verified": self.verified,
            "verified_share": self.verified_share,
            "postal": self.postal,
            "delivered": self.delivered,
            "delivered_share": self.delivered_share,
            "returned": self.returned,
        }

    def issuer(self) -> dict[str, Any]:
        """What an issuer sees of its own figures."""
        return {
            **self.public(),
            "credit_notes": self.credit_notes,
            "voided": self.voided,
            "credited": money_str(self.credited),
            "mismatches": self.mismatches,
        }


def province_names(code: str) -> dict[str, str]:
    """A province code with its Chinese and English names (the code alone when it names none)."""
    zh = PROVINCES.get(code, (code, code))[0]
    return {"province": code, "name_zh": zh, "name_en": PROVINCES_EN.get(code, code)}


@dataclass(frozen=True)
class Cell:
    """The service's figures of one (month, province), and how many issuers they cover."""

    month: str
    province: str
    issuers: int
    figures: Figures


def shown(cells: Iterable[Cell], k_min: int = K_MIN) -> list[Cell]:
    """The cells the public may see: those covering at least `k_min` issuers."""
    return [c for c in cells if c.issuers >= k_min]


def _sum(groups: dict[str, Figures], key: str, figures: Figures) -> None:
    groups[key] = groups.get(key, Figures()) + figures


def public_figures(cells: Sequence[Cell], k_min: int = K_MIN) -> dict[str, Any]:
    """The public page's figures: by month, by province and in total, each a sum of shown cells only, and how many
    nothing about the cells left out (not even how many there are)."""
    kept = shown(cells, k_min)
    months: dict[str, Figures] = {}
    provinces: dict[str, Figures] = {}
    for cell in kept:
        _sum(months, cell.month, cell.figures)
        _sum(provinces, cell.province, cell.figures)
    total = sum((c.figures for c in kept), Figures())
    return {
        "k_min": k_min,
        "total": total.public(),
        "months": [{"month": m, **months[m].public()} for m in sorted(months)],
        "provinces": [{**province_names(p), **provinces[p].public()} for p in sorted(provinces)],
    }
