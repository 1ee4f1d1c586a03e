"""`GET /metrics` (Prometheus), which shows issuance and verification volumes, so not to everyone: with
METRICS_TOKEN set, only a request carrying `Authorization: Bearer <token>`; without it, only a client on a
loopback or private address. The address is the connection's peer as uvicorn gives it: uvicorn applies
X-Forwarded-For only from its trusted proxies (`--forwarded-allow-ips`, `FORWARDED_ALLOW_IPS`, default
127.0.0.1), so a client cannot claim a private address by sending that header itself.

With several serve processes on one port (`invoiceloop serve --workers N`) a scrape reaches one of them, whose
figures alone would be a part that changes from scrape to scrape (a counter seen going down is read as a restart).
So each process then keeps its figures in files of one folder, prometheus_client's multiprocess mode, and any
process answers the sum (`shared_across_processes`)."""

from __future__ import annotations

import hmac
import ipaddress
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from invoicing.errors import Forbidden, Unauthorized

# prometheus_client's folder for the figures of several processes; read by each process when it imports the
# library, so set before they start.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

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
    return Response(_exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _exposition() -> bytes:
    """Every process's figures added up when they share a folder, else this process's (with its own CPU, memory
    and collector figures, which have no sum)."""
    if not os.environ.get(MULTIPROCESS_DIR):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


@contextmanager
def shared_across_processes(processes: int) -> Iterator[None]:
    """For the serve processes started inside: with more than one, a folder they keep their figures in
    (`PROMETHEUS_MULTIPROC_DIR` when the operator set one, emptied of an earlier run's files first as
    prometheus_client requires; else a temporary one, removed after). One process keeps its figures in memory."""
    given = os.environ.get(MULTIPROCESS_DIR)
    if given:
        for old in Path(given).glob("*.db"):
            old.unlink()
        yield
    elif processes > 1:
        with tempfile.TemporaryDirectory(prefix="invoiceloop-metrics-") as folder:
            os.environ[MULTIPROCESS_DIR] = folder
            try:
                yield
            finally:
                del os.environ[MULTIPROCESS_DIR]
    else:
        yield


def process_ended() -> None:
    """A serve process that shares its figures stops: its gauges of things in progress no longer count."""
    if os.environ.get(MULTIPROCESS_DIR):
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
