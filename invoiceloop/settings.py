"""Settings, built once from the environment (or `.env`) and passed down; no import-time globals."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

from invoicing.buyer_texts import DEFAULT_TTL_DAYS
from invoicing.checkpoint import default_origin
from invoicing.errors import ConfigError
from invoicing.keys import write_private
from invoicing.model import DEFAULT_MAX_BATCH_LINES, DEFAULT_MAX_SERIES_PER_YEAR, DEFAULT_TAX_RATES
from invoicing.queue import RedisTarget, parse_sentinels
from invoicing.sms_outbox import STALE_SENDING_S
from invoicing.smtp import SmtpTarget
from invoicing.webhook_sender import HookConfig
from invoicing.webhooks import DEFAULT_DISABLE_AFTER_S, DEFAULT_RETRY_SCHEDULE_S, parse_schedule
from verification.limits import DEFAULT_SMS_DAILY_BUDGET
from verification.lottery import DEFAULT_PRIZES, Prize, parse_prizes
from verification.lottery_services import DEFAULT_MIN_TOTAL
from verification.model import DEFAULT_SMS_COUNTRIES, parse_countries
from verification.scan import SLOTS as SCAN_SLOTS
from verification.scan import TIMEOUT_S as SCAN_TIMEOUT_S

N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Settings:
    """The service's configuration (API.md "Configuration"), from the environment or `.env`."""

    database_url: str | None = None
    database_replica_url: str | None = None  # DATABASE_REPLICA_URL: a hot standby for reads that may lag
    redis_url: str | None = None
    redis_sentinels: tuple[tuple[str, int], ...] = ()  # REDIS_SENTINELS: host:port,... (then REDIS_URL is not used)
    redis_sentinel_master: str = "mymaster"  # REDIS_SENTINEL_MASTER: the name the Sentinels monitor
    public_base_url: str = "http://127.0.0.1:8000"
    data_dir: Path = Path(".invoiceloop")
    signing_key_file: Path | None = None
    keyring_dir: Path | None = None  # INVOICELOOP_KEYRING; None: <data_dir>/keyring, created on first use
    log_key_file: Path | None = None  # LOG_KEY_FILE; None: <data_dir>/log_key.pem
    log_origin: str | None = None  # LOG_ORIGIN; None: the host of PUBLIC_BASE_URL + "/log"
    log_verifier_key: str | None = None  # LOG_VERIFIER_KEY: what API nodes publish, so they need no LOG_KEY_FILE
    check_code_secret: str | None = None
    sms_backend: str = "console"
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    twilio_api_base_url: str | None = None
    sms_allowed_countries: frozenset[str] = DEFAULT_SMS_COUNTRIES  # SMS_ALLOWED_COUNTRIES: receipts to mobiles of these
    sms_daily_budget: int = DEFAULT_SMS_DAILY_BUDGET  # SMS_DAILY_BUDGET: receipts a China day, whole service
    tax_rates: tuple[Decimal, ...] = DEFAULT_TAX_RATES
    key_cache_ttl_s: float = 5.0
    signatures_kept: int = 100_000  # good signatures each process remembers (0: check every one, as the bench does)
    db_pool_max: int = 20
    redis_timeout_s: float = 0.5  # REDIS_TIMEOUT_S: connect and read timeout of every Redis client
    max_series_per_year: int = DEFAULT_MAX_SERIES_PER_YEAR  # INVOICELOOP_MAX_SERIES_PER_YEAR
    max_batch_lines: int = DEFAULT_MAX_BATCH_LINES  # INVOICELOOP_MAX_BATCH_LINES: lines in one batch, in all
    smtp_url: str | None = None  # SMTP_URL: where the buyer's mail goes (invoicing/smtp.py); unset, mail waits
    smtp_from: str = "invoiceloop <invoices@localhost>"  # SMTP_FROM: the From of the buyer's mail
    mail_lease_s: float = 120.0  # MAIL_LEASE_S: a mail being sent this long lost its worker and is sent again
    sms_lease_s: float = STALE_SENDING_S  # SMS_LEASE_S: a text being sent this long lost its worker and is sent again
    scan_slots: int = SCAN_SLOTS  # SCAN_SLOTS: photos and PDFs decoded at once in each process (then 503)
    scan_timeout_s: float = SCAN_TIMEOUT_S  # SCAN_TIMEOUT_S: a photo or PDF not read within this is refused (422)
    download_link_ttl_days: int = DEFAULT_TTL_DAYS  # DOWNLOAD_LINK_TTL_DAYS: how long a texted download link works
    lottery_min_total: Decimal = DEFAULT_MIN_TOTAL  # LOTTERY_MIN_TOTAL: an entry's least total incl. tax (CNY)
    lottery_prizes: tuple[Prize, ...] = DEFAULT_PRIZES  # LOTTERY_PRIZES: JSON [{"tier", "name", "count"}, ...]
    public_stats_ttl_s: float = 60.0  # PUBLIC_STATS_TTL_S: how long /stats and /v1/stats/public keep their figures
    metrics_token: str | None = None  # METRICS_TOKEN: /metrics wants it as a bearer token; unset, private peers only
    webhook_allow_private: bool = False  # WEBHOOK_ALLOW_PRIVATE=1: http:// and private addresses (tests only)
    webhook_timeout_s: float = 10.0  # WEBHOOK_TIMEOUT_S: one delivery try, everything included
    webhook_endpoint_concurrency: int = 4  # WEBHOOK_ENDPOINT_CONCURRENCY: tries in flight per endpoint
    webhook_retry_schedule_s: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE_S  # WEBHOOK_RETRY_SCHEDULE_S: waits
    webhook_disable_after_s: float = DEFAULT_DISABLE_AFTER_S  # WEBHOOK_DISABLE_AFTER_S: failing this long, disabled
    webhook_log_days: int = 30  # WEBHOOK_LOG_DAYS: webhook events, messages and delivery logs kept this long
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the variables of API.md; `.env` in the working folder is read first when present."""
        if env is None:
            from dotenv import dotenv_values

            env = {**{k: v for k, v in dotenv_values(".env").items() if v is not None}, **os.environ}
        rates = env.get("INVOICELOOP_TAX_RATES")
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            database_replica_url=env.get("DATABASE_REPLICA_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            redis_sentinels=_sentinels(env.get("REDIS_SENTINELS")),
            redis_sentinel_master=env.get("REDIS_SENTINEL_MASTER") or "mymaster",
            public_base_url=(env.get("PUBLIC_BASE_URL") or "http://127.0.0.1:8000").rstrip("/"),
            data_dir=Path(env.get("INVOICELOOP_DATA_DIR") or ".invoiceloop"),
            signing_key_file=Path(env["SIGNING_KEY_FILE"]) if env.get("SIGNING_KEY_FILE") else None,
            keyring_dir=Path(env["INVOICELOOP_KEYRING"]) if env.get("INVOICELOOP_KEYRING") else None,
            log_key_file=Path(env["LOG_KEY_FILE"]) if env.get("LOG_KEY_FILE") else None,
            log_origin=env.get("LOG_ORIGIN") or None,
            log_verifier_key=env.get("LOG_VERIFIER_KEY") or None,
            check_code_secret=env.get("CHECK_CODE_SECRET") or None,
            sms_backend=env.get("SMS_BACKEND") or "console",
            twilio_account_sid=env.get("TWILIO_ACCOUNT_SID") or None,
            twilio_auth_token=env.get("TWILIO_AUTH_TOKEN") or None,
            twilio_from_number=env.get("TWILIO_FROM_NUMBER") or None,
            twilio_api_base_url=env.get("TWILIO_API_BASE_URL") or None,
            sms_allowed_countries=_countries(env.get("SMS_ALLOWED_COUNTRIES")),
            sms_daily_budget=_budget(env.get("SMS_DAILY_BUDGET")),
            tax_rates=tuple(Decimal(r) for r in rates.split()) if rates else DEFAULT_TAX_RATES,
            db_pool_max=int(env.get("INVOICELOOP_DB_POOL_MAX") or 20),
            redis_timeout_s=float(env.get("REDIS_TIMEOUT_S") or 0.5),
            max_series_per_year=int(env.get("INVOICELOOP_MAX_SERIES_PER_YEAR") or DEFAULT_MAX_SERIES_PER_YEAR),
            max_batch_lines=int(env.get("INVOICELOOP_MAX_BATCH_LINES") or DEFAULT_MAX_BATCH_LINES),
            key_cache_ttl_s=float(env.get("INVOICELOOP_KEY_CACHE_TTL_S") or 5.0),
            signatures_kept=int(env.get("INVOICELOOP_SIGNATURES_KEPT") or 100_000),
            smtp_url=env.get("SMTP_URL") or None,
            smtp_from=env.get("SMTP_FROM") or "invoiceloop <invoices@localhost>",
            mail_lease_s=float(env.get("MAIL_LEASE_S") or 120.0),
            sms_lease_s=_positive(env, "SMS_LEASE_S", STALE_SENDING_S, float),
            scan_slots=_positive(env, "SCAN_SLOTS", SCAN_SLOTS, int),
            scan_timeout_s=_positive(env, "SCAN_TIMEOUT_S", SCAN_TIMEOUT_S, float),
            download_link_ttl_days=_ttl_days(env.get("DOWNLOAD_LINK_TTL_DAYS")),
            lottery_min_total=_min_total(env.get("LOTTERY_MIN_TOTAL")),
            lottery_prizes=_prizes(env.get("LOTTERY_PRIZES")),
            public_stats_ttl_s=_seconds_or_zero("PUBLIC_STATS_TTL_S", env.get("PUBLIC_STATS_TTL_S"), 60.0),
            metrics_token=env.get("METRICS_TOKEN") or None,
            webhook_allow_private=(env.get("WEBHOOK_ALLOW_PRIVATE") or "").strip().lower() in ("1", "true", "yes"),
            webhook_timeout_s=_positive(env, "WEBHOOK_TIMEOUT_S", 10.0, float),
            webhook_endpoint_concurrency=_positive(env, "WEBHOOK_ENDPOINT_CONCURRENCY", 4, int),
            webhook_retry_schedule_s=_schedule(env.get("WEBHOOK_RETRY_SCHEDULE_S")),
            webhook_disable_after_s=_seconds_or_zero(
                "WEBHOOK_DISABLE_AFTER_S", env.get("WEBHOOK_DISABLE_AFTER_S"), DEFAULT_DISABLE_AFTER_S
            ),
            webhook_log_days=_positive(env, "WEBHOOK_LOG_DAYS", 30, int),
            extra={k: v for k, v in env.items() if k.startswith("VERIFY_")},  # limit overrides, docs/verification.md
        )

    @property
    def redis(self) -> RedisTarget | None:
        """Where Redis is: the Sentinels' master when REDIS_SENTINELS is set, else REDIS_URL; None when neither."""
        if self.redis_sentinels:
            return RedisTarget(None, self.redis_sentinels, self.redis_sentinel_master, self.redis_timeout_s)
        return RedisTarget(self.redis_url, timeout_s=self.redis_timeout_s) if self.redis_url else None

    @property
    def hooks(self) -> HookConfig:
        """How the worker delivers issuers' webhooks (WEBHOOK_*)."""
        return HookConfig(
            self.webhook_allow_private,
            self.webhook_timeout_s,
            self.webhook_endpoint_concurrency,
            self.webhook_retry_schedule_s,
            self.webhook_disable_after_s,
            self.webhook_log_days,
        )

    @property
    def smtp(self) -> SmtpTarget | None:
        """The SMTP server of SMTP_URL, or None when unset; ConfigError when it is malformed."""
        if not self.smtp_url:
            return None
        try:
            return SmtpTarget.from_url(self.smtp_url)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def key_file(self) -> Path:
        """The invoice signing key's file: SIGNING_KEY_FILE, or one in the data folder."""
        return self.signing_key_file or self.data_dir / "signing_key.pem"

    @property
    def keyring(self) -> Path:
        """The keyring folder: INVOICELOOP_KEYRING, or `keyring` in the data folder."""
        return self.keyring_dir or self.data_dir / "keyring"

    @property
    def log_key(self) -> Path:
        """The transparency log's private key file: LOG_KEY_FILE, or one in the data folder."""
        return self.log_key_file or self.data_dir / "log_key.pem"

    @property
    def origin(self) -> str:
        """The log's origin line and key name: LOG_ORIGIN, or the host of PUBLIC_BASE_URL followed by `/log`."""
        return self.log_origin or default_origin(self.public_base_url)

    def require_database_url(self) -> str:
        """DATABASE_URL, or a clear error for the operator."""
        if not self.database_url:
            raise ConfigError("DATABASE_URL is not set (invoiceloop run starts an embedded PostgreSQL instead)")
        return self.database_url

    def secret_bytes(self) -> bytes:
        """CHECK_CODE_SECRET, or one generated once into the data folder (owner-only).

        Every process of one deployment must share it: set it explicitly when running on several hosts."""
        if self.check_code_secret:
            return self.check_code_secret.encode()
        path = self.data_dir / "check_code_secret"
        if not path.exists():
            write_private(path, secrets.token_hex(32).encode())
        return path.read_bytes().strip()


