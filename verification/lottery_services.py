"""The invoice lottery's use cases: register an invoice (JSON, the page, a text), show a period, draw it.

Registration verifies the invoice with `services.verify`, the very verification of the verify endpoint, so every
attempt counts against the client's rate, locks and challenges (a text's against its sender's daily cap): asking
to register is no way around them, and it says nothing more than verifying would (the duplicate and cap checks
come only after a `valid` answer)."""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from invoicing import sms_outbox
from invoicing.errors import Conflict, FieldError, NotFound, RateLimited, Unavailable, ValidationFailed
from invoicing.model import SHANGHAI, local_date, money_str
from verification import lottery as rules
from verification import lottery_repository as repo
from verification.masking import mask_phone
from verification.model import OUTCOME_TEXT, VerificationQuery, phone_refusal
from verification.services import Requester, Verifier, verify

log = logging.getLogger("invoiceloop.lottery")
DEFAULT_MIN_TOTAL = Decimal("100.00")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Lottery:
    """What the lottery needs: the verifier (its pool, limits, SMS countries), the minimum total including tax
    (LOTTERY_MIN_TOTAL), the prizes (LOTTERY_PRIZES) and the clock (tests move it)."""

    verifier: Verifier
    min_total: Decimal = DEFAULT_MIN_TOTAL
    prizes: tuple[rules.Prize, ...] = rules.DEFAULT_PRIZES
    clock: Callable[[], datetime] = field(default=_now)

    @property
    def pool(self) -> asyncpg.Pool:
        """The primary's pool (entries and draws are written there)."""
        return self.verifier.pool


@dataclass(frozen=True)
class Entry:
    """A registered entry: its id, its number in the period and the period."""

    entry_id: str
    seq: int
    period: str

    def as_json(self) -> dict[str, Any]:
        """The 201 answer of `POST /v1/lottery/entries`."""
        return {"entry_id": self.entry_id, "seq": self.seq, "period": self.period}


@dataclass
class NotEligible(ValidationFailed):
    """The invoice may not enter the lottery (not `valid`, too small, its period closed): 422 naming why; `zh`
    says it in Chinese for a text's reply."""

    zh: str = ""


def _refused(field_name: str, message: str, zh: str) -> NotEligible:
    return NotEligible(
        errors=[FieldError(field_name, message)], detail=f"not registered: {field_name} {message}", zh=zh
    )


def lottery_phone(query: VerificationQuery, countries: frozenset[str]) -> str:
    """The entry's phone, which winners are texted at: required, a mobile of SMS_ALLOWED_COUNTRIES."""
    if query.phone is None:
        raise _refused(
            "phone", "is required: the mobile number a prize is announced to, e.g. +8613800138000", "须填写手机号"
        )
    if phone_refusal(query.phone, countries) is not None:
        allowed = ", ".join(sorted(countries))
        raise _refused("phone", f"must be a mobile number of {allowed} that can receive SMS", "手机号须能接收短信")
    return query.phone


async def register(
    lottery: Lottery, query: VerificationQuery, requester: Requester, *, rate: bool = True, altcha: str | None = None
) -> Entry:
    """Register the invoice of `query` for its period's lottery, announcing a prize at `query.phone`.

    The invoice is verified first (`verify`: `RateLimited`, `ChallengeRequired` as there); then it must be
    `valid`, an invoice (not a credit note) of at least `min_total` (`NotEligible`, 422), never registered
    (`Conflict`, 409), of an open period (`NotEligible`), and the phone under its daily entries (`RateLimited`)."""
    phone = lottery_phone(query, lottery.verifier.sms_countries)
    asking = dataclasses.replace(requester, receipt=False)
    result = await verify(lottery.verifier, dataclasses.replace(query, phone=None), asking, rate=rate, altcha=altcha)
    if result.outcome != "valid" or result.invoice is None:
        zh, en = OUTCOME_TEXT[result.outcome]
        raise _refused("invoice", f"must verify as valid to enter the lottery; it is {result.outcome}: {en} ({zh})", zh)
    if result.invoice.get("kind") != "invoice":
        raise _refused("invoice", "is a credit note: only invoices enter the lottery", "红字发票不能登记")
    total = Decimal(str(result.invoice["total"]))
    if total < lottery.min_total:
        least = money_str(lottery.min_total)
        raise _refused(
            "invoice",
            f"total ¥{money_str(total)} is below the lottery's minimum of ¥{least}",
            f"价税合计低于¥{least}",
        )
    period = rules.period_of(query.issue_date)
    now = lottery.clock()
    if not rules.is_open(period, now):
        raise _refused(
            "issue_date",
            f"is in period {period}, whose registration closed {_closing(period)}",
            f"{period}期登记已截止",
        )
    await ensure_period(lottery, period)  # its commitment is published (committed) before its first entry
    return await _add(lottery, query, period, phone, requester.channel, now)


