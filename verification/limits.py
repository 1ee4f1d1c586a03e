"""Abuse limits on Redis (figures in docs/verification.md). Every check-and-count is one Lua script,
so concurrent requests cannot slip past a limit between reading and counting.

Keys carry only keyed hashes of client addresses and phones, never the raw values. Without Redis
(REDIS_URL unset) the limits are off: `Limits.redis is None` lets every request through.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, Literal

from redis.exceptions import RedisError

from invoicing.errors import RateLimited, Unavailable
from invoicing.model import SHANGHAI
from verification.model import ReceiptRefusal

DEFAULT_SMS_DAILY_BUDGET = 10_000  # SMS_DAILY_BUDGET: receipts a day, service-wide (docs/verification.md says why)

# KEYS[1] counter; ARGV[1] limit, ARGV[2] ttl_s. Counts the request; returns {count, ttl}.
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return {n, redis.call('TTL', KEYS[1])}
"""

# KEYS: the client's and the phone's receipts today, the service's receipts today; ARGV: the client's cap, the
# phone's cap, the service's budget, ttl_s. All three are checked before any is counted, so a receipt refused by
# one does not spend the others; returns 0 (counted: send it), 1 (a per-client or per-phone cap) or 2 (the
# service's budget).
_RECEIPT = """
local client = tonumber(redis.call('GET', KEYS[1]) or '0')
local phone = tonumber(redis.call('GET', KEYS[2]) or '0')
if client >= tonumber(ARGV[1]) or phone >= tonumber(ARGV[2]) then return 1 end
if tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[3]) then return 2 end
for i = 1, 3 do
  redis.call('INCR', KEYS[i]); redis.call('EXPIRE', KEYS[i], ARGV[4])
end
return 0
"""

# One round trip per batch, after the lookup. ARGV: rate limit, rate ttl_s, pair limit, hot after, lock ttl_s, the
# day (Asia/Shanghai), the rate window's number, the pair limit and hot-after figure of the amount path, then one
# argument per item: "{rate on}{trusted}{found}{path}{ask}|{invoice}|{client}" (flags '1'/'0'; found: 'm' the
# details matched, 'x' they did not, 'n' no such invoice; path: 'c' check code, 'a' amount; ask: '1' when the
# channel can show a challenge, '0' for texts; the invoice's code and number; the client's hash). Key names are
# built here from those: one short argument per item keeps a batch cheap to send (one Redis, not a cluster).
# Items are taken in order, each atomically, so a burst inside one batch is counted as it would be one by one.
# Per item: count the rate; a trusted item (a QR URL whose signature checked is no guess) goes on untouched; a
# pair (this client, this invoice) over its path's limit is locked, for this client only; an invoice is "hot"
# for a path once its mismatches from all clients today reach the path's figure: there, a client that neither
# succeeded on it today nor holds a proof of work is asked for one (4); else a mismatch is counted on both
# counters (on a hot invoice it spends the client's proof: one proof buys one wrong answer there), and a match
# marks the client as succeeded today. Returns per item {state, ttl}: 0 go on, 1 locked, 2 over the rate (ttl:
# seconds to wait), 3 trusted, 4 challenge.
_SETTLE = """
local day, window = ARGV[6], ARGV[7]
local function one(rate_on, trusted, found, path, ask, invoice, client)
  if rate_on == '1' then
    local rate = 'vl:rate:' .. client .. ':' .. window
    local n = redis.call('INCR', rate)
    if n == 1 then redis.call('EXPIRE', rate, ARGV[2]) end
    if n > tonumber(ARGV[1]) then return 2, redis.call('TTL', rate) end
  end
  if trusted == '1' then return 3, 0 end
  local pair, all = 'vl:miss:' .. invoice .. ':' .. client .. ':' .. day, 'vl:gmiss:' .. invoice .. ':' .. day
  local ok, proof = 'vl:ok:' .. invoice .. ':' .. client .. ':' .. day, 'vl:proof:' .. client
  local amount = path == 'a'
  if tonumber(redis.call('GET', pair) or '0') >= tonumber(amount and ARGV[8] or ARGV[3]) then return 1, 0 end
  local hot = ask == '1' and tonumber(redis.call('GET', all) or '0') >= tonumber(amount and ARGV[9] or ARGV[4])
    and redis.call('EXISTS', ok) == 0
  if hot and redis.call('EXISTS', proof) == 0 then return 4, 0 end
  if found == 'x' then
    redis.call('INCR', pair); redis.call('EXPIRE', pair, ARGV[5])
    redis.call('INCR', all); redis.call('EXPIRE', all, ARGV[5])
    if hot then redis.call('DEL', proof) end
  elseif found == 'm' then
    redis.call('SET', ok, '1', 'EX', ARGV[5])
  end
  return 0, 0
end
local out = {}
for i = 10, #ARGV do
  local state, ttl = one(string.match(ARGV[i], '^(.)(.)(.)(.)(.)|([^|]+)|(.+)$'))
  out[#out + 1] = state; out[#out + 1] = ttl
end
return out
"""

