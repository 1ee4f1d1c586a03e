"""Issuers' webhooks end to end (issue 15, item 1): the real service, the real arq worker in a subprocess, and a
real HTTP receiver on a local port (`tests.webhook_receiver`). Signatures are checked with the `standardwebhooks`
library itself (`Webhook(secret).verify`), not with our signing code.

The module's server runs with WEBHOOK_ALLOW_PRIVATE=1 (its receivers are on 127.0.0.1); the SSRF tests run a worker
without it, and a server without it for the URL checks at creation. Each test makes its own issuer and receiver."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from invoicing.webhooks import EVENT_TYPES
from tests.conftest import ServerProcess, new_issuer, server_log
from tests.delivery_fixtures import WorkerProcess, wait_until
from tests.e2e.test_postal_events import dispatched, event
from tests.own_redis import OwnRedis
from tests.samples import invoice_body
from tests.verification_fixtures import query_of, random_address, wrong_last6
from tests.webhook_receiver import Receiver

FAST = {"WEBHOOK_ALLOW_PRIVATE": "1", "WEBHOOK_RETRY_SCHEDULE_S": "0.5,0.5,0.5,0.5,0.5", "WEBHOOK_TIMEOUT_S": "5"}


@pytest.fixture(scope="module")
def server(settings: Any, output_dir: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """This module's service accepts http:// endpoints on 127.0.0.1 (WEBHOOK_ALLOW_PRIVATE=1)."""
    srv = ServerProcess(settings, server_log(output_dir, request), WEBHOOK_ALLOW_PRIVATE="1")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.stop()


@pytest.fixture
async def clients(server: ServerProcess, pool: asyncpg.Pool) -> AsyncIterator[Any]:
    """`await clients()` -> an httpx client of a new issuer on the module's server."""
    made: list[httpx.AsyncClient] = []

    async def make(srv: ServerProcess = server) -> httpx.AsyncClient:
        issuer, key = await new_issuer(pool)
        client = httpx.AsyncClient(base_url=srv.base_url, timeout=60, headers={"Authorization": f"Bearer {key}"})
        client.issuer = issuer  # type: ignore[attr-defined]
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


async def create_endpoint(client: Any, url: str, events: list[str] | None = None) -> dict[str, Any]:
    resp = await client.post("/v1/webhooks", json={"url": url, "events": events or list(EVENT_TYPES)})
    assert resp.status_code == 201, resp.text
    answer: dict[str, Any] = resp.json()
    return answer


async def issue(client: Any, **overrides: Any) -> dict[str, Any]:
    resp = await client.post("/v1/invoices", json=invoice_body(**overrides))
    assert resp.status_code == 201, resp.text
    answer: dict[str, Any] = resp.json()
    return answer


def verified(secret: str, received: Any) -> dict[str, Any]:
    """The body of a received request, after the library checked its signature (raises when it does not)."""
    payload: dict[str, Any] = Webhook(secret).verify(received.body, received.headers)
    return payload


async def arrivals(receiver: Receiver, path: str, count: int, timeout_s: float = 60) -> list[Any]:
    async def enough() -> list[Any]:
        got = receiver.at(path)
        return got if len(got) >= count else []

    result: list[Any] = await wait_until(enough, timeout_s)
    return result


