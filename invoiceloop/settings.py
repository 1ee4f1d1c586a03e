"""Settings, built once from the environment (or `.env`) and passed down; no import-time globals."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from invoicing.checkpoint import default_origin
from invoicing.errors import ConfigError
from invoicing.keys import write_private
from invoicing.model import DEFAULT_MAX_BATCH_LINES, DEFAULT_MAX_SERIES_PER_YEAR, DEFAULT_TAX_RATES
from invoicing.queue import RedisTarget, parse_sentinels
from invoicing.smtp import SmtpTarget
from verification.limits import DEFAULT_SMS_DAILY_BUDGET
from verification.model import DEFAULT_SMS_COUNTRIES, parse_countries


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
    public_stats_ttl_s: float = 60.0  # PUBLIC_STATS_TTL_S: how long /stats and /v1/stats/public keep their figures
    metrics_token: str | None = None  # METRICS_TOKEN: /metrics wants it as a bearer token; unset, private peers only
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
            public_stats_ttl_s=float(env.get("PUBLIC_STATS_TTL_S") or 60.0),
            metrics_token=env.get("METRICS_TOKEN") or None,
            extra={k: v for k, v in env.items() if k.startswith("VERIFY_")},  # limit overrides, docs/verification.md
        )

    @property
    def redis(self) -> RedisTarget | None:
        """Where Redis is: the Sentinels' master when REDIS_SENTINELS is set, else REDIS_URL; None when neither."""
        if self.redis_sentinels:
            return RedisTarget(None, self.redis_sentinels, self.redis_sentinel_master, self.redis_timeout_s)
        return RedisTarget(self.redis_url, timeout_s=self.redis_timeout_s) if self.redis_url else None

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


def _sentinels(text: str | None) -> tuple[tuple[str, int], ...]:
    """REDIS_SENTINELS (`10.0.0.1:26379,10.0.0.2:26379`); unset or empty: none."""
    if not text or not text.strip():
        return ()
    try:
        return parse_sentinels(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
