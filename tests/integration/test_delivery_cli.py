"""`invoiceloop operator create`, `postal manifests|export` and `stats` against the real database."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import asyncpg
import httpx

from delivery import services as delivery_services
from delivery.manifests import CSV_COLUMNS
from invoiceloop.settings import Settings
from invoicing.numbering import Issuing
from tests.conftest import ServerProcess, new_issuer
from tests.delivery_fixtures import issue_postal
from tests.integration.test_cli_audit import cli


async def test_operator_create_gives_a_working_operator_key(
    settings: Settings, server: ServerProcess, pool: asyncpg.Pool
) -> None:
    out = cli(
        settings,
        "operator",
        "create",
        "--name",
        "华南邮政",
        "--provinces",
        "12,天津",
        "--s10-service",
        "EE",
        "--s10-country",
        "CN",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["provinces"] == ["12"] and created["api_key"].startswith("ilo_")
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        answer = await client.get("/v1/postal/manifests", headers={"Authorization": f"Bearer {created['api_key']}"})
    assert answer.status_code == 200 and answer.json() == {"items": [], "next_cursor": None}
    bad = cli(settings, "operator", "create", "--name", "x", "--provinces", "99", "--s10-service", "SA")
    assert bad.returncode == 2 and "provinces" in bad.stderr and "J, K, S, T or W" in bad.stderr


async def test_postal_export_writes_the_manifest_with_progress(
    settings: Settings, pool: asyncpg.Pool, issuing: Issuing, tmp_path: Path
) -> None:
    async with pool.acquire() as conn:
        op, _ = await delivery_services.create_operator(conn, name="x", provinces=["50"])
    issuer, _ = await new_issuer(pool)
    ids = await issue_postal(pool, issuing, issuer, 7, "50")
    async with pool.acquire() as conn:
        await delivery_services.fulfil_all(conn, ids)
    listing = cli(settings, "postal", "manifests", "--operator", op.id)
    assert listing.returncode == 0 and "7 item(s)" in listing.stdout
    manifest_id = listing.stdout.split()[0]
    target = tmp_path / "m.csv"
    out = cli(settings, "postal", "export", "--operator", op.id, "--manifest", manifest_id, "--output", str(target))
    assert out.returncode == 0, out.stderr
    assert "7/7" in out.stderr and "wrote 7 item(s)" in out.stdout
    with target.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 8
    other = cli(settings, "postal", "export", "--operator", op.id, "--manifest", "nope", "--output", str(target))
    assert other.returncode == 1


async def test_stats_json_counts_pending_without_operator(
    settings: Settings, pool: asyncpg.Pool, issuing: Issuing
) -> None:
    issuer, _ = await new_issuer(pool)
    await issue_postal(pool, issuing, issuer, 2, "54")  # no operator here serves 54
    out = cli(settings, "stats", "--json")
    assert out.returncode == 0, out.stderr
    months = json.loads(out.stdout)["months"]
    assert sum(m["pending_without_operator"] for m in months) >= 2