def _closing(period: str) -> str:
    return f"{rules.closes_at(period) - timedelta(seconds=1):%Y-%m-%d %H:%M:%S} (Asia/Shanghai)"


async def _add(
    lottery: Lottery, query: VerificationQuery, period: str, phone: str, channel: str, now: datetime
) -> Entry:
    """The entry, in one transaction: the phone's lock, then the period row's (`next_seq`: every registration of
    the period waits here for the one before to commit), and only then the once-ever and per-day checks, so two
    registrations of one invoice at once give one entry and one 409."""
    day = local_date(now)
    async with lottery.pool.acquire() as conn, conn.transaction():
        await repo.lock_phone(conn, phone)
        invoice = await repo.invoice_id(conn, query.invoice_code, query.invoice_number)
        if invoice is None:  # pragma: no cover - it verified a moment ago; only a replica lag could get here
            raise Unavailable("the invoice is not on the primary yet: try again in a moment")
        seq = await repo.next_seq(conn, period)
        if seq is None:
            raise _refused(
                "issue_date", f"is in period {period}, whose registration has closed", f"{period}期登记已截止"
            )
        if await repo.entered(conn, invoice):
            raise Conflict("this invoice is registered for the lottery already: an invoice enters once")
        if await repo.phone_entries_on(conn, phone, day) >= rules.PHONE_ENTRIES_PER_DAY:
            midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), SHANGHAI)
            raise RateLimited(
                f"this phone registered {rules.PHONE_ENTRIES_PER_DAY} invoices today (Asia/Shanghai): "
                "register more tomorrow",
                int((midnight - now).total_seconds()) + 1,
            )
        entry = rules.entry_id(period, query.invoice_code, query.invoice_number)
        await repo.add_entry(conn, entry, period, seq, invoice, phone, day, channel)
    return Entry(entry, seq, period)


async def ensure_period(lottery: Lottery, period: str) -> None:
    """The period's row with a fresh random seed and its commitment, in a transaction of its own."""
    seed = secrets.token_bytes(rules.SEED_BYTES)
    async with lottery.pool.acquire() as conn:
        await repo.ensure_period(conn, period, seed, rules.commitment(seed))


async def period_json(lottery: Lottery, period: str) -> dict[str, Any]:
    """`GET /v1/lottery/draws/{period}`: an open period gets its commitment on first sight; a closed one its
    entries root; a drawn one shows seed, beacon and winners. `NotFound` for a period that has not begun, or one
    that closed with no entries."""
    now = lottery.clock()
    async with lottery.pool.acquire() as conn:
        row = await repo.period(conn, period)
    if row is None:
        if not rules.is_open(period, now):
            raise NotFound(f"no lottery for period {period}: it has not begun, or closed without entries")
        await ensure_period(lottery, period)
        async with lottery.pool.acquire() as conn:
            row = await repo.period(conn, period)
        assert row is not None
    drawn = row["drawn_at"] is not None
    status = rules.status_of(period, now, drawn)
    if status == "closed" and row["entries_root"] is None:
        row = await _publish_root(lottery, period)
    body: dict[str, Any] = {
        "period": period,
        "status": status,
        "closes_at": rules.closes_at(period).astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "commitment": row["commitment"],
        "entries_count": row["entries_count"],
        "prizes": list(row["prizes"]) if drawn else rules.prizes_json(lottery.prizes),
    }
    if row["entries_root"] is not None:
        body["entries_root"] = bytes(row["entries_root"]).hex()
    if drawn:
        body["seed"] = bytes(row["seed"]).hex()
        body["beacon"] = bytes(row["beacon"]).hex()
        async with lottery.pool.acquire() as conn:
            body["winners"] = [
                {"tier": w["tier"], "seq": w["seq"], "entry_id": w["entry_id"]}
                for w in await repo.winners(conn, period)
            ]
    return body


