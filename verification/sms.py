"""SMS: reading verification texts, writing replies and TwiML (pure), and the channel that sends them.

A text reads `查验 044012600111 00000001 20261127 123456`: an optional keyword (`查验`, `CY`, `VERIFY`, any
case), then invoice code, invoice number, issue date, last 6 of the check code. Texts are NFKC-normalised
first, so full-width digits, letters and spaces work; fields may be separated by spaces, commas, `、`,
`-`, `/`, `.`, `:`, `;`, `。` or newlines, or not at all when the number is written with its 8 digits (34 digits
in a row). The date is `YYYYMMDD`, `YYYY-MM-DD` or `YYYY/M/D`; the number may drop its leading zeros.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Protocol

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

from invoicing.buyer_texts import redact_links
from invoicing.errors import ConfigError, SmsSendFailed
from invoicing.model import money_str
from verification.masking import mask_phone
from verification.model import (
    SHOWS_INVOICE,
    InvoiceSummary,
    Outcome,
    VerificationQuery,
    is_mobile,
    normalise_phone,
    pad_number,
)

__all__ = [
    "LOTTERY_USAGE_TEXT",
    "MAX_SMS_TEXT",
    "REPLY_WORDS",
    "USAGE_TEXT",
    "ConsoleSms",
    "SentSms",
    "SmsChannel",
    "SmsSendFailed",
    "TwilioSms",
    "format_query_sms",
    "is_mobile",
    "lottery_reply",
    "lottery_request",
    "make_sms_channel",
    "normalise_phone",
    "parse_sms",
    "reply_text",
    "twiml_reply",
    "verify_twilio_signature",
]

log = logging.getLogger(__name__)

MAX_SMS_TEXT = 400  # a query is ~40 characters; longer texts are not queries
_KEYWORD_RE = re.compile(r"(?:查验|cy|verify)(?![a-z])", re.IGNORECASE | re.ASCII)
_LOTTERY_RE = re.compile(r"(?:抽奖|cj|lottery)(?![a-z])", re.IGNORECASE | re.ASCII)
_SEPARATORS_RE = re.compile(r"[\s,、。;:/.\-_|—]+")
_DIGITS_RE = re.compile(r"[0-9]+")

# Short phrases per outcome for a one-segment reply: (zh, en).
REPLY_WORDS: dict[Outcome, tuple[str, str]] = {
    "valid": ("查验一致", "Genuine."),
    "mismatch": ("信息不符，请核对日期和校验码", "Mismatch."),
    "not_found": ("查无此票，请核对代码和号码", "Not found."),
    "voided": ("已作废", "Voided."),
    "reversed": ("已全额红冲", "Reversed."),
    "partially_credited": ("已部分红冲", "Part credited."),
    "locked": ("今日错误过多已锁定，请明日再试", "Locked today."),
    "tampered": ("记录校验异常，请联系开票方", "Integrity alert."),
}
LOTTERY_USAGE_TEXT = (
    "【发票抽奖】请发：抽奖 代码 号码 日期 校验码后6位，如 抽奖 044012600111 00000001 20261127 123456"
    " / Text: LOTTERY code number YYYYMMDD last-6-of-check-code"
)
USAGE_TEXT = (
    "【发票查验】请发：查验 代码 号码 日期 校验码后6位，如 查验 044012600111 00000001 20261127 123456"
    " / Text: VERIFY code number YYYYMMDD last-6-of-check-code"
)


def parse_sms(text: str) -> VerificationQuery | None:
    """The query in a text, or None when the text is not one (never raises)."""
    if not isinstance(text, str) or len(text) > MAX_SMS_TEXT:
        return None
    body = unicodedata.normalize("NFKC", text).strip()
    keyword = _KEYWORD_RE.match(body)
    if keyword:
        body = body[keyword.end() :]
    tokens = [t for t in _SEPARATORS_RE.split(body) if t]
    if not tokens or not all(_DIGITS_RE.fullmatch(t) for t in tokens):
        return None
    if len(tokens) == 4 and len(tokens[2]) == 8:
        query = _query(tokens[0], tokens[1], (tokens[2][:4], tokens[2][4:6], tokens[2][6:]), tokens[3])
    elif len(tokens) == 6:
        query = _query(tokens[0], tokens[1], (tokens[2], tokens[3], tokens[4]), tokens[5])
    else:
        query = None
    joined = "".join(tokens)
    if query is None and len(joined) == 34:
        query = _query(joined[:12], joined[12:20], (joined[20:24], joined[24:26], joined[26:28]), joined[28:])
    return query


def lottery_request(text: str) -> str | None:
    """The rest of a lottery text (`抽奖 ...`, also `CJ`/`LOTTERY`, any case, full-width too), to be read by
    `parse_sms`; None when the text is not a lottery request (never raises)."""
    if not isinstance(text, str) or len(text) > MAX_SMS_TEXT:
        return None
    body = unicodedata.normalize("NFKC", text).strip()
    keyword = _LOTTERY_RE.match(body)
    return body[keyword.end() :] if keyword else None


def lottery_reply(period: str | None = None, seq: int | None = None, refused: tuple[str, str] | None = None) -> str:
    """The answer to a lottery text: registered (period and number), or refused with why (zh, en)."""
    if refused is not None:
        return f"【发票抽奖】未登记：{refused[0]}。Not registered: {refused[1]}"
    return f"【发票抽奖】登记成功：{period}期第{seq}号，中奖将短信通知。Registered: {period} no. {seq}."


def _query(code: str, number: str, ymd: tuple[str, str, str], last6: str) -> VerificationQuery | None:
    year, month, day = ymd
    padded = pad_number(number)
    if len(code) != 12 or padded is None or len(last6) != 6:
        return None
    if len(year) != 4 or not 1 <= len(month) <= 2 or not 1 <= len(day) <= 2:
        return None
    try:
        issued = date(int(year), int(month), int(day))
    except ValueError:
        return None
    return VerificationQuery(code, padded, issued, check_code_last6=last6)


def format_query_sms(query: VerificationQuery) -> str:
    """The canonical text for a query (`查验 code number YYYYMMDD last6`); `parse_sms` reads it back."""
    if query.check_code_last6 is None:
        raise ValueError("an SMS query carries the check code's last 6 digits, not an amount")
    d = query.issue_date
    day = f"{d.year:04d}{d.month:02d}{d.day:02d}"  # strftime does not pad years before 1000
    return f"查验 {query.invoice_code} {query.invoice_number} {day} {query.check_code_last6}"


def reply_text(outcome: Outcome, times_verified: int, invoice_summary: InvoiceSummary | None) -> str:
    """The one-message answer to a text query.

    The invoice (code/number, total incl. tax, how many times it has been verified) is shown only for
    outcomes that show the invoice; a mismatch or a lock says nothing about it. Every reply fits one
    UCS-2 segment (70 characters) for totals up to ¥999,999.99 and counts up to 999 (a `valid` one up
    to ¥99,999,999.99 and 9,999); larger figures make it a two-part message."""
    zh, en = REPLY_WORDS[outcome]
    if invoice_summary is None or outcome not in SHOWS_INVOICE:
        return f"【发票查验】{zh}。{en}"
    s = invoice_summary
    return (
        f"【发票查验】{s.invoice_code}/{s.invoice_number} {zh}，"
        f"合计¥{money_str(s.total)}，第{times_verified}次查验。{en}"
    )


def twiml_reply(text: str) -> str:
    """TwiML answering an inbound message with `text`."""
    response = MessagingResponse()
    response.message(text)
    return str(response)


def verify_twilio_signature(auth_token: str, url: str, params: Mapping[str, str], signature: str | None) -> bool:
    """Whether `X-Twilio-Signature` is Twilio's signature of this webhook URL and its form parameters."""
    if not signature:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