def _countries(text: str | None) -> frozenset[str]:
    """SMS_ALLOWED_COUNTRIES (`CN`, `CN,HK`); unset or empty: CN."""
    if not text or not text.strip():
        return DEFAULT_SMS_COUNTRIES
    try:
        return parse_countries(text)
    except ValueError as exc:
        raise ConfigError(f"SMS_ALLOWED_COUNTRIES: {exc}") from None


def _budget(text: str | None) -> int:
    """SMS_DAILY_BUDGET: a whole number of receipts a day, 0 or more (0: no receipts at all)."""
    if not text or not text.strip():
        return DEFAULT_SMS_DAILY_BUDGET
    if not text.strip().isdigit():
        raise ConfigError(f"SMS_DAILY_BUDGET must be a whole number of texts a day, not {text!r}")
    return int(text)


def _positive(env: Mapping[str, str], name: str, default: N, kind: Callable[[str], N]) -> N:
    """A number above 0 from `name`, or `default` when unset or empty."""
    text = (env.get(name) or "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = kind("0")
    if not value > 0 or value != value:  # NaN too
        raise ConfigError(f"{name} must be a number above 0, not {text!r}")
    return value


def _ttl_days(text: str | None) -> int:
    """DOWNLOAD_LINK_TTL_DAYS: a whole number of days from 1 to 3650; unset or empty: 30."""
    if not text or not text.strip():
        return DEFAULT_TTL_DAYS
    if not text.strip().isdigit() or not 1 <= int(text) <= 3650:
        raise ConfigError(f"DOWNLOAD_LINK_TTL_DAYS must be a whole number of days from 1 to 3650, not {text!r}")
    return int(text)


def _sentinels(text: str | None) -> tuple[tuple[str, int], ...]:
    """REDIS_SENTINELS (`10.0.0.1:26379,10.0.0.2:26379`); unset or empty: none."""
    if not text or not text.strip():
        return ()
    try:
        return parse_sentinels(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _seconds_or_zero(name: str, text: str | None, default: float) -> float:
    """Seconds, 0 or more (WEBHOOK_DISABLE_AFTER_S: 0 disables at the first failure; PUBLIC_STATS_TTL_S: 0 keeps
    nothing); unset or empty: `default`."""
    if not text or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # NaN too
        raise ConfigError(f"{name} must be a number of seconds, 0 or more, not {text!r}")
    return value


def _schedule(text: str | None) -> tuple[float, ...]:
    """WEBHOOK_RETRY_SCHEDULE_S (`5,300,1800`); unset: Standard Webhooks' schedule."""
    if not text or not text.strip():
        return DEFAULT_RETRY_SCHEDULE_S
    try:
        return parse_schedule(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _min_total(text: str | None) -> Decimal:
    """LOTTERY_MIN_TOTAL: an amount in CNY with at most 2 decimals, 0 or more; unset or empty: 100.00."""
    if not text or not text.strip():
        return DEFAULT_MIN_TOTAL
    try:
        value = Decimal(text.strip())
    except ArithmeticError:
        value = Decimal(-1)
    if not value.is_finite() or value < 0 or value != value.quantize(Decimal("0.01")):
        raise ConfigError(f"LOTTERY_MIN_TOTAL must be an amount such as 100.00, not {text!r}")
    return value.quantize(Decimal("0.01"))


def _prizes(text: str | None) -> tuple[Prize, ...]:
    """LOTTERY_PRIZES (verification.lottery.parse_prizes); unset or empty: DEFAULT_PRIZES."""
    if not text or not text.strip():
        return DEFAULT_PRIZES
    try:
        return parse_prizes(text)
    except ValueError as exc:
        raise ConfigError(f"LOTTERY_PRIZES {exc}") from None