async def log_of(client: Any, endpoint_id: str) -> list[dict[str, Any]]:
    resp = await client.get(f"/v1/webhooks/{endpoint_id}/deliveries", params={"limit": 500})
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def test_every_event_type_arrives_signed(
    clients: Any, receiver: Receiver, start_worker: Any, operator_factory: Any, pool: asyncpg.Pool, server: Any
) -> None:
    start_worker(**FAST)
    client = await clients()
    endpoint = await create_endpoint(client, receiver.url("/all"))
    assert endpoint["secret"].startswith("whsec_") and len(base64.b64decode(endpoint["secret"][6:])) == 32
    operator = await operator_factory(["45"])
    [postal] = await dispatched(client, operator, pool, "45", 1)  # issued, then dispatched by the post
    number = postal["delivery"]["tracking_number"]
    resp = await operator.post("/v1/postal/events", json={"events": [event("w1", number, "delivered", 5)]})
    assert resp.json()["accepted"] == 1, resp.text
    public = httpx.AsyncClient(base_url=server.base_url, timeout=30, headers={"X-Forwarded-For": random_address()})
    async with public:
        assert (await public.post("/v1/verifications", json=query_of(postal))).json()["result"] == "valid"
        guessed = await issue(client)
        answers = [
            (await public.post("/v1/verifications", json=query_of(guessed, check_code_last6=wrong_last6(guessed))))
            for _ in range(6)
        ]
    assert [a.json()["result"] for a in answers][-1] == "locked", [a.text for a in answers]
    assert (await client.post(f"/v1/invoices/{postal['id']}/credit-notes", json={"reason": "退货"})).status_code == 201
    voided = await issue(client)
    assert (await client.post(f"/v1/invoices/{voided['id']}/void", json={"reason": "开错了"})).status_code == 200

    async def every_type() -> list[dict[str, Any]]:
        bodies = [verified(endpoint["secret"], r) for r in receiver.at("/all")]
        moved = [b for b in bodies if b["type"] == "delivery.status_changed"]
        return bodies if {b["type"] for b in bodies} == set(EVENT_TYPES) and len(moved) == 3 else []

    bodies = await wait_until(every_type, 90)
    by_type = {(b["type"], b["data"].get("invoice_id")): b for b in bodies}
    assert by_type[("invoice.issued", postal["id"])]["data"]["invoice_number"] == postal["invoice_number"]
    assert ("invoice.issued", guessed["id"]) in by_type and ("invoice.voided", voided["id"]) in by_type
    assert by_type[("invoice.first_verified", postal["id"])]["data"]["invoice_code"] == postal["invoice_code"]
    assert ("invoice.locked", guessed["id"]) in by_type
    credited = by_type[("invoice.credited", postal["id"])]["data"]["credit_note"]
    assert credited["total"].startswith("-") and credited["id"] != postal["id"]
    moves = {b["data"]["status"]: b["data"] for b in bodies if b["type"] == "delivery.status_changed"}
    assert set(moves) == {"manifested", "dispatched", "delivered"}  # the post took it, sent it, delivered it
    assert moves["delivered"]["previous_status"] == "dispatched" and moves["delivered"]["tracking_number"] == number
    for received in receiver.at("/all"):
        assert received.headers["webhook-id"].startswith("msg_") and received.headers["webhook-timestamp"].isdigit()
    log = await log_of(client, endpoint["id"])
    assert all(line["status_code"] == 204 and line["error"] is None for line in log)


async def test_a_failed_try_is_retried_with_the_same_webhook_id(
    clients: Any, receiver: Receiver, start_worker: Any
) -> None:
    start_worker(**FAST)
    client = await clients()
    endpoint = await create_endpoint(client, receiver.url("/flaky"), ["invoice.issued"])
    receiver.plan["/flaky"] = ["fail", "fail", "ok"]
    inv = await issue(client)
    tries = await arrivals(receiver, "/flaky", 3)
    assert len({t.headers["webhook-id"] for t in tries}) == 1
    assert [verified(endpoint["secret"], t)["data"]["invoice_id"] for t in tries] == [inv["id"]] * 3
    assert len({t.body for t in tries}) == 1  # the same message, byte for byte

    async def settled() -> list[dict[str, Any]]:
        log = await log_of(client, endpoint["id"])
        return log if any(line["status_code"] == 204 for line in log) else []

    log = list(reversed(await wait_until(settled)))
    assert [line["status_code"] for line in log] == [500, 500, 204]
    assert [line["attempt"] for line in log] == [1, 2, 3]
    assert log[0]["next_retry_at"] is not None and log[0]["error"] == "answered 500"
    assert log[2]["next_retry_at"] is None and all(line["event"] == "invoice.issued" for line in log)
    assert all(isinstance(line["duration_ms"], int) for line in log)