class SmsChannel(Protocol):
    """Where outgoing texts go."""

    async def send(self, to: str, body: str) -> str:
        """Send `body` to the E.164 number `to`; return the message id or raise `SmsSendFailed`."""
        ...

    async def find(self, to: str, body: str) -> str | None:
        """The id of a message with this text already sent to `to`, or None (`SmsSendFailed` when unsure)."""
        ...


@dataclass(frozen=True)
class SentSms:
    """A message the console channel "sent"; `to` is kept whole for tests, show `to_masked`."""

    id: str
    to: str
    body: str
    sent_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def to_masked(self) -> str:
        """The recipient as it may be shown or logged."""
        return mask_phone(self.to)


class ConsoleSms:
    """Development channel: logs each message (phone masked) and keeps the last `keep` in `.sent`."""

    def __init__(self, keep: int = 100) -> None:
        self.sent: deque[SentSms] = deque(maxlen=keep)

    async def send(self, to: str, body: str) -> str:
        """Log the message and remember it; never fails."""
        message = SentSms("CS" + uuid.uuid4().hex, to, body)
        self.sent.append(message)
        log.info("SMS %s to %s: %s", message.id, message.to_masked, redact_links(body))
        return message.id

    async def find(self, to: str, body: str) -> str | None:
        """The id of a message of this process's memory with this text to `to`, or None."""
        return next((m.id for m in self.sent if m.to == to and m.body == body), None)


