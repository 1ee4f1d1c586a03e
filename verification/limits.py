"""Abuse limits on Redis (figures in docs/verification.md). Every check-and-count is one Lua script,
so concurrent requests cannot slip past a limit between reading and counting.

Keys carry only keyed hashes of client addresses and phones, never the raw values. Without Redis
(REDIS_URL unset) the limits are off: `Limits.redis is None` lets every request through.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from redis.exceptions import RedisError

from invoicing.errors import DomainError, RateLimited

CN_TZ = ZoneInfo("Asia/Shanghai")

# KEYS[1] counter; ARGV[1] limit, ARGV[2] ttl_s. Counts the request; returns {count, ttl}.
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return {n, redis.call('TTL', KEYS[1])}
"""

# One round trip before the lookup. KEYS: rate counter, pair mismatches, global mismatches, this client's
# success flag. ARGV: rate limit (0: no rate limit), rate ttl_s, pair limit, global limit, lock ttl_s, trusted.
# Returns {state, ttl}: 0 go on (one mismatch reserved on both counters, given back by `_REFUND` when the
# details match, so a burst cannot exceed the limits), 1 locked, 2 over the rate (ttl: seconds to wait),
# 3 go on without a reservation (trusted: a QR URL whose signature checked is no guess).
_BEGIN = """
if tonumber(ARGV[1]) > 0 then
  local n = redis.call('INCR', KEYS[1])
  if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
  if n > tonumber(ARGV[1]) then return {2, redis.call('TTL', KEYS[1])} end
end
if ARGV[6] == '1' then return {3, 0} end
local pair = tonumber(redis.call('GET', KEYS[2]) or '0')
local all = tonumber(redis.call('GET', KEYS[3]) or '0')
if pair >= tonumber(ARGV[3]) then return {1, 0} end
if all >= tonumber(ARGV[4]) and redis.call('EXISTS', KEYS[4]) == 0 then return {1, 0} end
redis.call('INCR', KEYS[2]); redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('INCR', KEYS[3]); redis.call('EXPIRE', KEYS[3], ARGV[5])
return {0, 0}
"""