# KEYS[1] the client's rate counter (the one `_SETTLE` counts), KEYS[2] a solution's "claimed" marker; ARGV rate
# limit, rate ttl_s, the marker's ttl_s. Before a proof of work costs the server a key derivation, it counts against
# the client's rate and claims its challenge: each challenge is checked once, so a solution proves once (a replay
# finds the marker) and a bad one cannot be retried. Returns {0, 0} claimed, {1, 0} claimed already, {2, ttl} over
# the rate.
_CLAIM = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then return {2, redis.call('TTL', KEYS[1])} end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then return {0, 0} end
return {1, 0}
"""


class Admission(IntEnum):
    """What the limits say of one verification (the numbers the Lua script answers with)."""

    GO = 0  # answer it (a mismatch was counted, or a match remembered)
    LOCKED = 1  # this client and invoice pair is locked today (other clients are not)
    OVER_RATE = 2  # the client is over its rate: answer 429
    TRUSTED = 3  # a signed QR URL, no guess: answer it and count nothing
    CHALLENGE = 4  # the invoice is hot for this path and the client has not proven itself: ask for a proof of work


Found = Literal["m", "x", "n"]  # what the lookup found: the details matched, a mismatch, no such invoice
MATCHED: Found = "m"
MISMATCHED: Found = "x"
NOT_FOUND: Found = "n"


@dataclass(frozen=True)
class Attempt:
    """One verification as the limits see it: the invoice (code and number), the client's hash, whether it
    is trusted (a signed QR URL), whether the client's rate is counted (texts have their own cap), whether it
    guesses by amount (tighter figures) and whether its channel can show a challenge (texts cannot)."""

    invoice: str
    client: str
    trusted: bool
    rate: bool = True
    by_amount: bool = False
    challengeable: bool = True

    def flags(self, found: Found) -> str:
        """The item's argument of `_SETTLE`."""
        path = "a" if self.by_amount else "c"
        return f"{int(self.rate)}{int(self.trusted)}{found}{path}{int(self.challengeable)}|{self.invoice}|{self.client}"


class LimitsUnavailable(Unavailable):
    """Redis cannot be reached: verifications are refused (503) rather than let through unlimited."""


@dataclass(frozen=True)
class LimitFigures:
    """The figures; each can be set with `VERIFY_<NAME>` in Settings.extra (tests shorten the windows)."""

    rate_per_window: int = 30  # verification requests per client address
    rate_window_s: int = 60
    mismatches_to_lock: int = 5  # per invoice and client address, a day (check code path)
    global_mismatches: int = 10  # per invoice from all clients, a day: then unproven clients are challenged
    amount_mismatches_to_lock: int = 2  # the amount path: the pair is closed to amounts after this many mismatches
    amount_global_mismatches: int = 0  # the amount path is hot from this many mismatches (0: always challenged)
    lock_ttl_s: int = 0  # 0: until midnight Asia/Shanghai
    challenge_cost: int = 5000  # PBKDF2/SHA-256 iterations per try of the proof of work
    challenge_zeros: int = 2  # hex zeros the derived key must start with: 16**zeros tries expected
    challenge_ttl_s: int = 600  # a challenge must be solved and sent within this
    proof_ttl_s: int = (
        600  # a solved challenge proves its client this long (or until one wrong answer on a hot invoice)
    )
    receipts_per_phone: int = 5  # SMS receipts per destination phone, a day
    receipts_per_client: int = 10  # SMS receipts asked for by one client address, a day
    inbound_per_sender: int = 20  # texts answered per sender phone, a day

    @classmethod
    def from_extra(cls, extra: Mapping[str, str]) -> LimitFigures:
        """Defaults, overridden by `VERIFY_RATE_PER_WINDOW=...` style entries."""
        values = {
            f.name: int(extra[f"VERIFY_{f.name.upper()}"]) for f in fields(cls) if f"VERIFY_{f.name.upper()}" in extra
        }
        return cls(**values)


def day_ttl_s(now: datetime | None = None) -> int:
    """Seconds until the next midnight in China (the day the limits count in)."""
    local = (now or datetime.now(UTC)).astimezone(SHANGHAI)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - local).total_seconds()))


def _day() -> str:
    return datetime.now(SHANGHAI).strftime("%Y%m%d")


