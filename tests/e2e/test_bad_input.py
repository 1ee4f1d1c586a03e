"""Bad input never gives a 500: each request below gave one before (issue 12, items 7, 11, 15, 17). Each must
be a 4xx problem+json that names what is wrong, and nothing may be stored."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import asyncpg
import pytest

from invoiceloop.settings import Settings
from tests.conftest import new_issuer, valid_uscc
from tests.e2e.test_postal_events import dispatched, event
from tests.integration.test_cli_audit import cli
from tests.samples import invoice_body


def problem(answer: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = dict(answer.json())
    if field is not None:
        assert field in {e["field"] for e in body["errors"]}, body
    return body


async def stored(pool: asyncpg.Pool, issuer: Any) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM invoices WHERE issuer_id = $1", uuid.UUID(issuer.id)))


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("name", "张三\x00"),  # NUL
        ("name", "\u202egnp.exe"),  # right-to-left override: shows as "exe.png"
        ("name", "张\u200b三"),  # zero-width space
        ("name", "\ufeff张三"),  # byte order mark
        ("name", "张三\x85"),  # C1 control (next line)
        ("line", "办公椅\x07"),  # C0 control (bell)
        ("remarks", "a\x1bb"),  # escape
    ],
)
async def test_control_and_format_characters_are_refused_naming_the_field(
    issuer_client: Any, pool: asyncpg.Pool, where: str, value: str
) -> None:
    body = invoice_body()
    field = {"name": "buyer.name", "line": "lines[0].description", "remarks": "remarks"}[where]
    if where == "name":
        body["buyer"]["name"] = value
    elif where == "line":
        body["lines"][0]["description"] = value
    else:
        body["remarks"] = value
    found = problem(await issuer_client.post("/v1/invoices", json=body), 422, field)
    assert "U+" in next(e["message"] for e in found["errors"] if e["field"] == field)
    assert await stored(pool, issuer_client.issuer) == 0


async def test_text_is_stored_nfc_normalised_and_remarks_may_have_lines(issuer_client: Any) -> None:
    body = invoice_body(remarks="第一行\n第二行")
    body["buyer"]["name"] = "Jose\u0301 Garci\u0301a"  # decomposed accents
    answer = await issuer_client.post("/v1/invoices", json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["buyer"]["name"] == "José García" and answer.json()["remarks"] == "第一行\n第二行"


@pytest.mark.parametrize("rate", ["sNaN", "NaN", "Infinity", "-Infinity", "1e-2", " 0.13", "0x1"])
async def test_a_tax_rate_that_is_no_plain_decimal_is_refused(
    issuer_client: Any, pool: asyncpg.Pool, rate: str
) -> None:
    body = invoice_body()
    body["lines"][0]["tax_rate"] = rate
    problem(await issuer_client.post("/v1/invoices", json=body), 422, "lines[0].tax_rate")
    assert await stored(pool, issuer_client.issuer) == 0


async def test_a_nul_in_a_void_reason_is_refused(issuer_client: Any) -> None:
    inv = (await issuer_client.post("/v1/invoices", json=invoice_body())).json()
    problem(await issuer_client.post(f"/v1/invoices/{inv['id']}/void", json={"reason": "错\x00"}), 422, "reason")
    problem(
        await issuer_client.post(f"/v1/invoices/{inv['id']}/credit-notes", json={"reason": "\u202e"}), 422, "reason"
    )
    assert (await issuer_client.get(f"/v1/invoices/{inv['id']}")).json()["status"] == "issued"


@pytest.mark.parametrize("path", ["/v1/invoices", "/v1/invoices/batch", "/v1/verifications", "/v1/postal/events"])
async def test_json_nested_very_deep_is_a_4xx(issuer_client: Any, operator_factory: Any, http: Any, path: str) -> None:
    deep = b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    client = (await operator_factory(["63"])) if "postal" in path else issuer_client if "invoices" in path else http
    answer = await client.post(path, content=deep, headers={"Content-Type": "application/json"})
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


async def test_a_cursor_holding_a_huge_number_is_a_400(issuer_client: Any, operator_factory: Any) -> None:
    huge = base64.urlsafe_b64encode(b"s" + b"9" * 40).decode().rstrip("=")
    problem(await issuer_client.get("/v1/invoices", params={"cursor": huge}), 400, "cursor")
    operator = await operator_factory(["63"])
    manifests = base64.urlsafe_b64encode(b"m99999999999999999999").decode().rstrip("=")
    problem(await operator.get("/v1/postal/manifests", params={"cursor": manifests}), 400, "cursor")


@pytest.mark.parametrize(
    ("name", "value"), [("invoice_code", "\x00"), ("invoice_number", "1\x00"), ("invoice_code", "x")]
)
async def test_a_list_filter_of_the_wrong_shape_is_a_400(issuer_client: Any, name: str, value: str) -> None:
    problem(await issuer_client.get("/v1/invoices", params={name: value}), 400)


async def test_an_event_at_the_end_of_time_is_rejected_alone(
    issuer_client: Any, operator_factory: Any, pool: asyncpg.Pool
) -> None:
    operator = await operator_factory(["62"])
    [inv] = await dispatched(issuer_client, operator, pool, "62", 1)
    number = inv["delivery"]["tracking_number"]
    batch = [
        event("edge-1", number, "accepted", 0, occurred_at="0001-01-01T00:00:00+14:00"),
        event("edge-2", number, "in_transit", 0, occurred_at="9999-12-31T23:59:59-12:00"),
        event("edge-3", number, "accepted", 5),
    ]
    answer = await operator.post("/v1/postal/events", json={"events": batch})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == 1 and [r["index"] for r in body["rejected"]] == [0, 1]
    assert all("occurred_at" in r["reason"] for r in body["rejected"])


async def test_an_issuer_cannot_use_up_its_region(
    issuer_client: Any, http: Any, pool: asyncpg.Pool, server: Any
) -> None:
    """New series are capped per issuer and year (default 100): the next is a clear 409. A region whose 999,999
    codes are used up answers 409 to the issuer who needs a new one, never a 500."""
    for i in range(100):
        answer = await issuer_client.post("/v1/invoices", json=invoice_body(series=f"s{i}"))
        assert answer.status_code == 201, answer.text
    refused = problem(await issuer_client.post("/v1/invoices", json=invoice_body(series="one-more")), 409)
    assert "at most 100 series a year" in refused["detail"]
    again = await issuer_client.post("/v1/invoices", json=invoice_body(series="s7"))  # an open one: fine
    assert again.status_code == 201
    year = 2000 + int(again.json()["invoice_code"][4:6])
    region = "6201"
    await pool.execute(
        "INSERT INTO code_serials (region, year, last_serial) VALUES ($1, $2, 999999) "
        "ON CONFLICT (region, year) DO UPDATE SET last_serial = 999999",
        region,
        year,
    )
    _, key = await new_issuer(pool, region=region)
    answer = await http.post("/v1/invoices", json=invoice_body(), headers={"Authorization": f"Bearer {key}"})
    assert "no invoice codes left" in problem(answer, 409)["detail"]


def test_key_revocation_is_exact(settings: Settings) -> None:
    """A revocation takes the key given whole, or keys by a real prefix: LIKE's `%` matches nothing. A second
    issuer with the same tax ID is refused."""
    tax_id = valid_uscc()
    created = cli(settings, "issuer", "create", "--name", "吊销测试", "--tax-id", tax_id, "--region", "4401", "--json")
    issuer_id = json.loads(created.stdout)["issuer_id"]
    second = json.loads(cli(settings, "issuer", "key", "--issuer", issuer_id, "--json").stdout)["api_key"]
    wildcard = cli(settings, "issuer", "key", "--issuer", issuer_id, "--revoke", "%%%%%%%%", "--json")
    assert wildcard.returncode == 1 and json.loads(wildcard.stdout)["revoked"] == 0
    whole = cli(settings, "issuer", "key", "--issuer", issuer_id, "--revoke", second, "--json")
    assert whole.returncode == 0 and json.loads(whole.stdout)["revoked"] == 1
    assert cli(settings, "issuer", "key", "--issuer", issuer_id, "--revoke", second).returncode == 1
    dup = cli(settings, "issuer", "create", "--name", "重复", "--tax-id", tax_id, "--region", "4401")
    assert dup.returncode == 2 and "exists already" in dup.stderr


def test_operator_keys_are_added_and_revoked(settings: Settings) -> None:
    op = json.loads(cli(settings, "operator", "create", "--name", "测试邮政", "--provinces", "63", "--json").stdout)
    added = cli(settings, "operator", "key", "--operator", op["operator_id"], "--json")
    assert added.returncode == 0 and json.loads(added.stdout)["api_key"].startswith("ilo_")
    key = json.loads(added.stdout)["api_key"]
    revoked = cli(settings, "operator", "key", "--operator", op["operator_id"], "--revoke", key[:10], "--json")
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked"] == 1
    missing = cli(settings, "operator", "key", "--operator", str(uuid.uuid4()))
    assert missing.returncode == 2 and "no operator" in missing.stderr
