"""Where the buyer's mail goes: an SMTP server named by SMTP_URL, sent with aiosmtplib.

    smtp://host:25                 plain (a relay on the same network)
    smtp+starttls://user:pass@host:587   STARTTLS required, then AUTH
    smtps://user:pass@host:465     TLS from the first byte

User and password are percent-decoded (a `@` in a password is `%40`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


class SmtpRefused(Exception):
    """The server (or the way to it) did not take the mail; `reason` is safe to store and log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SmtpTarget:
    """An SMTP server and how to speak to it (from SMTP_URL)."""

    host: str
    port: int
    tls: bool = False  # TLS from the start (smtps)
    starttls: bool = False  # STARTTLS required (smtp+starttls)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> SmtpTarget:
        """SMTP_URL -> the target; ValueError naming what is wrong (never echoing a password)."""
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError(f"SMTP_URL must start with smtp://, smtp+starttls:// or smtps://, not {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError("SMTP_URL names no host")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise ValueError("SMTP_URL has a port that is not a number from 1 to 65535") from None
        return cls(
            parts.hostname,
            port,
            tls=parts.scheme == "smtps",
            starttls=parts.scheme == "smtp+starttls",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    async def send(self, message: EmailMessage, timeout_s: float) -> None:
        """Hand `message` to the server (each network step bounded by `timeout_s`); `SmtpRefused` otherwise."""
        try:
            await aiosmtplib.send(
                message,
                hostname=self.host,
                port=self.port,
                use_tls=self.tls,
                start_tls=self.starttls,
                username=self.username,
                password=self.password,
                timeout=timeout_s,
            )
        except aiosmtplib.SMTPResponseException as exc:
            raise SmtpRefused(f"SMTP {exc.code}: {exc.message[:200]}") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SmtpRefused(type(exc).__name__) from None
