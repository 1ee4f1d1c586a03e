"""The buyer's text (issue 14 item 1): a buyer with a phone whose record is delivered electronically gets one SMS
per record and kind (the invoice, its void, a credit note) with a signed download link that needs no key and
expires. Pure: the token, its check, and the text; `chain_repository` writes the text into `sms_outbox` in the
statement that writes the record, and `verification.download` serves the link.

The token is short because an SMS is: 21 bytes, 28 base64url characters.

    byte 0       version (high 4 bits, 1) and kind (low 4 bits: 0 invoice, 1 void, 2 credit note)
    bytes 1-9    the record's identity, invoice code and number as one 20-digit integer (FORMATS.md)
    bytes 10-12  expiry, whole hours since 1970-01-01 UTC (good until the year 3883)
    bytes 13-20  HMAC-SHA256 of bytes 0-12 under the link key, first 8 bytes

The identity is the code and number rather than the record's UUID (16 bytes, 7 characters more); both are unique.
8 bytes of MAC are 2^64 guesses for one forged link, and guessing is online only (the key never leaves the
service) and under the public routes' rate limit. The link key is derived from CHECK_CODE_SECRET with its own
label, so one secret is deployed and a link MAC is never a check code."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from invoicing.model import Invoice
from invoicing.validation import sms_refusal

TextKind = Literal["invoice", "void", "credit_note"]
KINDS: tuple[TextKind, ...] = ("invoice", "void", "credit_note")  # the byte's low 4 bits index this
VERSION = 1
TOKEN_BYTES = 21
TOKEN_CHARS = 28
MAC_BYTES = 8
PATH = "/d/"  # GET /d/{token}: short, as the whole link is in the text
DEFAULT_TTL_DAYS = 30  # DOWNLOAD_LINK_TTL_DAYS; docs/consumers.md says why
SEGMENT_CHARS = 70  # one SMS of UCS-2 text (any Chinese character makes the whole text UCS-2)
MULTIPART_CHARS = 67  # each part of a longer one
_LABEL = b"invoiceloop download link v1"
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class BadToken(ValueError):
    """Not a link we made: malformed, or its MAC does not check (answered 404, as an unknown record)."""


class ExpiredToken(ValueError):
    """A link we made whose time is up (answered 410)."""


def link_key(secret: bytes) -> bytes:
    """The key that signs download links, derived from the service secret (CHECK_CODE_SECRET)."""
    return hmac.new(secret, _LABEL, hashlib.sha256).digest()


@dataclass(frozen=True)
class Link:
    """What a checked token names: the record (code and number), the kind of message, and when it expires."""

    kind: TextKind
    invoice_code: str
    invoice_number: str
    expires_hour: int

    @property
    def expires_at_s(self) -> int:
        """The expiry in seconds since the epoch."""
        return self.expires_hour * 3600


def make_token(key: bytes, kind: TextKind, invoice_code: str, invoice_number: str, expires_hour: int) -> str:
    """The download token of a record (a 12-digit code and an 8-digit number) and kind, valid until the start of
    hour `expires_hour` (hours since the epoch, UTC)."""
    if len(invoice_code) != 12 or len(invoice_number) != 8 or not (invoice_code + invoice_number).isdigit():
        raise ValueError("an invoice code is 12 digits and a number 8")
    head = bytes([VERSION << 4 | KINDS.index(kind)])
    body = head + int(invoice_code + invoice_number).to_bytes(9, "big") + expires_hour.to_bytes(3, "big")
    return base64.urlsafe_b64encode(body + _mac(key, body)).decode().rstrip("=")


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()[:MAC_BYTES]


def read_token(key: bytes, token: str, now_s: float) -> Link:
    """The link a token names; `BadToken` unless it is exactly one we made, `ExpiredToken` when it is ours but
    its time is up. The MAC is checked before anything in the token is believed, the expiry last."""
    if len(token) != TOKEN_CHARS or not _ALPHABET.issuperset(token):
        raise BadToken("not a download link")
    try:
        raw = base64.urlsafe_b64decode(token)
    except (binascii.Error, ValueError):
        raise BadToken("not a download link") from None
    body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if len(raw) != TOKEN_BYTES or not hmac.compare_digest(mac, _mac(key, body)):
        raise BadToken("not a download link")
    if body[0] >> 4 != VERSION or body[0] & 15 >= len(KINDS):
        raise BadToken("not a download link")
    digits = f"{int.from_bytes(body[1:10], 'big'):020d}"
    link = Link(KINDS[body[0] & 15], digits[:12], digits[12:], int.from_bytes(body[10:13], "big"))
    if now_s >= link.expires_at_s:
        raise ExpiredToken("this download link has expired")
    return link


@dataclass(frozen=True)
class BuyerTexts:
    """What writing the buyer's texts needs: the link key, the public base URL, the links' lifetime and the
    countries we text (SMS_ALLOWED_COUNTRIES)."""

    key: bytes
    public_base_url: str
    ttl_days: int = DEFAULT_TTL_DAYS
    countries: frozenset[str] = frozenset({"CN"})

    def expires_hour(self, now: datetime) -> int:
        """The first whole hour at or after `now` plus the lifetime: a link lives at least `ttl_days`."""
        return math.ceil(now.timestamp() / 3600) + self.ttl_days * 24

    def url(self, kind: TextKind, inv: Invoice, now: datetime) -> str:
        """The download link of this record and kind, signed now."""
        token = make_token(self.key, kind, inv.invoice_code, inv.invoice_number, self.expires_hour(now))
        return f"{self.public_base_url.rstrip('/')}{PATH}{token}"

    def text(self, kind: TextKind, inv: Invoice, now: datetime) -> tuple[str, str] | None:
        """(phone, text) of the buyer's SMS about this record, or None: no phone, delivered on paper (the postal
        invoice's buyer gets the "delivered" text instead), or a number the SMS rules do not let us text."""
        phone = inv.buyer.phone
        if not phone or inv.delivery_method != "electronic" or sms_refusal(phone, self.countries) is not None:
            return None
        return phone, compose(kind, inv, self.url(kind, inv, now), self.ttl_days)


