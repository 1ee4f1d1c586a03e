"""The closed-loop figures over HTTP: the rollup agrees with the invoices after random issuing, voiding, crediting,
verifying and delivering; the public figures leave out every cell of fewer than 3 issuers (in the JSON, in the
page, and in every total); an issuer reads only its own split; the public JSON is computed once per TTL however
many ask; and `invoiceloop stats --by province`.

The module's servers share its database. Provinces (the seller's) are kept apart by test: the random test uses
44, 33 and 11; the k-anonymity test 51, 52 and 65; the tenant test 35."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from delivery import services as delivery_services
from invoiceloop.cli import main
from invoiceloop.settings import Settings
from invoicing import rollup_repository
from tests.conftest import ServerProcess, new_issuer, server_log
from tests.delivery_fixtures import new_operator, postal_body
from tests.samples import invoice_body
from tests.verification_fixtures import query_of, random_address, wrong_last6

# The public cells straight from the invoices (not from the rollup): issuers and figures per (month, province).
CELLS_FROM_INVOICES = """
SELECT to_char(i.issue_date, 'YYYY-MM') AS month, left(s.region, 2) AS province,
       count(DISTINCT i.issuer_id) AS issuers,
       count(*) FILTER (WHERE i.kind = 'invoice') AS invoices,
       coalesce(sum(i.total) FILTER (WHERE i.kind = 'invoice' AND i.status <> 'voided'), 0) AS amount,
       count(d.id) FILTER (WHERE d.status = 'returned_to_sender') AS returned
  FROM invoices i JOIN issuers s ON s.id = i.issuer_id LEFT JOIN delivery_orders d ON d.invoice_id = i.id
 GROUP BY 1, 2"""


async def _client(server: ServerProcess, key: str | None = None) -> httpx.AsyncClient:
    headers = {"X-Forwarded-For": random_address()}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.AsyncClient(base_url=server.base_url, timeout=60, headers=headers)


@pytest.fixture
async def clients() -> AsyncIterator[list[httpx.AsyncClient]]:
    made: list[httpx.AsyncClient] = []
    yield made
    for c in made:
        await c.aclose()


async def issuer_client(
    server: ServerProcess, pool: asyncpg.Pool, region: str, made: list[httpx.AsyncClient]
) -> httpx.AsyncClient:
    issuer, key = await new_issuer(pool, region)
    client = await _client(server, key)
    client.issuer = issuer  # type: ignore[attr-defined]
    made.append(client)
    return client


def _rows(records: list[asyncpg.Record]) -> list[tuple[Any, ...]]:
    """Rollup rows comparable as tuples, all-zero rows dropped (a row can be made by an event that adds nothing)."""
    keep = [tuple(r.values()) for r in records if any(v for v in tuple(r.values())[4:])]
    return sorted(keep, key=str)


# ---------------------------------------------------------------- the rollup keeps up with the invoices


class Activity:
    """Random issuing, voiding, crediting, verifying and delivering, over HTTP, on a few issuers."""

    def __init__(self, rnd: random.Random, server: ServerProcess, sellers: list[httpx.AsyncClient]) -> None:
        self.rnd, self.server, self.sellers = rnd, server, sellers
        self.invoices: list[tuple[httpx.AsyncClient, dict[str, Any]]] = []

    async def issue(self) -> None:
        seller = self.rnd.choice(self.sellers)
        count = self.rnd.randint(1, 4)
        series = self.rnd.choice(["default", "b"])
        bodies = []
        for _ in range(count):
            body = postal_body("44") if self.rnd.random() < 0.4 else invoice_body()
            body["series"] = series
            body["lines"][0]["unit_price"] = f"{self.rnd.randint(1, 99999)}.{self.rnd.randint(0, 99):02d}"
            bodies.append(body)
        answer = await seller.post("/v1/invoices/batch", json={"invoices": bodies})
        assert answer.status_code == 201, answer.text
        self.invoices += [(seller, inv) for inv in answer.json()["invoices"]]

    async def void(self) -> None:
        seller, inv = self.rnd.choice(self.invoices)
        answer = await seller.post(f"/v1/invoices/{inv['id']}/void", json={"reason": "开错了"})
        assert answer.status_code in (200, 409), answer.text

    async def credit(self) -> None:
        seller, inv = self.rnd.choice(self.invoices)
        answer = await seller.post(f"/v1/invoices/{inv['id']}/credit-notes", json={"reason": "退货"})
        assert answer.status_code in (201, 409), answer.text

    async def verify(self) -> None:
        _, inv = self.rnd.choice(self.invoices)
        query = query_of(inv) if self.rnd.random() < 0.7 else query_of(inv, check_code_last6=wrong_last6(inv))
        async with await _client(self.server) as consumer:
            answer = await consumer.post("/v1/verifications", json=query)
        assert answer.status_code in (200, 428, 429), answer.text

    async def deliver(self, pool: asyncpg.Pool, operator: httpx.AsyncClient) -> None:
        """Fulfil the postal invoices' orders, hand the manifest over and report some delivered, some returned."""
        postal = [inv["id"] for _, inv in self.invoices if inv["delivery"]["method"] == "postal"]
        async with pool.acquire() as conn:
            await delivery_services.fulfil_all(conn, postal)
        for m in (await operator.get("/v1/postal/manifests", params={"status": "open"})).json()["items"]:
            assert (await operator.post(f"/v1/postal/manifests/{m['id']}/close")).status_code == 200
        numbers = await pool.fetch(
            "SELECT tracking_number FROM delivery_orders WHERE invoice_id = ANY($1::uuid[]) AND status = 'dispatched'",
            [uuid.UUID(i) for i in postal],
        )
        events = [
            {
                "event_id": uuid.uuid4().hex,
                "tracking_number": r["tracking_number"],
                "status": self.rnd.choice(["delivered", "returned_to_sender", "in_transit", "delivered"]),
                "occurred_at": "2026-01-01T00:00:00Z",
                "location": "广州",
                "note": "",
            }
            for r in numbers
            if self.rnd.random() < 0.8
        ]
        if events:
            answer = await operator.post("/v1/postal/events", json={"events": events})
            assert answer.status_code == 200 and not answer.json()["rejected"], answer.text