async def _publish_root(lottery: Lottery, period: str) -> asyncpg.Record:
    """Compute and store the closed period's entries root (once; the period row's lock orders it after every
    entry: `next_seq` refuses entries once it is set)."""
    async with lottery.pool.acquire() as conn, conn.transaction():
        await repo.period(conn, period, lock=True)
        await repo.set_root(conn, period, rules.entries_root(await repo.entry_ids(conn, period)))
        row = await repo.period(conn, period)
    assert row is not None
    return row


async def entries_page(lottery: Lottery, period: str, after_seq: int, limit: int) -> list[asyncpg.Record]:
    """A page of the period's entries (seq, entry_id); `NotFound` for a period without a lottery."""
    async with lottery.pool.acquire() as conn:
        if await repo.period(conn, period) is None:
            raise NotFound(f"no lottery for period {period}")
        return await repo.entries_page(conn, period, after_seq, limit)


@dataclass(frozen=True)
class DrawResult:
    """What a draw published, and the SMS outbox rows written for its winners."""

    period: str
    entries: int
    root: bytes
    winners: list[rules.Winner]
    outbox_ids: list[int]


async def draw(
    pool: asyncpg.Pool, period: str, prizes: tuple[rules.Prize, ...], beacon: bytes, now: datetime
) -> DrawResult:
    """Draw a closed period (FORMATS.md) and publish the result, the winners' texts written to the SMS outbox in
    the same transaction. `Conflict` for an open period or one drawn already; `NotFound` without entries."""
    async with pool.acquire() as conn, conn.transaction():
        row = await repo.period(conn, period, lock=True)
        if row is None or row["entries_count"] == 0:
            raise NotFound(f"period {period} has no entries: there is nothing to draw")
        if row["drawn_at"] is not None:
            raise Conflict(f"period {period} was drawn already, at {row['drawn_at']:%Y-%m-%d %H:%M:%S} UTC")
        if now < rules.closes_at(period):
            raise Conflict(f"period {period} is still open: registration closes {_closing(period)}")
        ids = await repo.entry_ids(conn, period)
        root, winners = rules.winners_of(bytes(row["seed"]), beacon, ids, prizes)
        if row["entries_root"] is not None and bytes(row["entries_root"]) != root:
            raise Conflict(f"period {period}: the entries differ from the published entries root; not drawn")
        await repo.set_drawn(conn, period, root, beacon, rules.prizes_json(prizes))
        await repo.add_winners(conn, period, [(rank, w.tier, w.entry_id) for rank, w in enumerate(winners, 1)])
        names = {p.tier: p.name for p in prizes}
        texts = [
            (
                w["invoice_id"],
                w["phone"],
                rules.win_text(names[w["tier"]], period, w["invoice_code"], w["invoice_number"]),
            )
            for w in await repo.winners(conn, period)
        ]
        outbox_ids = await sms_outbox.add(conn, "lottery_win", texts)
    log.info("lottery %s drawn: %d entries, %d winners", period, len(ids), len(winners))
    return DrawResult(period, len(ids), root, winners, outbox_ids)


async def recent(lottery: Lottery, limit: int = 6) -> list[dict[str, Any]]:
    """The latest periods for the page, each as `period_json` gives it, with the winners' phones masked."""
    async with lottery.pool.acquire() as conn:
        names = [str(r["period"]) for r in await repo.recent_periods(conn, limit)]
    current = rules.period_of(local_date(lottery.clock()))
    if current not in names:
        names.insert(0, current)
    shown: list[dict[str, Any]] = []
    for name in names:
        body = await period_json(lottery, name)
        if body.get("winners"):
            async with lottery.pool.acquire() as conn:
                phones = {w["entry_id"]: mask_phone(w["phone"]) for w in await repo.winners(conn, name)}
            for winner in body["winners"]:
                winner["phone"] = phones.get(winner["entry_id"], "***")
        shown.append(body)
    return shown