class TwilioSms:
    """Sends through Twilio's REST API with the official client (blocking, so run in a worker thread).

    `api_base_url` points the client elsewhere (a fake in tests, a regional host in production)."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        api_base_url: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._token = auth_token
        self._http = TwilioHttpClient(timeout=timeout_s)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        if api_base_url:
            self._client.api.base_url = api_base_url.rstrip("/")
        self.from_number = from_number

    async def send(self, to: str, body: str) -> str:
        """Send one message; `SmsSendFailed` with a short reason when Twilio or the network refuses."""
        sid = await asyncio.to_thread(self._create, to, body)
        log.info("SMS %s to %s sent through Twilio", sid, mask_phone(to))
        return sid

    async def find(self, to: str, body: str) -> str | None:
        """The sid of a message with this text that Twilio already has for `to` from our number (its newest 50),
        or None; `SmsSendFailed` when Twilio cannot be asked (then nothing is sent: the row is tried again)."""
        return await asyncio.to_thread(self._find, to, body)

    def _find(self, to: str, body: str) -> str | None:
        try:
            for message in self._client.messages.list(to=to, from_=self.from_number, limit=50):
                if message.body and body in message.body:  # a trial account prefixes its own words
                    return str(message.sid)
        except (TwilioException, OSError) as exc:
            raise SmsSendFailed(f"could not ask Twilio what was sent: {type(exc).__name__}") from None
        return None

    def _create(self, to: str, body: str) -> str:
        try:
            message = self._client.messages.create(to=to, from_=self.from_number, body=body)
        except TwilioRestException as exc:
            reason = f"Twilio refused the message (HTTP {exc.status}, code {exc.code}): {exc.msg}"
        except TwilioException as exc:
            reason = f"Twilio client error: {type(exc).__name__}"
        except OSError as exc:  # requests' errors are OSErrors: refused, reset, timed out
            reason = f"could not reach Twilio: {type(exc).__name__}"
        else:
            return str(message.sid)
        raise SmsSendFailed(self._scrub(reason)[:300]) from None

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def close(self) -> None:
        """Close pooled connections."""
        if self._http.session is not None:
            self._http.session.close()


def make_sms_channel(backend: str, **settings: str | None) -> SmsChannel:
    """`console` (default for development) or `twilio` (needs account_sid, auth_token, from_number;
    api_base_url optional)."""
    if backend == "console":
        return ConsoleSms()
    if backend != "twilio":
        raise ConfigError(f"unknown SMS backend {backend!r}: use 'console' or 'twilio'")
    missing = [name for name in ("account_sid", "auth_token", "from_number") if not settings.get(name)]
    if missing:
        raise ConfigError(f"the twilio SMS backend needs {', '.join(missing)}")
    return TwilioSms(
        str(settings["account_sid"]),
        str(settings["auth_token"]),
        str(settings["from_number"]),
        settings.get("api_base_url"),
    )
