"""The pure rules of issuers' webhooks: where a delivery may go, which URLs an endpoint may have, the signature
(checked with the `standardwebhooks` library's own verifier), secrets and the retry schedule."""

from __future__ import annotations

import base64
import ipaddress
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from invoicing import webhooks
from invoicing.webhooks import check_url, refusal, retry_in_s

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "::1": "loopback",
    "::ffff:127.0.0.1": "loopback",
    "::ffff:7f00:1": "loopback",
    "10.0.0.1": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "::ffff:10.0.0.1": "private",
    "fc00::1": "private",
    "169.254.169.254": "metadata",
    "::ffff:169.254.169.254": "metadata",
    "fd00:ec2::254": "metadata",
    "169.254.1.1": "link-local",
    "fe80::1": "link-local",
    "100.64.0.1": "carrier-grade NAT",
    "100.127.255.254": "carrier-grade NAT",
    "224.0.0.1": "multicast",
    "ff02::1": "multicast",
    "0.0.0.0": "not publicly routable",
    "::": "not publicly routable",
    "240.0.0.1": "not publicly routable",
    "64:ff9b::7f00:1": "loopback",  # NAT64 of 127.0.0.1
    "2002:7f00:1::": "loopback",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::": "metadata",  # 6to4 of 169.254.169.254
}


@pytest.mark.parametrize(("address", "kind"), sorted(REFUSED.items()))
def test_inner_addresses_are_refused_by_kind(address: str, kind: str) -> None:
    why = refusal(ipaddress.ip_address(address))
    assert why is not None and kind in why, (address, why)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700::6810:84e5", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@given(st.sampled_from(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16"]), st.data())
def test_every_inner_ipv4_address_is_refused_in_every_ipv6_wrapping(network: str, data: st.DataObject) -> None:
    net = ipaddress.ip_network(network)
    inner = ipaddress.IPv4Address(int(net.network_address) + data.draw(st.integers(0, net.num_addresses - 1)))
    wrapped = [
        inner,
        ipaddress.IPv6Address(f"::ffff:{inner}"),
        ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(inner)),
        ipaddress.IPv6Address((0x2002 << 112) | (int(inner) << 80)),
    ]
    assert all(refusal(a) is not None for a in wrapped), wrapped


@pytest.mark.parametrize(
    ("url", "fault"),
    [
        ("http://example.com/h", "https"),
        ("https://127.0.0.1/h", "loopback"),
        ("https://[::ffff:169.254.169.254]/h", "metadata"),
        ("https://u:p@example.com/h", "user name"),
        ("https:///h", "no host"),
        ("https://example.com:0/h", "port 0"),
        ("https://example.com:99999/h", "not a valid URL"),
        ("https://example.com/h#x", "fragment"),
        ("javascript:alert(1)", "https"),
        ("https://example.com/a b", "spaces"),
        ("https://example.com/\u202e", "control"),
        ("https://example.com/" + "a" * 3000, "2048"),
    ],
)
def test_endpoint_urls_are_checked(url: str, fault: str) -> None:
    why = check_url(url, allow_private=False)
    assert why is not None and fault in why, why


def test_names_and_public_urls_pass_and_tests_may_use_http_on_loopback() -> None:
    assert check_url("https://hooks.example.com/in?x=1", allow_private=False) is None
    assert check_url("https://localhost:8443/in", allow_private=False) is None  # a name: checked at each delivery
    assert check_url("http://127.0.0.1:9000/in", allow_private=True) is None


def test_a_secret_is_whsec_and_32_random_bytes() -> None:
    secret = webhooks.new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    assert secret != webhooks.new_secret()


def test_the_signature_verifies_with_the_library_and_a_rotated_secret_with_both() -> None:
    old, new = webhooks.new_secret(), webhooks.new_secret()
    body = webhooks.body_of("invoice.issued", datetime.now(UTC), {"invoice_id": "abc", "total": "226.00"})
    headers = webhooks.signed_headers("msg_1", datetime.now(UTC), body, [new, old])
    assert headers["webhook-signature"].count("v1,") == 2
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers)["data"]["total"] == "226.00"
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body.replace("226.00", "1.00"), headers)


def test_the_signature_matches_the_standard_by_hand() -> None:
    """FORMATS.md: v1, base64 of HMAC-SHA256(secret, "{id}.{timestamp}.{body}") (Standard Webhooks' own example)."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = '{"test": 2432232314}'
    at = datetime.fromtimestamp(1614265330, UTC)
    headers = webhooks.signed_headers("msg_p5jXN8AQM9LWM0D4loKWxJek", at, body, [secret])
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert headers["webhook-timestamp"] == "1614265330"


def test_the_default_schedule_is_standard_webhooks_and_lasts_about_a_day() -> None:
    schedule = webhooks.DEFAULT_RETRY_SCHEDULE_S
    assert [retry_in_s(n, schedule) for n in range(1, 9)] == [5, 300, 1800, 7200, 18000, 36000, 36000, None]
    assert 24 * 3600 < sum(schedule) < 30 * 3600
    assert retry_in_s(0, schedule) is None


def test_a_schedule_setting_is_parsed_or_refused() -> None:
    assert webhooks.parse_schedule("0.5, 1,2") == (0.5, 1.0, 2.0)
    for bad in ("", "a,b", "-1"):
        with pytest.raises(ValueError, match="WEBHOOK_RETRY_SCHEDULE_S"):
            webhooks.parse_schedule(bad)