@pytest.mark.parametrize("seed", [1, 2])
async def test_rollup_agrees_with_a_scan_of_the_invoices(
    stats_server: ServerProcess, pool: asyncpg.Pool, clients: list[httpx.AsyncClient], seed: int
) -> None:
    rnd = random.Random(seed)
    sellers = [await issuer_client(stats_server, pool, region, clients) for region in ("4401", "4403", "3301", "1101")]
    operator_key = (await new_operator(pool, ["44"]))[1] if seed == 1 else None
    operator = await _client(stats_server, operator_key) if operator_key else None
    activity = Activity(rnd, stats_server, sellers)
    for _ in range(3):
        await activity.issue()
    for _ in range(40):
        step = rnd.choice(["issue", "void", "credit", "verify", "verify", "verify"])
        await getattr(activity, step)()
        if operator is not None and rnd.random() < 0.1:
            await activity.deliver(pool, operator)
    if operator is not None:
        await activity.deliver(pool, operator)
        await operator.aclose()
    async with pool.acquire() as conn:
        kept, scanned = await rollup_repository.rollup_rows(conn), await rollup_repository.direct_rows(conn)
    assert _rows(kept) == _rows(scanned), f"seed {seed}"
    assert sum(r["verified"] for r in kept) > 0 and sum(r["voided"] for r in kept) > 0


# ---------------------------------------------------------------- fewer than 3 issuers: not shown, anywhere


def _public_sums(cells: list[asyncpg.Record]) -> dict[str, Any]:
    shown = [c for c in cells if c["issuers"] >= 3]
    return {
        "invoices": sum(c["invoices"] for c in shown),
        "amount": f"{sum((c['amount'] for c in shown), Decimal(0)):.2f}",
        "provinces": sorted({c["province"] for c in shown}),
    }


