"""The issuer API over real HTTP (a `invoiceloop serve` subprocess): the happy path and every refusal."""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal
from typing import Any

import httpx
import pytest

from invoicing import formats
from invoicing.keys import b64url_decode, verify_signature
from invoicing.words import amount_in_words
from tests.samples import invoice_body
from tests.unit.test_pdf import decoded, poppler_text, raster

PROBLEM = "application/problem+json"


def assert_problem(resp: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body = resp.json()
    assert {"type", "title", "status", "detail"} <= body.keys() and body["status"] == status
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return dict(body)


async def issue(client: httpx.AsyncClient, **kw: Any) -> dict[str, Any]:
    resp = await client.post("/v1/invoices", json=invoice_body(**kw))
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def test_issue_get_list_void_credit(issuer_client: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
    inv = await issue(issuer_client, lines=3)
    assert (inv["total_amount"], inv["total_tax"], inv["total"]) == ("600.00", "78.00", "678.00")
    assert inv["total_in_words"] == amount_in_words(Decimal("678.00")) == "陆佰柒拾捌元整"
    assert len(inv["check_code"]) == 20 and inv["check_code"].isdigit()
    assert inv["invoice_code"].startswith("4401") and inv["invoice_number"] == "00000001"
    assert inv["prev_hash"] == formats.ZERO_HASH and inv["status"] == "issued"
    assert inv["buyer"]["address"]["province_code"] == "44"

    got = (await issuer_client.get(f"/v1/invoices/{inv['id']}")).json()
    assert got == inv
    second = await issue(issuer_client)
    assert second["invoice_number"] == "00000002" and second["prev_hash"] == inv["record_hash"]

    page = (await issuer_client.get("/v1/invoices", params={"limit": 1})).json()
    assert [i["id"] for i in page["items"]] == [second["id"]] and page["next_cursor"]
    page2 = (await issuer_client.get("/v1/invoices", params={"limit": 1, "cursor": page["next_cursor"]})).json()
    assert [i["id"] for i in page2["items"]] == [inv["id"]] and page2["next_cursor"] is None
    by_number = (await issuer_client.get("/v1/invoices", params={"invoice_number": "00000002"})).json()
    assert [i["id"] for i in by_number["items"]] == [second["id"]]

    voided = await issuer_client.post(f"/v1/invoices/{second['id']}/void", json={"reason": "开错了"})
    assert voided.status_code == 200 and voided.json()["status"] == "voided"
    assert_problem(await issuer_client.post(f"/v1/invoices/{second['id']}/void", json={"reason": "again"}), 409)
    only_voided = (await issuer_client.get("/v1/invoices", params={"status": "voided"})).json()
    assert [i["id"] for i in only_voided["items"]] == [second["id"]]

    part = await issuer_client.post(
        f"/v1/invoices/{inv['id']}/credit-notes", json={"reason": "退一把", "lines": [{"line_no": 1, "quantity": "1"}]}
    )
    assert part.status_code == 201, part.text
    note = part.json()
    assert note["kind"] == "credit_note" and note["total"] == "-113.00" and note["original_invoice_id"] == inv["id"]
    assert note["total_in_words"].startswith("负")
    assert note["invoice_number"] == "00000003"  # credit notes number from the same series
    assert (await issuer_client.get(f"/v1/invoices/{inv['id']}")).json()["status"] == "partially_credited"
    assert_problem(await issuer_client.post(f"/v1/invoices/{inv['id']}/void", json={"reason": "x"}), 409)
    rest = await issuer_client.post(f"/v1/invoices/{inv['id']}/credit-notes", json={"reason": "全部退货"})
    assert rest.status_code == 201 and rest.json()["total"] == "-565.00"
    assert (await issuer_client.get(f"/v1/invoices/{inv['id']}")).json()["status"] == "reversed"
    assert_problem(await issuer_client.post(f"/v1/invoices/{inv['id']}/credit-notes", json={"reason": "x"}), 409)

    stats = (await issuer_client.get("/v1/stats")).json()
    [month] = stats["months"]
    assert (month["invoices"], month["credit_notes"], month["voided"]) == (2, 2, 1)
    assert month["amount"] == "678.00" and month["credited"] == "-678.00"


async def test_signature_and_qr_url_check_against_published_keys(
    issuer_client: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    inv = await issue(issuer_client)
    keys = {k["kid"]: k for k in (await http.get("/.well-known/jwks.json")).json()["keys"]}
    key = keys[inv["key_id"]]
    assert (key["kty"], key["crv"], key["use"]) == ("OKP", "Ed25519", "sig")
    core = "|".join(
        [
            "IL1",
            inv["invoice_code"],
            inv["invoice_number"],
            inv["issue_date"].replace("-", ""),
            inv["total_amount"],
            inv["total_tax"],
            inv["total"],
            inv["check_code"],
            inv["record_hash"],
        ]
    )
    assert verify_signature(b64url_decode(key["x"]), core, inv["signature"])
    assert not verify_signature(b64url_decode(key["x"]), core.replace("IL1", "IL2"), inv["signature"])
    query = dict(httpx.URL(inv["verify_url"]).params)
    assert query == {
        "c": inv["invoice_code"],
        "n": inv["invoice_number"],
        "d": inv["issue_date"].replace("-", ""),
        "a": inv["total_amount"],
        "x": inv["total_tax"],
        "t": inv["total"],
        "k": inv["check_code"],
        "h": inv["record_hash"],
        "s": inv["signature"],
        "kid": inv["key_id"],
    }


BAD_BODIES = [
    ({"lines": []}, 422, "lines"),
    (
        {"lines": [{"description": "a", "quantity": "-1", "unit_price": "1", "tax_rate": "0.13"}]},
        422,
        "lines[0].quantity",
    ),
    (
        {"lines": [{"description": "a", "quantity": "0", "unit_price": "1", "tax_rate": "0.13"}]},
        422,
        "lines[0].quantity",
    ),
    (
        {"lines": [{"description": "a", "quantity": "1", "unit_price": "1.123456789", "tax_rate": "0.13"}]},
        422,
        "lines[0].unit_price",
    ),
    (
        {"lines": [{"description": "a", "quantity": 1.5, "unit_price": "1", "tax_rate": "0.13"}]},
        422,
        "lines[0].quantity",
    ),
    (
        {"lines": [{"description": "a", "quantity": "1", "unit_price": "1", "tax_rate": "0.12"}]},
        422,
        "lines[0].tax_rate",
    ),
    (
        {"lines": [{"description": "", "quantity": "1", "unit_price": "1", "tax_rate": "0.13"}]},
        422,
        "lines[0].description",
    ),
    ({"colour": "red"}, 422, "colour"),
    ({"delivery": "postal", "buyer": {"name": "张三"}}, 422, "buyer.address"),
    ({"buyer": {"name": "张三", "phone": "12345"}}, 422, "buyer.phone"),
    ({"buyer": {"name": "某公司", "tax_id": "91440101MA5CXKYQ1A"}}, 422, "buyer.tax_id"),
    ({"delivery": "pigeon"}, 422, "delivery"),
    (
        {
            "buyer": {
                "name": "张三",
                "address": {"recipient": "张三", "line1": "x", "city": "y", "province": "火星", "postal_code": "1"},
            }
        },
        422,
        "buyer.address.province",
    ),
]


@pytest.mark.parametrize(("override", "status", "field"), BAD_BODIES)
async def test_bad_input_is_a_problem_naming_the_field(
    issuer_client: httpx.AsyncClient, override: dict[str, Any], status: int, field: str
) -> None:
    assert_problem(await issuer_client.post("/v1/invoices", json=invoice_body(**override)), status, field)


async def test_transport_refusals(issuer_client: httpx.AsyncClient, http: httpx.AsyncClient) -> None:
    assert_problem(
        await issuer_client.post("/v1/invoices", content=b'{"buyer": ', headers={"content-type": "application/json"}),
        400,
    )
    big = invoice_body(remarks="x" * 600_000)
    assert_problem(await issuer_client.post("/v1/invoices", json=big), 413)
    assert_problem(await http.post("/v1/invoices", json=invoice_body()), 401)
    assert_problem(await http.post("/v1/invoices", json=invoice_body(), headers={"Authorization": "Bearer nope"}), 401)
    assert_problem(await issuer_client.get("/v1/invoices", params={"limit": 501}), 400)
    assert_problem(await issuer_client.get("/v1/invoices", params={"cursor": "garbage!"}), 400, "cursor")
    batch = {"invoices": [invoice_body(), invoice_body(lines=0)]}
    assert_problem(await issuer_client.post("/v1/invoices/batch", json=batch), 422, "invoices[1].lines")
    assert (await issuer_client.get("/v1/invoices")).json()["items"] == []  # all or nothing


async def test_another_tenant_sees_404(issuer_client: httpx.AsyncClient, server: Any, pool: Any) -> None:
    from tests.conftest import new_issuer

    inv = await issue(issuer_client)
    _, other_key = await new_issuer(pool)
    async with httpx.AsyncClient(base_url=server.base_url, headers={"Authorization": f"Bearer {other_key}"}) as other:
        for method, path, body in [
            ("GET", f"/v1/invoices/{inv['id']}", None),
            ("GET", f"/v1/invoices/{inv['id']}/pdf", None),
            ("POST", f"/v1/invoices/{inv['id']}/void", {"reason": "x"}),
            ("POST", f"/v1/invoices/{inv['id']}/credit-notes", {"reason": "x"}),
            ("GET", "/v1/invoices/not-a-uuid", None),
        ]:
            assert_problem(await other.request(method, path, json=body), 404)
        assert (await other.get("/v1/invoices", params={"invoice_number": inv["invoice_number"]})).json()["items"] == []
    assert (await issuer_client.get(f"/v1/invoices/{inv['id']}")).status_code == 200


async def test_concurrent_retries_with_one_idempotency_key_give_one_invoice(issuer_client: httpx.AsyncClient) -> None:
    body = invoice_body(remarks="once")
    headers = {"Idempotency-Key": "order-42"}
    responses = await asyncio.gather(
        *(issuer_client.post("/v1/invoices", json=body, headers=headers) for _ in range(10))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 9
    assert len((await issuer_client.get("/v1/invoices")).json()["items"]) == 1
    other = await issuer_client.post("/v1/invoices", json=invoice_body(remarks="other"), headers=headers)
    assert_problem(other, 422)


async def test_batch_of_1000_over_http_in_order(issuer_client: httpx.AsyncClient) -> None:
    body = {"invoices": [invoice_body(remarks=str(i), series="batch") for i in range(1000)]}
    resp = await issuer_client.post("/v1/invoices/batch", json=body)
    assert resp.status_code == 201, resp.text[:500]
    items = resp.json()["invoices"]
    assert [i["remarks"] for i in items] == [str(i) for i in range(1000)]
    assert [int(i["invoice_number"]) for i in items] == list(range(1, 1001))
    for item in (items[0], items[-1]):  # the answer states each record as it reads back
        assert (await issuer_client.get(f"/v1/invoices/{item['id']}")).json() == item
    assert_problem(await issuer_client.post("/v1/invoices/batch", json={"invoices": []}), 422, "invoices")


async def test_pdf_download_with_etag(issuer_client: httpx.AsyncClient) -> None:
    inv = await issue(issuer_client)
    resp = await issuer_client.get(f"/v1/invoices/{inv['id']}/pdf")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/pdf"
    assert resp.content.startswith(b"%PDF")
    codes = decoded(raster(resp.content))
    assert codes["QRCode"] == inv["verify_url"] and codes["Code128"] == inv["invoice_code"] + inv["invoice_number"]
    assert inv["check_code"] in poppler_text(resp.content)
    assert f"invoice-{inv['invoice_code']}-{inv['invoice_number']}.pdf" in resp.headers["content-disposition"]
    again = await issuer_client.get(f"/v1/invoices/{inv['id']}/pdf", headers={"If-None-Match": resp.headers["etag"]})
    assert again.status_code == 304
    await issuer_client.post(f"/v1/invoices/{inv['id']}/void", json={"reason": "错开"})
    voided = await issuer_client.get(f"/v1/invoices/{inv['id']}/pdf", headers={"If-None-Match": resp.headers["etag"]})
    assert voided.status_code == 200 and voided.headers["etag"] != resp.headers["etag"]


async def test_the_schema_marks_exactly_the_routes_that_want_a_key(http: httpx.AsyncClient) -> None:
    """Every operation the schema says needs a bearer key answers 401 without one; every other does not."""
    schema = (await http.get("/schema/openapi.json")).json()
    assert "security" not in schema and "bearer" in schema["components"]["securitySchemes"]
    keyed = 0
    for path, operations in schema["paths"].items():
        url = re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000001", path)
        for method, operation in operations.items():
            response = await http.request(method.upper(), url, json={} if method == "post" else None)
            wants_key = operation.get("security") == [{"bearer": []}]
            keyed += wants_key
            assert (response.status_code == 401) == wants_key, (method, path, response.status_code)
    assert keyed >= 10


async def test_operations_endpoints(http: httpx.AsyncClient, issuer_client: httpx.AsyncClient) -> None:
    assert (await issuer_client.post("/v1/invoices", json=invoice_body())).status_code == 201  # counted in /metrics
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"postgresql": "ok", "redis": "ok"}
    assert "openapi" in (await http.get("/schema/openapi.json")).json()
    assert (await http.get("/schema")).status_code == 200
    metrics = await http.get("/metrics")
    assert metrics.status_code == 200 and 'invoiceloop_records_issued_total{kind="invoice"}' in metrics.text
    assert_problem(await http.get("/no/such/route"), 404)


async def test_clients_that_disconnect_mid_request_leave_no_gap(issuer_client: httpx.AsyncClient, server: Any) -> None:
    """Clients send a full request and hang up at once (before the answer): whatever the server
    did with each, the numbers it committed are exactly 1..n."""
    body = json.dumps(invoice_body(series="hangup")).encode()
    head = (
        f"POST /v1/invoices HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {issuer_client.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()

    async def hang_up(delay_s: float) -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head + body)
        await writer.drain()
        await asyncio.sleep(delay_s)
        writer.transport.abort()  # RST, not a polite close

    await asyncio.gather(*(hang_up(i * 0.0005) for i in range(40)))
    await issue(issuer_client, series="hangup")  # one that waits for its answer
    await asyncio.sleep(0.5)
    items = (await issuer_client.get("/v1/invoices", params={"limit": 500})).json()["items"]
    numbers = sorted(int(i["invoice_number"]) for i in items if i["series"] == "hangup")
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 1


async def test_readyz_says_503_when_redis_is_unreachable(settings: Any, output_dir: Any) -> None:
    from tests.conftest import ServerProcess

    srv = await asyncio.to_thread(
        ServerProcess, settings, output_dir / "server-no-redis.log", REDIS_URL="redis://127.0.0.1:1/0"
    )
    try:
        async with httpx.AsyncClient(base_url=srv.base_url) as client:
            ready = await client.get("/readyz")
            assert (await client.get("/healthz")).status_code == 200
    finally:
        srv.stop()
    assert ready.status_code == 503
    assert ready.json()["checks"]["postgresql"] == "ok" and ready.json()["checks"]["redis"].startswith("unreachable")


async def test_a_revoked_key_is_refused(issuer_client: httpx.AsyncClient, pool: Any) -> None:
    from invoicing import repository

    assert (await issuer_client.get("/v1/invoices")).status_code == 200
    async with pool.acquire() as conn:
        assert await repository.revoke_keys(conn, "issuer", issuer_client.issuer.id, issuer_client.api_key[:12]) == 1
    await asyncio.sleep(0.3)  # the server re-checks keys after INVOICELOOP_KEY_CACHE_TTL_S (0.2 s in tests)
    assert_problem(await issuer_client.get("/v1/invoices"), 401)