async def test_a_worker_killed_mid_delivery_loses_nothing(
    clients: Any, receiver: Receiver, start_worker: Any, pool: asyncpg.Pool
) -> None:
    """The worker is killed (SIGKILL) while the receiver holds its request: after the lease, another worker sends
    the same message again, with the same webhook-id."""
    env = {**FAST, "WEBHOOK_TIMEOUT_S": "3"}  # the lease: 2 x 3 + 10 s
    first = start_worker(**env)
    client = await clients()
    endpoint = await create_endpoint(client, receiver.url("/held"), ["invoice.issued"])
    receiver.plan["/held"] = ["hang", "ok"]
    inv = await issue(client)
    [held] = await arrivals(receiver, "/held", 1)
    first.kill()
    receiver.release.set()
    start_worker(**env)
    tries = await arrivals(receiver, "/held", 2, timeout_s=90)
    assert tries[0].headers["webhook-id"] == tries[1].headers["webhook-id"] == held.headers["webhook-id"]
    assert verified(endpoint["secret"], tries[1])["data"]["invoice_id"] == inv["id"]

    async def delivered() -> bool:
        async with pool.acquire() as conn:
            status = await conn.fetchval(
                "SELECT status FROM webhook_messages WHERE endpoint_id = $1", uuid.UUID(endpoint["id"])
            )
        return bool(status == "delivered")

    await wait_until(delivered)


async def test_a_hanging_receiver_holds_neither_the_worker_nor_other_endpoints(
    clients: Any, receiver: Receiver, start_worker: Any
) -> None:
    start_worker(**{**FAST, "WEBHOOK_TIMEOUT_S": "60", "WEBHOOK_ENDPOINT_CONCURRENCY": "2"})
    client = await clients()
    await create_endpoint(client, receiver.url("/stuck"), ["invoice.issued"])
    healthy = await create_endpoint(client, receiver.url("/fine"), ["invoice.issued"])
    receiver.plan["/stuck"] = ["hang"]
    invoices = [await issue(client) for _ in range(5)]
    got = await arrivals(receiver, "/fine", 5, timeout_s=60)  # while /stuck still holds its requests
    assert {verified(healthy["secret"], r)["data"]["invoice_id"] for r in got} == {i["id"] for i in invoices}
    assert receiver.hanging > 0  # nothing came back from /stuck yet (its timeout is 60 s)
    await asyncio.sleep(2)  # give the worker every chance to open more than its bound
    assert receiver.max_hanging == 2 and len(receiver.at("/stuck")) == 2  # WEBHOOK_ENDPOINT_CONCURRENCY


async def test_an_issuer_never_reaches_another_issuers_endpoint(
    clients: Any, receiver: Receiver, start_worker: Any
) -> None:
    start_worker(**FAST)
    owner, other = await clients(), await clients()
    endpoint = await create_endpoint(owner, receiver.url("/owner"), ["invoice.issued"])
    theirs = f"/v1/webhooks/{endpoint['id']}"
    assert (await other.get(f"{theirs}/deliveries")).status_code == 404
    assert (await other.post(f"{theirs}/rotate-secret")).status_code == 404
    assert (await other.delete(theirs)).status_code == 404
    assert (await other.get("/v1/webhooks")).json()["items"] == []
    listed = (await owner.get("/v1/webhooks")).json()["items"]
    assert [e["id"] for e in listed] == [endpoint["id"]] and "secret" not in listed[0]
    await issue(other)  # the other issuer's invoice reaches no endpoint of the owner's
    mine = await issue(owner)
    [got] = await arrivals(receiver, "/owner", 1)
    assert verified(endpoint["secret"], got)["data"]["invoice_id"] == mine["id"]
    await asyncio.sleep(3)  # a second sweep or two: still only the owner's invoice
    assert len(receiver.at("/owner")) == 1
    assert (await owner.delete(theirs)).status_code == 204
    assert (await owner.get("/v1/webhooks")).json()["items"] == []