async def test_a_lone_issuer_is_left_out_of_every_public_figure(
    stats_server: ServerProcess, pool: asyncpg.Pool, clients: list[httpx.AsyncClient]
) -> None:
    lone = await issuer_client(stats_server, pool, "6501", clients)  # alone in Xinjiang
    pair = [await issuer_client(stats_server, pool, "5201", clients) for _ in range(2)]  # two in Guizhou
    trio = [await issuer_client(stats_server, pool, "5101", clients) for _ in range(3)]  # three in Sichuan
    odd_price = "7777.77"  # the lone issuer's tell-tale amount: 2 x 7777.77 x 1.13 = 17577.76
    body = invoice_body(lines=[{**invoice_body()["lines"][0], "unit_price": odd_price}])
    for seller in (lone, *pair, *trio):
        answer = await seller.post("/v1/invoices/batch", json={"invoices": [body] * 3})
        assert answer.status_code == 201, answer.text

    async with await _client(stats_server) as visitor:
        figures = (await visitor.get("/v1/stats/public")).json()
        page = (await visitor.get("/stats")).text
    provinces = {p["province"] for p in figures["provinces"]}
    assert "51" in provinces and "65" not in provinces and "52" not in provinces
    assert "新疆" not in page and "Xinjiang" not in page and "贵州" not in page and "四川" in page
    # nothing to subtract: the total, each month and each province are sums of shown cells only
    total = figures["total"]
    for rows in (figures["months"], figures["provinces"]):
        assert sum(r["invoices"] for r in rows) == total["invoices"]
        assert f"{sum(Decimal(r['amount']) for r in rows):.2f}" == total["amount"]
        assert sum(r["returned"] for r in rows) == total["returned"]
    expected = _public_sums(list(await pool.fetch(CELLS_FROM_INVOICES)))
    assert total["invoices"] == expected["invoices"] and total["amount"] == expected["amount"]
    assert sorted(provinces) == expected["provinces"]


# ---------------------------------------------------------------- an issuer's own split


async def test_an_issuer_reads_only_its_own_split(
    stats_server: ServerProcess, pool: asyncpg.Pool, clients: list[httpx.AsyncClient]
) -> None:
    mine, theirs = [await issuer_client(stats_server, pool, "3501", clients) for _ in range(2)]
    assert (await mine.post("/v1/invoices/batch", json={"invoices": [invoice_body()] * 2})).status_code == 201
    assert (await theirs.post("/v1/invoices/batch", json={"invoices": [invoice_body()] * 5})).status_code == 201
    split = (await mine.get("/v1/stats", params={"by": "province"})).json()
    assert split["issuer_id"] == mine.issuer.id  # type: ignore[attr-defined]
    [fujian] = split["provinces"]
    assert fujian["province"] == "35" and fujian["name_zh"] == "福建省" and fujian["invoices"] == 2
    theirs_split = (await theirs.get("/v1/stats", params={"by": "province"})).json()["provinces"]
    assert [p["invoices"] for p in theirs_split] == [5]
    bad = await mine.get("/v1/stats", params={"by": "issuer"})
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/problem+json")
    async with await _client(stats_server) as stranger:
        assert (await stranger.get("/v1/stats", params={"by": "province"})).status_code == 401


# ---------------------------------------------------------------- a flood of public requests


async def test_public_figures_are_computed_once_per_ttl_however_many_ask(
    settings: Settings, output_dir: Path, request: pytest.FixtureRequest, pool: asyncpg.Pool
) -> None:
    srv = ServerProcess(settings, server_log(output_dir, request, "stats-cached"))  # the default TTL, 60 s
    try:
        async with httpx.AsyncClient(base_url=srv.base_url, timeout=60) as visitor:
            answers = await asyncio.gather(*(visitor.get("/v1/stats/public") for _ in range(200)))
            _issuer, key = await new_issuer(pool, "4401")
            headers = {"Authorization": f"Bearer {key}"}
            issued = await visitor.post("/v1/invoices", json=invoice_body(), headers=headers)
            assert issued.status_code == 201
            after = await visitor.get("/v1/stats/public")
            page = await visitor.get("/stats")
    finally:
        srv.stop()
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["generated_at"] for a in [*answers, after]}) == 1  # one read of the rollup for all
    assert after.json() == answers[0].json()
    assert answers[0].headers["cache-control"] == "public, max-age=60"
    assert page.headers["cache-control"] == "public, max-age=60"
    assert "script-src 'self'" in page.headers["content-security-policy"]


# ---------------------------------------------------------------- the command


async def test_stats_command_by_province(
    stats_server: ServerProcess,
    settings: Settings,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _issuer, key = await new_issuer(pool, "4401")
    async with await _client(stats_server, key) as seller:
        assert (await seller.post("/v1/invoices", json=invoice_body())).status_code == 201
    monkeypatch.setenv("DATABASE_URL", settings.database_url or "")
    assert await asyncio.to_thread(main, ["stats", "--by", "province", "--json"]) == 0
    provinces = json.loads(capsys.readouterr().out)["provinces"]
    by_code: dict[str, int] = defaultdict(int)
    for p in provinces:
        by_code[p["province"]] += p["invoices"]
    assert by_code["44"] >= 1 and all(p["name_en"] for p in provinces)
    assert await asyncio.to_thread(main, ["stats", "--by", "province"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("province") and any(line.startswith("44 Guangdong") for line in table)
