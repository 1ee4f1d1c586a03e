"""Issuers' webhooks, the pure rules (API.md "Issuers", FORMATS.md "Webhooks"): the event types, secrets and their
rotation, the Standard Webhooks signature (the `standardwebhooks` library signs), the retry schedule, which URLs
an endpoint may have and which addresses a delivery may connect to. No I/O: the SQL is in
`invoicing.webhook_repository`, sending in `invoicing.webhook_sender`."""

from __future__ import annotations

import base64
import ipaddress
import json
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

from invoicing import formats

EVENT_TYPES = (
    "invoice.issued",
    "invoice.voided",
    "invoice.credited",
    "invoice.first_verified",
    "invoice.locked",
    "delivery.status_changed",
)
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SECRET_BYTES = 32  # FORMATS.md: 24 to 64 random bytes
ROTATION_OVERLAP_S = 24 * 3600  # the old secret signs beside the new one this long
# Standard Webhooks' recommended schedule: at once, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after each
# failed try (8 tries over about 27.5 hours). WEBHOOK_RETRY_SCHEDULE_S replaces the waits (tests shorten it).
DEFAULT_RETRY_SCHEDULE_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
DEFAULT_DISABLE_AFTER_S = 5 * 24 * 3600.0  # an endpoint failing for 5 days is disabled
MAX_URL_LENGTH = 2048
MAX_ENDPOINTS = 20  # per issuer: each endpoint multiplies every event into a message, so the number is bounded


def new_secret() -> str:
    """A signing secret as FORMATS.md shows it: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def body_of(event_type: str, created_at: datetime, data: dict[str, Any]) -> str:
    """The message body: `{"type", "timestamp", "data"}`, compact JSON (the same bytes on every try)."""
    return json.dumps(
        {"type": event_type, "timestamp": formats.rfc3339(created_at), "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def signed_headers(webhook_id: str, sent_at: datetime, body: str, secrets_: Sequence[str]) -> dict[str, str]:
    """The three Standard Webhooks headers; one `v1,` signature per secret, space-separated (a rotated secret
    signs beside the new one during the overlap)."""
    stamp = sent_at.astimezone(UTC)
    signatures = " ".join(Webhook(secret).sign(webhook_id, stamp, body) for secret in secrets_)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": "invoiceloop-webhooks/1",
    }


def retry_in_s(attempts: int, schedule: Sequence[float]) -> float | None:
    """Seconds until the next try after `attempts` failed ones, or None when the schedule is spent."""
    return float(schedule[attempts - 1]) if 1 <= attempts <= len(schedule) else None


def parse_schedule(text: str) -> tuple[float, ...]:
    """WEBHOOK_RETRY_SCHEDULE_S: comma-separated waits in seconds (`5,300,1800`); ValueError naming the fault."""
    try:
        waits = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"WEBHOOK_RETRY_SCHEDULE_S must be seconds separated by commas, not {text!r}") from None
    if not waits or any(w < 0 for w in waits):
        raise ValueError("WEBHOOK_RETRY_SCHEDULE_S must list at least one wait of 0 seconds or more")
    return waits


# ---------------------------------------------------------------- where a delivery may go

# Always refused besides what `ipaddress` calls non-global: cloud metadata services that sit on otherwise
# routable-looking addresses (AWS's IPv6 one is in fc00::/7 anyway; listed to say so).
METADATA = (ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"))
NAT64 = ipaddress.ip_network("64:ff9b::/96")
CGNAT = ipaddress.ip_network("100.64.0.0/10")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def embedded_ipv4(ip: Address) -> Address:
    """The IPv4 address an IPv6 one carries (IPv4-mapped, 6to4, NAT64), else the address itself: the check must
    judge where the packet ends up."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def refusal(ip: Address) -> str | None:
    """Why a delivery must not connect to `ip` (loopback, private, link-local, CGNAT, multicast, metadata, any
    other address not globally reachable; an IPv6 form carrying an IPv4 address is judged by that address), or
    None."""
    inner = embedded_ipv4(ip)
    if ip in METADATA or inner in METADATA:
        return "a cloud metadata address"
    if inner.is_loopback:
        return "a loopback address"
    if inner.is_link_local:
        return "a link-local address"
    if inner.is_multicast:
        return "a multicast address"
    if isinstance(inner, ipaddress.IPv4Address) and inner in CGNAT:
        return "a carrier-grade NAT address"
    if inner.is_unspecified or inner.is_reserved:
        return "an address that is not publicly routable"
    if inner.is_private:
        return "a private address"
    if not inner.is_global:
        return "an address that is not publicly routable"
    return None


def ip_literal(host: str) -> Address | None:
    """The address when `host` is an IP literal (`[::1]` brackets allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_url(url: str, *, allow_private: bool) -> str | None:
    """Why `url` cannot be an endpoint, or None. https only (http too when `allow_private`, for tests); no user
    info; an IP literal must be a public address. A host name is checked after DNS resolution, at each delivery."""
    if len(url) > MAX_URL_LENGTH:
        return f"at most {MAX_URL_LENGTH} characters"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a valid URL"
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        return "must be an https:// URL"
    if not parts.hostname:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password"
    if port == 0:
        return "port 0 is not a port"
    literal = ip_literal(parts.hostname)
    if literal is not None and not allow_private:
        why = refusal(literal)
        if why is not None:
            return f"points at {why}"
    if parts.fragment:
        return "must not have a #fragment"
    return None