async def test_a_rotated_secret_signs_beside_the_new_one(clients: Any, receiver: Receiver, start_worker: Any) -> None:
    start_worker(**FAST)
    client = await clients()
    endpoint = await create_endpoint(client, receiver.url("/rotated"), ["invoice.issued"])
    resp = await client.post(f"/v1/webhooks/{endpoint['id']}/rotate-secret")
    assert resp.status_code == 200, resp.text
    rotated = resp.json()
    assert rotated["secret"] != endpoint["secret"] and rotated["previous_secret_expires_at"]
    await issue(client)
    [got] = await arrivals(receiver, "/rotated", 1)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    verified(rotated["secret"], got)
    verified(endpoint["secret"], got)  # a receiver not yet told the new secret still accepts it


async def test_an_endpoint_failing_for_long_is_disabled_and_told(
    clients: Any, receiver: Receiver, start_worker: Any, pool: asyncpg.Pool
) -> None:
    start_worker(**{**FAST, "WEBHOOK_RETRY_SCHEDULE_S": "0.5,0.5,0.5,0.5,0.5,0.5", "WEBHOOK_DISABLE_AFTER_S": "2"})
    client = await clients()
    endpoint = await create_endpoint(client, receiver.url("/down"), ["invoice.issued"])
    receiver.plan["/down"] = ["fail"]
    await issue(client)

    async def disabled() -> list[dict[str, Any]]:
        return [e for e in (await client.get("/v1/webhooks")).json()["items"] if e["status"] == "disabled"]

    [shown] = await wait_until(disabled, 60)
    assert shown["disabled_at"] and shown["failing_since"]
    log = await log_of(client, endpoint["id"])
    assert log[0]["event"] == "endpoint.disabled" and "every try has failed since" in log[0]["error"]
    tries = len(receiver.at("/down"))
    await issue(client)  # nothing more is written, fanned out or sent for a disabled endpoint
    await asyncio.sleep(3)
    assert len(receiver.at("/down")) == tries
    async with pool.acquire() as conn:
        events = await conn.fetchval(
            "SELECT count(*) FROM webhook_events WHERE issuer_id = $1", uuid.UUID(client.issuer.id)
        )
    assert events == 1


# ---------------------------------------------------------------- server-side request forgery


