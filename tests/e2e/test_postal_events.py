"""Tracking events over HTTP, the issuer's delivery view, the delivered SMS, and tenant isolation.

Each test posts to provinces no other test here serves (41 and 42, 43, 13); 11 is served, never posted to:
the module's tests share one database, where the earliest operator of a province takes its orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from invoicing import sms_outbox
from tests.delivery_fixtures import postal_body, wait_until
from tests.e2e.test_postal_api import issue_and_fulfil
from tests.samples import invoice_body


def at(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(hours=2) + timedelta(minutes=minutes)).isoformat()


def event(event_id: str, number: str, status: str, minutes: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "tracking_number": number,
        "status": status,
        "occurred_at": at(minutes),
        "location": "广州",
        "note": "",
        **extra,
    }


async def dispatched(client: Any, operator: Any, pool: asyncpg.Pool, province: str, count: int) -> list[dict[str, Any]]:
    invoices = await issue_and_fulfil(client, pool, province, count)
    [m] = (await operator.get("/v1/postal/manifests", params={"status": "open"})).json()["items"]
    assert (await operator.post(f"/v1/postal/manifests/{m['id']}/close")).status_code == 200
    return invoices


class RecordingSms:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, to: str, body: str) -> str:
        self.sent.append((to, body))
        return f"SM{len(self.sent)}"


async def test_events_each_judged_on_its_own(
    issuer_client: Any, operator_factory: Any, pool: asyncpg.Pool, server: Any, http: Any
) -> None:
    province, other_province = "41", "42"
    operator = await operator_factory([province])
    other = await operator_factory([other_province])
    a, b, c = await dispatched(issuer_client, operator, pool, province, 3)
    [foreign] = await dispatched(issuer_client, other, pool, other_province, 1)
    na, nb, nc = (i["delivery"]["tracking_number"] for i in (a, b, c))
    bad_check = na[:10] + str((int(na[10]) + 1) % 10) + na[11:]
    batch = [
        event("e1", na, "accepted", 0),
        event("e2", na, "in_transit", 30),
        event("e1", na, "accepted", 0),  # 2: duplicate in the same batch
        event("e3", na, "accepted", 10),  # 3: older than e2: recorded, status stays
        event("e4", bad_check, "in_transit", 31),  # 4: bad check digit
        event("e5", nb, "lost_in_space", 31),  # 5: unknown status
        event("e6", foreign["delivery"]["tracking_number"], "in_transit", 31),  # 6: another operator's
        event("e7", nb, "delivered", 40, signed_by="李四"),
        event("e8", nc, "returned_to_sender", 40),
        event("e9", nc, "in_transit", 50),  # 9: after a final status: recorded, status stays
        event("e10", nb, "in_transit", 60, signed_by="x"),  # 10: signed_by only on delivered
        {"event_id": "e11", "tracking_number": nb},  # 11: missing fields
        event("e12", na, "in_transit", 60 * 24 * 2),  # 12: in the future
    ]
    answer = await operator.post("/v1/postal/events", json={"events": batch})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == 6 and body["duplicates"] == 1
    assert [r["index"] for r in body["rejected"]] == [4, 5, 6, 10, 11, 12]
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert "check digit" in reasons[4] and "status" in reasons[5] and "operator" in reasons[6]
    assert "future" in reasons[12]

    again = (await operator.post("/v1/postal/events", json={"events": batch[:2]})).json()
    assert again == {"accepted": 0, "duplicates": 2, "rejected": []}

    view_a = (await issuer_client.get(f"/v1/invoices/{a['id']}/delivery")).json()
    assert view_a["status"] == "in_transit" and view_a["tracking_number"] == na
    assert [e["event_id"] for e in view_a["events"]] == ["e1", "e3", "e2"]
    view_b = (await issuer_client.get(f"/v1/invoices/{b['id']}/delivery")).json()
    assert view_b["status"] == "delivered" and view_b["signed_by"] == "李四"
    inv_c = (await issuer_client.get(f"/v1/invoices/{c['id']}")).json()
    assert inv_c["delivery"]["status"] == "returned_to_sender"
    months = (await issuer_client.get("/v1/stats")).json()["months"]
    assert sum(m["returned"] for m in months) == 1 and sum(m["delivered"] for m in months) == 1
    foreign_view = (await issuer_client.get(f"/v1/invoices/{foreign['id']}/delivery")).json()
    assert foreign_view["status"] == "dispatched" and foreign_view["events"] == []

    sms = RecordingSms()
    texts = await pool.fetch(
        "SELECT id FROM sms_outbox WHERE kind = 'delivered' AND invoice_id = ANY($1::uuid[])",
        [a["id"], b["id"], c["id"]],
    )
    assert len(texts) == 1  # only b was delivered
    assert await sms_outbox.send(pool, sms, texts[0]["id"], job_try=1) == "sent"
    assert sms.sent[0][0] == "+8613800138000" and b["invoice_number"] in sms.sent[0][1]
    assert await sms_outbox.send(pool, sms, texts[0]["id"], job_try=1) == "nothing to do"


JSON = {"Content-Type": "application/json"}


async def test_event_body_limits(operator_factory: Any) -> None:
    operator = await operator_factory(["11"])  # a province nobody posts to here
    assert (await operator.post("/v1/postal/events", json={"events": []})).status_code == 422
    too_many = [event(f"x{i}", "RR000000015CN", "accepted", 0) for i in range(1001)]
    assert (await operator.post("/v1/postal/events", json={"events": too_many})).status_code == 422
    assert (await operator.post("/v1/postal/events", json={"events": [], "x": 1})).status_code == 422
    assert (await operator.post("/v1/postal/events", content=b"{", headers=JSON)).status_code == 400
    assert (await operator.post("/v1/postal/events", content=b"{}")).status_code == 415  # a body must say it is JSON


async def test_operator_and_issuer_isolation(
    issuer_client: Any, operator_factory: Any, pool: asyncpg.Pool, http: Any
) -> None:
    province = "43"
    owner = await operator_factory([province])
    stranger = await operator_factory(["11"])
    [inv] = await issue_and_fulfil(issuer_client, pool, province, 1)
    number = inv["delivery"]["tracking_number"]
    [m] = (await owner.get("/v1/postal/manifests")).json()["items"]
    issuer_auth = {"Authorization": f"Bearer {issuer_client.api_key}"}
    operator_auth = {"Authorization": owner.headers["Authorization"]}
    postal_routes = [
        ("GET", "/v1/postal/manifests"),
        ("GET", f"/v1/postal/manifests/{m['id']}"),
        ("POST", f"/v1/postal/manifests/{m['id']}/close"),
        ("GET", f"/v1/postal/labels/{number}"),
        ("POST", "/v1/postal/events"),
    ]
    for method, path in postal_routes:
        for headers in (issuer_auth, {}):
            answer = await http.request(method, path, headers=headers, json={"events": []})
            assert answer.status_code == 401, (method, path)
    for path in (f"/v1/invoices/{inv['id']}", f"/v1/invoices/{inv['id']}/delivery", "/v1/invoices", "/v1/stats"):
        assert (await http.get(path, headers=operator_auth)).status_code == 401, path
    for method, path in postal_routes[1:4]:
        answer = await stranger.request(method, path)
        assert answer.status_code == 404, (method, path)
    assert (await stranger.get("/v1/postal/manifests")).json()["items"] == []
    sneaky = await stranger.post("/v1/postal/events", json={"events": [event("s1", number, "in_transit", 0)]})
    assert sneaky.json()["rejected"][0]["reason"].endswith("this operator's delivery orders")
    for path in (f"/v1/postal/manifests/{m['id']}", f"/v1/postal/manifests/{m['id']}/close"):
        assert (
            await owner.request("POST" if "close" in path else "GET", path.replace(m["id"], "nope"))
        ).status_code == 404

    other_issuer_view = await http.get(
        f"/v1/invoices/{inv['id']}/delivery", headers={"Authorization": f"Bearer {await _other_issuer_key(pool)}"}
    )
    assert other_issuer_view.status_code == 404
    electronic = (await issuer_client.post("/v1/invoices", json=invoice_body())).json()
    assert (await issuer_client.get(f"/v1/invoices/{electronic['id']}/delivery")).status_code == 404
    assert (await issuer_client.get("/v1/invoices/not-a-uuid/delivery")).status_code == 404
    assert postal_body(province)["delivery"] == "postal"


async def _other_issuer_key(pool: asyncpg.Pool) -> str:
    from tests.conftest import new_issuer

    _, key = await new_issuer(pool)
    return key


@pytest.mark.slow
async def test_delivered_sms_is_sent_by_the_worker(
    issuer_client: Any, operator_factory: Any, pool: asyncpg.Pool, start_worker: Any
) -> None:
    province = "13"
    operator = await operator_factory([province])
    [inv] = await dispatched(issuer_client, operator, pool, province, 1)
    number = inv["delivery"]["tracking_number"]
    start_worker()
    answer = await operator.post("/v1/postal/events", json={"events": [event("d1", number, "delivered", 5)]})
    assert answer.json()["accepted"] == 1

    async def sent() -> Any:
        return await pool.fetchrow(
            "SELECT s.sent_at, s.provider_id, s.body FROM sms_outbox s JOIN delivery_orders d ON d.invoice_id = s.invoice_id "
            "WHERE s.kind = 'delivered' AND d.tracking_number = $1 AND s.sent_at IS NOT NULL",
            number,
        )

    row = await wait_until(sent, timeout_s=30)
    assert row["provider_id"].startswith("CS") and inv["invoice_number"] in row["body"]