class Limits:
    """The limits of one process, on its Redis client."""

    def __init__(
        self, redis: Any, figures: LimitFigures | None = None, *, receipt_budget: int = DEFAULT_SMS_DAILY_BUDGET
    ) -> None:
        self.redis = redis
        self.figures = figures or LimitFigures()
        self.receipt_budget = receipt_budget  # SMS receipts a day from the whole service
        if redis is not None:
            self._count = redis.register_script(_COUNT)
            self._settle = redis.register_script(_SETTLE)
            self._receipt = redis.register_script(_RECEIPT)
            self._claim = redis.register_script(_CLAIM)

    def _lock_ttl(self) -> int:
        return self.figures.lock_ttl_s or day_ttl_s()

    async def _over(self, key: str, limit: int, ttl_s: int) -> int | None:
        """Count one on `key`; the seconds until it resets when that went over `limit`, else None."""
        count, ttl = await self._count(keys=[key], args=[limit, ttl_s])
        return max(1, int(ttl)) if int(count) > limit else None

    def _window(self) -> int:
        return int(time.time()) // self.figures.rate_window_s

    def _rate_error(self, retry_s: int) -> RateLimited:
        f = self.figures
        return RateLimited(f"at most {f.rate_per_window} verifications per {f.rate_window_s} s", max(1, retry_s))

    async def settle_many(self, items: Sequence[tuple[Attempt, Found]]) -> list[Admission | RateLimited]:
        """After the lookup, in one round trip for a batch, per item (`Attempt`, what was `Found`): count the
        client's rate (when `rate`), tell whether the pair is locked (`Admission.LOCKED`), else count a mismatch or
        remember a success and go on (`Admission.GO`; `Admission.TRUSTED`, counting nothing, for a signed QR URL;
        `Admission.CHALLENGE` when a proof of work is wanted first). Per item its
        state, or the `RateLimited` to answer it with; `LimitsUnavailable` (for all) when Redis cannot be
        reached."""
        if self.redis is None:
            return [Admission.TRUSTED] * len(items)
        f = self.figures
        args: list[Any] = [
            f.rate_per_window,
            f.rate_window_s,
            f.mismatches_to_lock,
            f.global_mismatches,
            self._lock_ttl(),
            _day(),
            self._window(),
            f.amount_mismatches_to_lock,
            f.amount_global_mismatches,
        ]
        args += [a.flags(found) for a, found in items]
        try:
            answer = await self._settle(args=args)
        except RedisError as exc:  # fail closed: without the counters, guessing would be unlimited
            raise LimitsUnavailable("verification is briefly unavailable; please try again shortly") from exc
        pairs = zip((int(x) for x in answer[0::2]), answer[1::2], strict=True)
        return [
            self._rate_error(int(ttl)) if state == Admission.OVER_RATE else Admission(state) for state, ttl in pairs
        ]

    async def charge(self, client: str) -> None:
        """Count one request of `client` against its rate (the counter `_SETTLE` counts) before work that is no
        verification yet, such as reading a photo (`RateLimited` over it); `LimitsUnavailable` without Redis."""
        if self.redis is None:
            return
        f = self.figures
        try:
            retry_s = await self._over(f"vl:rate:{client}:{self._window()}", f.rate_per_window, f.rate_window_s)
        except RedisError as exc:
            raise LimitsUnavailable("verification is briefly unavailable; please try again shortly") from exc
        if retry_s is not None:
            raise self._rate_error(retry_s)

    async def claim(self, client: str, solution_id: str) -> bool:
        """Count a proof of work sent by `client` against its rate (`RateLimited` over it) and claim its challenge
        (`solution_id`, the challenge's signature): True the first time, False when it was claimed already.
        `LimitsUnavailable` when Redis cannot be reached."""
        if self.redis is None:
            return True
        f = self.figures
        keys = [f"vl:rate:{client}:{self._window()}", f"vl:pow:{solution_id}"]
        try:
            state, ttl = await self._claim(keys=keys, args=[f.rate_per_window, f.rate_window_s, f.challenge_ttl_s + 60])
        except RedisError as exc:
            raise LimitsUnavailable("verification is briefly unavailable; please try again shortly") from exc
        if int(state) == Admission.OVER_RATE:
            raise self._rate_error(int(ttl))
        return int(state) == 0

    async def prove(self, client: str) -> None:
        """`client` solved a challenge: it is proven for `proof_ttl_s` (or until a wrong answer on a hot invoice)."""
        if self.redis is None:
            return
        try:
            await self.redis.set(f"vl:proof:{client}", "1", ex=self.figures.proof_ttl_s)
        except RedisError as exc:
            raise LimitsUnavailable("verification is briefly unavailable; please try again shortly") from exc

    async def receipt_refusal(self, client: str, phone: str) -> ReceiptRefusal | None:
        """Why no SMS receipt goes to `phone` (hashed) asked for by `client` today: the client's or the phone's
        daily cap, or the service's daily budget (China days); None: it was counted on all three, send it.
        Never raises: without its counters a receipt is refused (`unavailable`), the verification stands."""
        if self.redis is None:
            return None
        f, day = self.figures, _day()
        keys = [f"vl:rc:{client}:{day}", f"vl:rp:{phone}:{day}", f"vl:rb:{day}"]
        try:
            state = int(
                await self._receipt(
                    keys=keys,
                    args=[f.receipts_per_client, f.receipts_per_phone, self.receipt_budget, day_ttl_s() + 3600],
                )
            )
        except RedisError:
            return "unavailable"
        return None if state == 0 else "daily_limit_reached" if state == 1 else "service_budget_reached"

    async def allow_inbound(self, sender: str) -> bool:
        """Whether a text from `sender` (hashed) is answered today."""
        if self.redis is None:
            return True
        limit = self.figures.inbound_per_sender
        return await self._over(f"vl:in:{sender}:{_day()}", limit, day_ttl_s() + 3600) is None