@pytest.fixture(scope="module")
def strict_server(settings: Any, output_dir: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A server as deployed: WEBHOOK_ALLOW_PRIVATE unset."""
    srv = ServerProcess(settings, server_log(output_dir, request, "strict-server"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.com/hook", "https"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://192.168.0.10/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "metadata"),
        ("https://[fd00:ec2::254]/latest", "metadata"),
        ("https://100.64.0.1/hook", "carrier-grade NAT"),
        ("https://[::ffff:169.254.169.254]/", "metadata"),
        ("https://user:pw@example.com/hook", "user name"),
        ("ftp://example.com/hook", "https"),
    ],
)
async def test_an_endpoint_on_an_inner_address_is_refused_at_creation(
    strict_server: ServerProcess, clients: Any, url: str, why: str
) -> None:
    client = await clients(strict_server)
    resp = await client.post("/v1/webhooks", json={"url": url, "events": ["invoice.issued"]})
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    [error] = resp.json()["errors"]
    assert error["field"] == "url" and why in error["message"], error


async def test_an_issuer_has_at_most_twenty_endpoints(clients: Any) -> None:
    client = await clients()
    hook = {"url": "https://hooks.example.com/in", "events": ["invoice.issued"]}
    made = await asyncio.gather(*(client.post("/v1/webhooks", json=hook) for _ in range(24)))
    assert sorted(r.status_code for r in made) == [201] * 20 + [409] * 4
    refused = next(r for r in made if r.status_code == 409)
    assert refused.headers["content-type"].startswith("application/problem+json") and "at most 20" in refused.text
    assert len((await client.get("/v1/webhooks", params={"limit": 500})).json()["items"]) == 20
    page = (await client.get("/v1/webhooks", params={"limit": 15})).json()
    rest = (await client.get("/v1/webhooks", params={"limit": 15, "cursor": page["next_cursor"]})).json()
    assert len(page["items"]) == 15 and len(rest["items"]) == 5 and rest["next_cursor"] is None


async def test_bad_event_types_are_named(clients: Any) -> None:
    client = await clients()
    resp = await client.post("/v1/webhooks", json={"url": "https://example.com/h", "events": ["invoice.nope"]})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "events[0]"
    resp = await client.post("/v1/webhooks", json={"url": "https://example.com/h", "events": [], "x": 1})
    assert resp.status_code == 422
    resp = await client.post(
        "/v1/webhooks", json={"url": " https://example.com/h", "events": [], "description": "a\u202eb"}
    )
    assert resp.status_code == 422
    assert {e["field"] for e in resp.json()["errors"]} == {"url", "events", "description"}, resp.text


async def test_a_host_name_that_resolves_inward_gets_no_request(
    strict_server: ServerProcess, clients: Any, receiver: Receiver, start_worker: Any
) -> None:
    """`localhost` passes the check at creation (it is a name); the worker resolves it, finds a loopback address and
    connects nowhere: the receiver on that port sees not even a TCP connection."""
    start_worker(WEBHOOK_RETRY_SCHEDULE_S="60")
    client = await clients(strict_server)
    endpoint = await create_endpoint(client, receiver.url("/inner", host="localhost", scheme="https"))
    await issue(client)

    async def refused() -> list[dict[str, Any]]:
        return await log_of(client, endpoint["id"])

    [line] = await wait_until(refused, 60)
    assert line["status_code"] is None and line["error"] == "refused: the host resolves to a loopback address"
    assert receiver.connections == 0


async def test_a_redirect_is_not_followed(clients: Any, receiver: Receiver, start_worker: Any) -> None:
    """Even with private addresses allowed (so the first hop is reachable), a 307 is a failed try: the worker never
    goes where the receiver points it."""
    start_worker(**{**FAST, "WEBHOOK_RETRY_SCHEDULE_S": "60"})
    client = await clients()
    endpoint = await create_endpoint(client, receiver.url("/bounce"), ["invoice.issued"])
    receiver.plan["/bounce"] = [f"redirect:{receiver.url('/inside')}"]
    await issue(client)

    async def logged() -> list[dict[str, Any]]:
        return await log_of(client, endpoint["id"])

    [line] = await wait_until(logged, 60)
    assert line["status_code"] == 307 and "redirects are not followed" in line["error"]
    assert receiver.at("/inside") == [] and len(receiver.at("/bounce")) == 1


# ---------------------------------------------------------------- Redis away


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path_factory.mktemp("hook-redis"))
    yield server
    server.stop()


async def test_events_written_while_redis_is_away_are_delivered_by_the_sweep(
    settings: Any, own_redis: OwnRedis, output_dir: Path, pool: asyncpg.Pool, receiver: Receiver
) -> None:
    """Redis is killed, an invoice is issued (the nudge fails), Redis comes back: the worker's sweep delivers."""
    import dataclasses

    faulty = dataclasses.replace(settings, redis_url=own_redis.url)
    srv = ServerProcess(faulty, output_dir / "servers" / "server-webhooks-redis.log", WEBHOOK_ALLOW_PRIVATE="1")
    worker = WorkerProcess(faulty, output_dir / "delivery" / "worker-webhooks-redis.log", **FAST)
    try:
        _, key = await new_issuer(pool)
        async with httpx.AsyncClient(
            base_url=srv.base_url, timeout=60, headers={"Authorization": f"Bearer {key}"}
        ) as client:
            endpoint = await create_endpoint(client, receiver.url("/later"), ["invoice.issued"])
            own_redis.kill()
            inv = await issue(client)
            await asyncio.sleep(1)
            assert receiver.at("/later") == []
            own_redis.start()
            [got] = await arrivals(receiver, "/later", 1, timeout_s=90)
            assert verified(endpoint["secret"], got)["data"]["invoice_id"] == inv["id"]
    finally:
        worker.stop()
        srv.stop()


def test_the_body_is_compact_json_with_type_timestamp_and_data() -> None:
    from datetime import UTC, datetime

    from invoicing.webhooks import body_of

    body = body_of("invoice.issued", datetime(2026, 11, 30, 8, 0, tzinfo=UTC), {"invoice_id": "x"})
    assert json.loads(body) == {
        "type": "invoice.issued",
        "timestamp": "2026-11-30T08:00:00.000000Z",
        "data": {"invoice_id": "x"},
    }