# Chinese first; the richest text of those that take the fewest segments is sent (a UCS-2 segment is 70
# characters, and the link alone takes 45 to 60 of them: with a usual base URL only the shortest text is one SMS).
_HEAD: dict[TextKind, tuple[str, str, str]] = {  # the sign, what happened, the same in English
    "invoice": ("【电子发票】", "已开具", "issued"),
    "void": ("【发票作废】", "已作废", "voided"),
    "credit_note": ("【红字发票】", "已开具", "credit note issued"),
}


def candidates(kind: TextKind, inv: Invoice, url: str, ttl_days: int) -> list[str]:
    """The texts of this message, longest (most telling) first."""
    sign, done, english = _HEAD[kind]
    ident = f"{inv.invoice_code}/{inv.invoice_number}"
    return [
        f"{sign}{ident}{done} ({english})，{ttl_days}天内下载 Download within {ttl_days} days：{url}",
        f"{sign}{ident}{done}，{ttl_days}天内下载：{url}",
        f"{sign}{inv.invoice_number}号{done}，{ttl_days}天内下载：{url}",
        f"{sign}{ttl_days}天内下载：{url}",
    ]


def compose(kind: TextKind, inv: Invoice, url: str, ttl_days: int) -> str:
    """The most telling candidate of those sent as the fewest SMS segments (each segment is paid for)."""
    texts = candidates(kind, inv, url, ttl_days)
    fewest = min(segments(t) for t in texts)
    return next(t for t in texts if segments(t) == fewest)


_LINK = re.compile(re.escape(PATH) + f"[A-Za-z0-9_-]{{{TOKEN_CHARS}}}")


def redact_links(text: str) -> str:
    """The text with each download token replaced by `…`: a text may be logged, a link never."""
    return _LINK.sub(PATH + "…", text)


def segments(text: str) -> int:
    """How many SMS a text is sent as: GSM-7 when it is plain ASCII (160, 153 a part), else UCS-2 (70, 67)."""
    single, part = (160, 153) if text.isascii() else (SEGMENT_CHARS, MULTIPART_CHARS)
    return 1 if len(text) <= single else math.ceil(len(text) / part)