# Not a wrong guess: give the reserved mismatch back; ARGV[2] '1': the details matched, remember that this
# client succeeded today (it stays served when the global ceiling trips).
_REFUND = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
if ARGV[2] == '1' then redis.call('SET', KEYS[3], '1', 'EX', ARGV[1]) end
return 0
"""

GO, LOCKED, LIMITED, TRUSTED = 0, 1, 2, 3


class LimitsUnavailable(DomainError):
    """Redis cannot be reached: verifications are refused (503) rather than let through unlimited."""

    status = 503
    title = "Service unavailable"
    type_slug = "limits-unavailable"


@dataclass(frozen=True)
class LimitFigures:
    """The figures; each can be set with `VERIFY_<NAME>` in Settings.extra (tests shorten the windows)."""

    rate_per_window: int = 30  # verification requests per client address
    rate_window_s: int = 60
    mismatches_to_lock: int = 5  # per invoice and client address, a day
    global_mismatches: int = 50  # per invoice from all clients, a day
    lock_ttl_s: int = 0  # 0: until midnight Asia/Shanghai
    receipts_per_phone: int = 5  # SMS receipts per destination phone, a day
    receipts_per_client: int = 10  # SMS receipts asked for by one client address, a day
    inbound_per_sender: int = 20  # texts answered per sender phone, a day

    @classmethod
    def from_extra(cls, extra: Mapping[str, str]) -> LimitFigures:
        """Defaults, overridden by `VERIFY_RATE_PER_WINDOW=...` style entries."""
        values = {f.name: int(extra[f"VERIFY_{f.name.upper()}"]) for f in fields(cls)
                  if f"VERIFY_{f.name.upper()}" in extra}  # fmt: skip
        return cls(**values)


def day_ttl_s(now: datetime | None = None) -> int:
    """Seconds until the next midnight in China (the day the limits count in)."""
    local = (now or datetime.now(UTC)).astimezone(CN_TZ)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - local).total_seconds()))


def _day() -> str:
    return datetime.now(CN_TZ).strftime("%Y%m%d")


class Limits:
    """The limits of one process, on its Redis client."""

    def __init__(self, redis: Any, figures: LimitFigures | None = None) -> None:
        self.redis = redis
        self.figures = figures or LimitFigures()
        if redis is not None:
            self._count = redis.register_script(_COUNT)
            self._begin = redis.register_script(_BEGIN)
            self._refund = redis.register_script(_REFUND)

    def _lock_ttl(self) -> int:
        return self.figures.lock_ttl_s or day_ttl_s()

    async def _over(self, key: str, limit: int, ttl_s: int) -> int | None:
        """Count one on `key`; the seconds until it resets when that went over `limit`, else None."""
        count, ttl = await self._count(keys=[key], args=[limit, ttl_s])
        return max(1, int(ttl)) if int(count) > limit else None

    def _rate_key(self, client: str) -> str:
        return f"vl:rate:{client}:{int(time.time()) // self.figures.rate_window_s}"

    def _rate_error(self, retry_s: int) -> RateLimited:
        f = self.figures
        return RateLimited(f"at most {f.rate_per_window} verifications per {f.rate_window_s} s", max(1, retry_s))

    async def check_rate(self, client: str) -> None:
        """Count a request of this client address; `RateLimited` (429, Retry-After) over the rate."""
        if self.redis is None:
            return
        f = self.figures
        retry = await self._over(self._rate_key(client), f.rate_per_window, f.rate_window_s)
        if retry is not None:
            raise self._rate_error(retry)

    def _guess_keys(self, invoice: str, client: str) -> list[str]:
        day = _day()
        return [f"vl:miss:{invoice}:{client}:{day}", f"vl:gmiss:{invoice}:{day}", f"vl:ok:{invoice}:{client}:{day}"]

    async def begin(self, invoice: str, client: str, *, trusted: bool, rate: bool = True) -> int:
        """Before the lookup of `invoice` (its code and number): count the client's rate (when `rate`;
        `RateLimited` over it) and tell whether the pair is locked (`LOCKED`); else `GO` with one mismatch
        reserved, or `TRUSTED` (nothing reserved)."""
        if self.redis is None:
            return TRUSTED
        f = self.figures
        keys = [self._rate_key(client), *self._guess_keys(invoice, client)]
        args = [f.rate_per_window if rate else 0, f.rate_window_s, f.mismatches_to_lock, f.global_mismatches,
                self._lock_ttl(), "1" if trusted else "0"]  # fmt: skip
        try:
            state, ttl = await self._begin(keys=keys, args=args)
        except RedisError as exc:  # fail closed: without the counters, guessing would be unlimited
            raise LimitsUnavailable("verification is briefly unavailable; please try again shortly") from exc
        if int(state) == LIMITED:
            raise self._rate_error(int(ttl))
        return int(state)

    async def give_back(self, invoice: str, client: str, *, matched: bool) -> None:
        """The query was no wrong guess (details matched, or no such invoice): give the reservation back."""
        if self.redis is not None:
            await self._refund(keys=self._guess_keys(invoice, client), args=[self._lock_ttl(), "1" if matched else "0"])

    async def allow_receipt(self, client: str, phone: str) -> bool:
        """Whether an SMS receipt may go to `phone` (hashed) asked for by `client` (counts both)."""
        if self.redis is None:
            return True
        f, day, ttl = self.figures, _day(), day_ttl_s() + 3600
        if await self._over(f"vl:rc:{client}:{day}", f.receipts_per_client, ttl) is not None:
            return False
        return await self._over(f"vl:rp:{phone}:{day}", f.receipts_per_phone, ttl) is None

    async def allow_inbound(self, sender: str) -> bool:
        """Whether a text from `sender` (hashed) is answered today."""
        if self.redis is None:
            return True
        limit = self.figures.inbound_per_sender
        return await self._over(f"vl:in:{sender}:{_day()}", limit, day_ttl_s() + 3600) is None
