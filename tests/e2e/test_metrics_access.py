"""`/metrics` shows issuance and verification volumes: the attack was a plain GET from anywhere. Now a public
client is refused, and with METRICS_TOKEN set only its bearer gets in (over real HTTP, `invoiceloop serve`)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from invoiceloop.metrics import check_access
from invoiceloop.settings import Settings
from invoicing.errors import Forbidden, Unauthorized
from tests.conftest import ServerProcess, server_log

PUBLIC = "8.8.8.8"  # not 203.0.113.x: Python counts the documentation ranges as private


@pytest.mark.parametrize("peer", ["127.0.0.1", "::1", "10.1.2.3", "172.16.0.9", "192.168.1.20", "fd00::1"])
def test_loopback_and_private_peers_may_scrape_without_a_token(peer: str) -> None:
    check_access(None, "", peer)


@pytest.mark.parametrize("peer", [PUBLIC, "1.1.1.1", "2001:4860:4860::8888", "testclient", ""])
def test_a_public_or_unknown_peer_is_refused_without_a_token(peer: str) -> None:
    with pytest.raises(Forbidden):
        check_access(None, "", peer)


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer wrong-token", "Basic s3cret-token", "s3cret-token"])
def test_with_a_token_only_its_bearer_gets_in_from_anywhere(header: str) -> None:
    with pytest.raises(Unauthorized):
        check_access("s3cret-token", header, "127.0.0.1")  # a token set: loopback is not enough either
    check_access("s3cret-token", "Bearer s3cret-token", PUBLIC)
    check_access("s3cret-token", "bearer  s3cret-token", PUBLIC)


async def test_metrics_over_http_without_a_token(http: httpx.AsyncClient) -> None:
    """uvicorn applies X-Forwarded-For from its trusted proxy (127.0.0.1): this is how a public client behind
    the local reverse proxy arrives. It is refused; the local scraper is not."""
    local = await http.get("/metrics")
    assert local.status_code == 200 and "python_info" in local.text
    assert local.headers["content-type"].count("charset") == 1
    public = await http.get("/metrics", headers={"X-Forwarded-For": PUBLIC})
    assert public.status_code == 403 and public.headers["content-type"] == "application/problem+json"
    assert "python_info" not in public.text and "invoices" not in public.text


async def test_metrics_over_http_with_a_token(
    settings: Settings, output_dir: Path, request: pytest.FixtureRequest
) -> None:
    server = ServerProcess(settings, server_log(output_dir, request, "metrics-token"), METRICS_TOKEN="s3cret-token")
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            assert (await client.get("/metrics")).status_code == 401  # loopback alone is not enough now
            wrong = await client.get("/metrics", headers={"Authorization": "Bearer s3cret-tokeX"})
            assert wrong.status_code == 401 and wrong.headers["content-type"] == "application/problem+json"
            right = await client.get(
                "/metrics", headers={"Authorization": "Bearer s3cret-token", "X-Forwarded-For": PUBLIC}
            )
            assert right.status_code == 200 and "python_info" in right.text
    finally:
        server.stop()
