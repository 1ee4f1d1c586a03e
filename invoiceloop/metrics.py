"""`GET /metrics` (Prometheus), which shows issuance and verification volumes, so not to everyone: with
METRICS_TOKEN set, only a request carrying `Authorization: Bearer <token>`; without it, only a client on a
loopback or private address. The address is the connection's peer as uvicorn gives it: uvicorn applies
X-Forwarded-For only from its trusted proxies (`--forwarded-allow-ips`, `FORWARDED_ALLOW_IPS`, default
127.0.0.1), so a client cannot claim a private address by sending that header itself."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from invoicing.errors import Forbidden, Unauthorized

MetricsToken = str | None  # the dependency `metrics_token`: METRICS_TOKEN, None when unset


def check_access(token: str | None, authorization: str, peer: str) -> None:
    """Refuse a scrape that the rule above does not let through: 401 without the right bearer token when a token
    is set (compared in constant time), else 403 for a peer that is neither loopback nor private."""
    if token:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise Unauthorized("send METRICS_TOKEN as 'Authorization: Bearer <token>'")
        return
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        raise Forbidden("metrics are served to loopback and private addresses only (or set METRICS_TOKEN)") from None
    if not (address.is_loopback or address.is_private):
        raise Forbidden("metrics are served to loopback and private addresses only (or set METRICS_TOKEN)")


@get("/metrics", tags=["operations"], media_type=CONTENT_TYPE_LATEST.split(";")[0])
async def metrics(request: Request[Any, Any, Any], metrics_token: NamedDependency[MetricsToken]) -> Response[bytes]:
    """The Prometheus exposition: `METRICS_TOKEN` as a bearer token when it is set, else loopback and private
    client addresses only (401/403 otherwise)."""
    peer = request.client.host if request.client else ""
    check_access(metrics_token, request.headers.get("authorization", ""), peer)
    return Response(generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})
