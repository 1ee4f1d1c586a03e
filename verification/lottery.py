"""The invoice lottery's rules (FORMATS.md "Lottery"): entry ids, periods and when they close, the commitment,
the entries root and the draw, the prizes. Pure: no I/O, so anyone's recomputation of a draw is this module's
arithmetic on the published data (`invoiceloop lottery verify` does exactly that).

A period is `YYYY-MM` of the invoice's issue date (Asia/Shanghai). Registration for it closes at the end of the
next month's 10th day; the draw follows: `key = SHA-256(seed || beacon)`, and for k = 0, 1, ... the entry at
`HMAC-SHA256(key, entries_root || uint64_be(k)) mod N` (0-based, in `seq` order) wins unless already drawn."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from invoicing.merkle import RootBuilder
from invoicing.model import SHANGHAI

ENTRY_DOMAIN = "IL-LOTTERY1"
CLOSING_DAY = 10  # of the next month: registration is open until that day ends (Asia/Shanghai)
PHONE_ENTRIES_PER_DAY = 10  # entries one phone may register in one Asia/Shanghai day
MAX_WINNERS = 10_000  # LOTTERY_PRIZES' counts in all
SEED_BYTES = 32
_PERIOD_RE = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
Status = Literal["open", "closed", "drawn"]


def entry_id(period: str, invoice_code: str, invoice_number: str) -> str:
    """Hex SHA-256 of UTF-8 `IL-LOTTERY1|{period}|{invoice_code}|{invoice_number}`."""
    return hashlib.sha256(f"{ENTRY_DOMAIN}|{period}|{invoice_code}|{invoice_number}".encode()).hexdigest()


def period_of(issue_date: date) -> str:
    """The period of an invoice issued on `issue_date` (a date in Asia/Shanghai): `YYYY-MM`."""
    return f"{issue_date.year:04d}-{issue_date.month:02d}"


def parse_period(text: str) -> str | None:
    """`YYYY-MM` (month 01..12, year 2000 to 9998), or None."""
    match = _PERIOD_RE.fullmatch(text)
    return text if match and 2000 <= int(match[1]) <= 9998 else None


def _month_start(year: int, month: int) -> datetime:
    return datetime(year, month, 1, tzinfo=SHANGHAI)


def opens_at(period: str) -> datetime:
    """The period's first moment: its first day's midnight in Asia/Shanghai."""
    return _month_start(int(period[:4]), int(period[5:]))


def closes_at(period: str) -> datetime:
    """When registration closes: midnight (Asia/Shanghai) after the 10th day of the next month."""
    year, month = int(period[:4]), int(period[5:])
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return _month_start(year, month) + timedelta(days=CLOSING_DAY)


def is_open(period: str, now: datetime) -> bool:
    """Whether entries of `period` are accepted at `now`."""
    return opens_at(period) <= now < closes_at(period)


def status_of(period: str, now: datetime, drawn: bool) -> Status:
    """The period's status: `drawn` once drawn, else `open` until it closes, then `closed`."""
    if drawn:
        return "drawn"
    return "open" if now < closes_at(period) else "closed"


def commitment(seed: bytes) -> str:
    """Hex SHA-256 of the seed: published before the period's first entry."""
    return hashlib.sha256(seed).hexdigest()


def entries_root(entry_ids: Iterable[str]) -> bytes:
    """The RFC 9162 root (hashed as the transparency log is) over the raw 32-byte entry ids, in `seq` order."""
    builder = RootBuilder()
    for entry in entry_ids:
        builder.add(bytes.fromhex(entry))
    return builder.root()


def draw(seed: bytes, beacon: bytes, root: bytes, entries: int, winners: int) -> list[int]:
    """The winners' 0-based positions in `seq` order, in draw order: `min(winners, entries)` distinct positions."""
    key = hashlib.sha256(seed + beacon).digest()
    wanted = min(winners, entries)
    drawn: list[int] = []
    taken: set[int] = set()
    k = 0
    while len(drawn) < wanted:
        r = int.from_bytes(hmac.new(key, root + k.to_bytes(8, "big"), hashlib.sha256).digest(), "big")
        k += 1
        position = r % entries
        if position not in taken:
            taken.add(position)
            drawn.append(position)
    return drawn


@dataclass(frozen=True)
class Prize:
    """One tier of prizes: its number (1 is the first prize), its name and how many are drawn."""

    tier: int
    name: str
    count: int


DEFAULT_PRIZES = (
    Prize(1, "一等奖 First prize", 1),
    Prize(2, "二等奖 Second prize", 5),
    Prize(3, "三等奖 Third prize", 20),
)


def parse_prizes(text: str) -> tuple[Prize, ...]:
    """LOTTERY_PRIZES: a JSON list of `{"tier": 1, "name": "...", "count": 1}`, tiers 1..k once each, each count at
    least 1, at most `MAX_WINNERS` in all; ValueError says what is wrong."""
    try:
        items = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"is not JSON: {exc}") from None
    if not isinstance(items, list) or not items:
        raise ValueError('must be a non-empty JSON list such as [{"tier": 1, "name": "一等奖", "count": 1}]')
    prizes: list[Prize] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"tier", "name", "count"}:
            raise ValueError(f"item {index} must have exactly tier, name and count")
        tier, name, count = item["tier"], item["name"], item["count"]
        if not (isinstance(tier, int) and isinstance(count, int) and isinstance(name, str) and name.strip()):
            raise ValueError(f"item {index}: tier and count are whole numbers, name a non-empty string")
        if count < 1:
            raise ValueError(f"item {index}: count must be at least 1")
        prizes.append(Prize(tier, name.strip(), count))
    prizes.sort(key=lambda p: p.tier)
    if [p.tier for p in prizes] != list(range(1, len(prizes) + 1)):
        raise ValueError("tiers must be 1, 2, ... once each")
    if sum(p.count for p in prizes) > MAX_WINNERS:
        raise ValueError(f"at most {MAX_WINNERS} prizes in all")
    return tuple(prizes)


def prizes_json(prizes: Sequence[Prize]) -> list[dict[str, object]]:
    """The prizes as published: `[{"tier", "name", "count"}]`, tier 1 first."""
    return [{"tier": p.tier, "name": p.name, "count": p.count} for p in prizes]


def prizes_from_json(items: Sequence[dict[str, object]]) -> tuple[Prize, ...]:
    """The prizes as stored or published (what `prizes_json` wrote)."""
    return tuple(Prize(int(str(i["tier"])), str(i["name"]), int(str(i["count"]))) for i in items)


def tiers_in_draw_order(prizes: Sequence[Prize], winners: int) -> list[int]:
    """The tier of each winner in draw order: tier 1's count first, then tier 2's, and so on."""
    tiers = [p.tier for p in sorted(prizes, key=lambda p: p.tier) for _ in range(p.count)]
    return tiers[:winners]


@dataclass(frozen=True)
class Winner:
    """One winner as published: the tier won, the entry's `seq` (1-based) and its id."""

    tier: int
    seq: int
    entry_id: str


def winners_of(
    seed: bytes, beacon: bytes, entry_ids: Sequence[str], prizes: Sequence[Prize]
) -> tuple[bytes, list[Winner]]:
    """The whole draw from its inputs: the entries root, and the winners in draw order."""
    root = entries_root(entry_ids)
    total = sum(p.count for p in prizes)
    positions = draw(seed, beacon, root, len(entry_ids), total)
    tiers = tiers_in_draw_order(prizes, len(positions))
    return root, [Winner(t, p + 1, entry_ids[p]) for t, p in zip(tiers, positions, strict=True)]


def win_text(tier_name: str, period: str, invoice_code: str, invoice_number: str) -> str:
    """The text a winner gets."""
    return (
        f"【发票抽奖】恭喜！您登记的发票 {invoice_code}/{invoice_number} 在 {period} 期抽奖中获得{tier_name}。"
        f" Your invoice won in the {period} lottery."
    )
