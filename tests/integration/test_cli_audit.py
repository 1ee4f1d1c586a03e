"""The command line against the real database: migrate, issuers and keys, key rotation, audit."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from invoiceloop.app import load_issuing
from invoiceloop.settings import Settings
from invoicing import db, keyring, keys, numbering, repository, rollup_repository, services, sms_outbox, validation
from invoicing.model import DEFAULT_TAX_RATES
from invoicing.numbering import Issuing
from tests.conftest import ROOT, _env, new_issuer, valid_uscc
from tests.delivery_fixtures import wait_until
from tests.samples import invoice_body


def cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoiceloop", *args],
        env=_env(settings, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def draft(**kw: Any) -> numbering.Draft:
    return numbering.draft_of(validation.invoice_request(invoice_body(**kw), DEFAULT_TAX_RATES))


async def test_migrate_applies_once_and_refuses_a_changed_file(
    settings: Settings, tmp_path: Path, server_url: str
) -> None:
    name = f"invoiceloop_mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = settings.require_database_url().rsplit("/", 1)[0] + "/" + name
    try:
        shutil.copytree(db.migrations_dir(), tmp_path / "m")
        first = await db.migrate_url(url, tmp_path / "m")
        assert first.applied == [p.name for p in db.migration_files(tmp_path / "m")]
        assert (await db.migrate_url(url, tmp_path / "m")).applied == []
        changed = tmp_path / "m" / "0001_issuing_core.sql"
        changed.write_text(changed.read_text() + "\n-- edited\n")
        with pytest.raises(db.MigrationChanged):
            await db.migrate_url(url, tmp_path / "m")
        out = cli(Settings(database_url=url, data_dir=tmp_path), "migrate")
        assert out.returncode == 0 and "already applied" in out.stdout
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# What today's issuing writes to before migration 0006 creates the real table; `upgrade` drops it first.
LEGACY_LOG_QUEUE = "CREATE TABLE log_queue (id bigserial, record_hash char(64))"
# And the buyer's mail outbox, before 0008 creates it.
LEGACY_MAIL_OUTBOX = "CREATE TABLE mail_outbox (invoice_id uuid, kind text, email text)"
# And the webhook tables the issuing statement reads and writes, before 0011 creates them.
LEGACY_WEBHOOKS = (
    "CREATE TABLE webhook_endpoints (issuer_id uuid, events text[], disabled_at timestamptz)",
    "CREATE TABLE webhook_events (issuer_id uuid, type text, data jsonb, dedup_key text UNIQUE)",
)
# And the closed-loop rollup, before 0012 creates it (and fills it from the invoices).
LEGACY_LOOP_ROLLUPS = """
CREATE TABLE loop_rollups (issuer_id uuid, month date, province char(2), series_id bigint, issued int DEFAULT 0,
  amount numeric DEFAULT 0, voided int DEFAULT 0, voided_amount numeric DEFAULT 0, credit_notes int DEFAULT 0,
  credited numeric DEFAULT 0, postal int DEFAULT 0, verified int DEFAULT 0, mismatches int DEFAULT 0,
  delivered int DEFAULT 0, returned int DEFAULT 0, PRIMARY KEY (issuer_id, month, province, series_id))"""


async def upgrade(pool: asyncpg.Pool, url: str) -> db.MigrationResult:
    """Apply the remaining migrations to a `database_before` database."""
    if not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE name LIKE '0006%')"):
        await pool.execute("DROP TABLE IF EXISTS log_queue")
    if not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE name LIKE '0008%')"):
        await pool.execute("DROP TABLE IF EXISTS mail_outbox")
    if not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE name LIKE '0011%')"):
        await pool.execute("DROP TABLE IF EXISTS webhook_endpoints, webhook_events")
    if not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE name LIKE '0012%')"):
        await pool.execute("DROP TABLE IF EXISTS loop_rollups")
    return await db.migrate_url(url)


@contextlib.asynccontextmanager
async def database_before(
    migration: str, settings: Settings, tmp_path: Path, server_url: str
) -> AsyncIterator[tuple[str, asyncpg.Pool, Issuing, Any]]:
    """A throwaway database migrated up to (not including) `migration`, with an issuer: (url, pool, issuing,
    issuer); dropped afterwards."""
    from invoiceloop.app import load_issuing

    name = f"invoiceloop_up_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = settings.require_database_url().rsplit("/", 1)[0] + "/" + name
    try:
        (tmp_path / "m").mkdir()
        for path in db.migration_files():
            if path.name < migration:
                shutil.copy(path, tmp_path / "m")
        await db.migrate_url(url, tmp_path / "m")
        pool = await db.create_pool(url, max_size=2)
        try:
            issuing = load_issuing(Settings(database_url=url, data_dir=tmp_path, check_code_secret="s"))
            if migration <= "0006":  # today's issuing writes to the log queue; keys were a table then
                signer = issuing.signers.current()
                await pool.execute(LEGACY_LOG_QUEUE)
                await pool.execute("INSERT INTO signing_keys VALUES ($1, $2)", signer.key_id, signer.public_raw)
            if migration <= "0008":
                await pool.execute(LEGACY_MAIL_OUTBOX)
            if migration <= "0011":
                for table in LEGACY_WEBHOOKS:
                    await pool.execute(table)
            if migration <= "0010":  # the buyer's texts are kinds 0010 lets into sms_outbox: not written before
                issuing = dataclasses.replace(issuing, texts=None)
            if migration <= "0012":
                await pool.execute(LEGACY_LOOP_ROLLUPS)
            issuer, _ = await new_issuer(pool)
            yield url, pool, issuing, issuer
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_upgrade_moves_verification_counts_out_of_invoices(
    settings: Settings, tmp_path: Path, server_url: str
) -> None:
    """0004 on a database that has counted verifications: the counts arrive in invoice_counts, the old
    columns are gone, and the invoice reads back with them."""
    async with database_before("0004", settings, tmp_path, server_url) as (url, pool, issuing, issuer):
        async with pool.acquire() as conn:
            seen, unseen = (await services.issue(conn, issuing, issuer, [draft(), draft()])).invoices
            await conn.execute(
                "UPDATE invoices SET times_verified = 3, mismatches = 2, "
                "first_verified_at = '2026-11-27T01:02:03Z' WHERE id = $1",
                uuid.UUID(seen.id),
            )
        assert (await upgrade(pool, url)).applied[0] == "0004_invoice_counts.sql"
        async with pool.acquire() as conn:
            rows = await conn.fetch("SELECT invoice_id::text, times_verified, mismatches FROM invoice_counts")
            assert [tuple(r) for r in rows] == [(seen.id, 3, 2)]
            columns = await conn.fetchval(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = "
                "'invoices' AND column_name IN ('times_verified', 'mismatches')"
            )
            assert columns == 0
            seen_row = await repository.get_invoice_row(conn, issuer.id, seen.id)
            unseen_row = await repository.get_invoice_row(conn, issuer.id, unseen.id)
            assert seen_row is not None and unseen_row is not None
            assert seen_row["times_verified"] == 3 and unseen_row["times_verified"] == 0
            assert seen_row["first_verified_at"].isoformat().startswith("2026-11-27T01:02:03")


async def test_upgrade_moves_delivery_texts_into_the_one_outbox(
    settings: Settings, tmp_path: Path, server_url: str
) -> None:
    """0005 on a database with delivery texts sent, given up and still to send: each arrives in sms_outbox
    as `delivered` with its state, delivery_sms is gone, and a second delivered text of an invoice is refused."""
    async with database_before("0005", settings, tmp_path, server_url) as (url, pool, issuing, issuer):
        async with pool.acquire() as conn:
            invoices = (await services.issue(conn, issuing, issuer, [draft(delivery="postal")] * 3)).invoices
            orders = [
                await conn.fetchval("SELECT id FROM delivery_orders WHERE invoice_id = $1", uuid.UUID(i.id))
                for i in invoices
            ]
            for order, (attempts, sent) in zip(orders, [(1, True), (5, False), (0, False)], strict=True):
                await conn.execute(
                    "INSERT INTO delivery_sms (order_id, phone, body, attempts, sent_at, provider_id) "
                    "VALUES ($1, '+8613800138000', 'delivered', $2, CASE WHEN $3 THEN now() END, "
                    "CASE WHEN $3 THEN 'SM1' END)",
                    order,
                    attempts,
                    sent,
                )
        assert (await upgrade(pool, url)).applied[0] == "0005_one_sms_outbox.sql"
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT invoice_id::text, status, attempts, provider_id FROM sms_outbox "
                "WHERE kind = 'delivered' ORDER BY id"
            )
            assert [tuple(r) for r in rows] == [
                (invoices[0].id, "sent", 1, "SM1"),
                (invoices[1].id, "failed", 5, None),
                (invoices[2].id, "pending", 0, None),
            ]
            assert await conn.fetchval("SELECT to_regclass('delivery_sms')") is None
            again = await sms_outbox.add(conn, "delivered", [(uuid.UUID(invoices[2].id), "+8613800138000", "x")])
            assert again == []


async def test_0010_adds_the_buyers_text_kinds_to_whatever_kinds_there_are(
    settings: Settings, tmp_path: Path, server_url: str
) -> None:
    """A migration before 0010 that let a kind of its own into sms_outbox (as the lottery's may, in either form
    PostgreSQL prints a check in) keeps it: 0010 adds its kinds to the check as it finds it."""
    async with database_before("0010", settings, tmp_path, server_url) as (url, pool, _issuing, issuer):
        await pool.execute(
            "ALTER TABLE sms_outbox DROP CONSTRAINT sms_outbox_kind_check; ALTER TABLE sms_outbox ADD CONSTRAINT "
            "sms_outbox_kind_check CHECK (kind IN ('receipt', 'buyer_notice', 'delivered', 'lottery_win'))"
        )
        assert (await upgrade(pool, url)).applied[0] == "0010_buyer_texts.sql"
        check = await pool.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'sms_outbox_kind_check'"
        )
        kinds = {"receipt", "buyer_notice", "delivered", "lottery_win", "invoice", "void", "credit_note"}
        assert set(check.split("{")[1].split("}")[0].split(",")) == kinds
        async with pool.acquire() as conn:
            today = load_issuing(Settings(database_url=url, data_dir=tmp_path, check_code_secret="s"))
            [inv] = (await services.issue(conn, today, issuer, [draft()])).invoices
            rows = await conn.fetch("SELECT kind FROM sms_outbox WHERE invoice_id = $1", uuid.UUID(inv.id))
        assert [r["kind"] for r in rows] == ["invoice"]


async def test_upgrade_queues_every_record_for_the_log_in_chain_order(
    settings: Settings, tmp_path: Path, server_url: str
) -> None:
    """0006 on a database with invoices, a credit note and a void: every record is queued for the log, series by
    series in chain order, and the key table the keyring replaces is gone."""
    async with database_before("0006", settings, tmp_path, server_url) as (url, pool, issuing, issuer):
        async with pool.acquire() as conn:
            first, second, third = (await services.issue(conn, issuing, issuer, [draft()] * 3)).invoices
            [note] = (await services.credit(conn, issuing, issuer, first.id, "退货", None)).invoices
            await services.void(conn, issuing, issuer, second.id, "开错了")
            chain = await conn.fetch(
                "SELECT record_hash FROM (SELECT series_id, chain_seq, record_hash FROM invoices UNION ALL "
                "SELECT series_id, chain_seq, record_hash FROM voids) r ORDER BY series_id, chain_seq"
            )
        assert (await upgrade(pool, url)).applied[0] == "0006_keyring_and_transparency_log.sql"
        queued = [r["record_hash"] for r in await pool.fetch("SELECT record_hash FROM log_queue ORDER BY id")]
        assert queued == [r["record_hash"] for r in chain] and len(queued) == 5
        assert note.record_hash in queued and third.record_hash in queued
        assert await pool.fetchval("SELECT to_regclass('signing_keys')") is None


async def test_upgrade_fills_the_loop_rollup_from_the_invoices(
    settings: Settings, tmp_path: Path, server_url: str
) -> None:
    """0012 on a database with invoices, postal ones delivered and returned, a credit note, a void, verifications
    and mismatches: the rollup it fills equals the scan of the invoices, and the figures read from it."""
    async with database_before("0012", settings, tmp_path, server_url) as (url, pool, issuing, issuer):
        async with pool.acquire() as conn:
            first, second, third, _ = (await services.issue(conn, issuing, issuer, [draft()] * 4)).invoices
            posted = (await services.issue(conn, issuing, issuer, [draft(delivery="postal")] * 3)).invoices
            await services.credit(conn, issuing, issuer, first.id, "退货", None)
            await services.void(conn, issuing, issuer, second.id, "开错了")
            await conn.execute(
                "INSERT INTO invoice_counts (invoice_id, times_verified, mismatches) VALUES ($1, 2, 1), ($2, 0, 3)",
                uuid.UUID(third.id),
                uuid.UUID(first.id),
            )
            for inv, status in zip(posted, ("delivered", "returned_to_sender"), strict=False):
                await conn.execute(
                    "UPDATE delivery_orders SET status = $2 WHERE invoice_id = $1", uuid.UUID(inv.id), status
                )
        assert (await upgrade(pool, url)).applied[0] == "0012_loop_rollups.sql"
        async with pool.acquire() as conn:
            kept = sorted(tuple(r.values()) for r in await rollup_repository.rollup_rows(conn))
            assert kept == sorted(tuple(r.values()) for r in await rollup_repository.direct_rows(conn))
            [month] = await repository.stats(conn, issuer.id)
        assert (month["invoices"], month["voided"], month["credit_notes"], month["verified"]) == (7, 1, 1, 1)
        assert (month["postal"], month["delivered"], month["returned"], month["mismatches"]) == (3, 1, 1, 4)


def test_issuer_create_and_keys(settings: Settings) -> None:
    out = cli(
        settings,
        "issuer",
        "create",
        "--name",
        "深圳样例有限公司",
        "--tax-id",
        valid_uscc("440301"),
        "--region",
        "4403",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["api_key"].startswith("ilk_") and uuid.UUID(created["issuer_id"])
    bad = cli(settings, "issuer", "create", "--name", "x", "--tax-id", "91440101MA5CXKYQ1A", "--region", "4401")
    assert bad.returncode == 2 and "unified social credit code" in bad.stderr
    bad_region = cli(settings, "issuer", "create", "--name", "x", "--tax-id", valid_uscc(), "--region", "9901")
    assert bad_region.returncode == 2 and "--region" in bad_region.stderr
    new = json.loads(cli(settings, "issuer", "key", "--issuer", created["issuer_id"], "--json").stdout)
    assert new["api_key"] != created["api_key"]
    revoked = cli(
        settings, "issuer", "key", "--issuer", created["issuer_id"], "--revoke", new["api_key"][:12], "--json"
    )
    assert json.loads(revoked.stdout)["revoked"] == 1
    assert created["api_key"] not in out.stderr  # the key is printed once, to stdout only


async def test_key_rotation_keeps_old_invoices_verifiable(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A deployment of its own (data folder, keyring): rotate, and the process that issues follows without a
    restart; the audit trusts both keys, from the keyring."""
    own = Settings(database_url=settings.database_url, data_dir=tmp_path, check_code_secret=settings.check_code_secret)
    issuing = load_issuing(own)
    issuer, _ = await new_issuer(pool)
    async with pool.acquire() as conn:
        [old] = (await services.issue(conn, issuing, issuer, [draft()])).invoices
    out = cli(own, "keys", "rotate")
    assert out.returncode == 0, out.stderr
    new_key = keys.load_or_create(own.key_file)
    assert new_key.key_id != old.key_id and new_key.key_id in out.stdout
    assert (own.key_file.stat().st_mode & 0o777) == 0o600

    async def signs_with_the_new_key() -> bool:
        return issuing.signers.current().key_id == new_key.key_id

    await wait_until(signs_with_the_new_key, timeout_s=10, every_s=0.1)
    async with pool.acquire() as conn:
        [new] = (await services.issue(conn, issuing, issuer, [draft()])).invoices
    assert new.key_id == new_key.key_id
    assert {old.key_id, new.key_id} <= keyring.load(own.keyring).keys.keys()
    report = cli(own, "audit", "--issuer", issuer.id)
    assert report.returncode == 0 and "audited 2 record(s) in 1 series: OK" in report.stdout, report.stdout


async def test_stats_by_month(settings: Settings, pool: asyncpg.Pool, issuing: Issuing) -> None:
    issuer, _ = await new_issuer(pool)
    async with pool.acquire() as conn:
        await services.issue(conn, issuing, issuer, [draft(), draft()])
    out = cli(settings, "stats", "--json")
    assert out.returncode == 0, out.stderr
    months = json.loads(out.stdout)["months"]
    assert months and months[-1]["invoices"] >= 2 and {"verified_share", "delivered_share"} <= months[-1].keys()
    table = cli(settings, "stats")
    assert table.returncode == 0 and "month" in table.stdout.splitlines()[0]


async def _tamper_and_audit(settings: Settings, pool: asyncpg.Pool, issuing: Issuing, *sql: str) -> str:
    issuer, _ = await new_issuer(pool)
    async with pool.acquire() as conn:
        invoices = (await services.issue(conn, issuing, issuer, [draft() for _ in range(5)])).invoices
    clean = cli(settings, "audit", "--issuer", issuer.id)
    assert clean.returncode == 0 and "audited 5 record(s) in 1 series: OK" in clean.stdout
    for statement in sql:
        await pool.execute(statement, uuid.UUID(invoices[2].id))
    report = cli(settings, "audit", "--issuer", issuer.id)
    assert report.returncode == 1, report.stdout
    return report.stdout


async def test_audit_catches_an_edited_row(settings: Settings, pool: asyncpg.Pool, issuing: Issuing) -> None:
    out = await _tamper_and_audit(
        settings,
        pool,
        issuing,
        """
        UPDATE invoices SET content = jsonb_set(content, '{total}', '"1.00"') WHERE id = $1""",
    )
    assert "#3" in out and "does not match its record hash" in out


async def test_audit_catches_edited_columns(settings: Settings, pool: asyncpg.Pool, issuing: Issuing) -> None:
    out = await _tamper_and_audit(settings, pool, issuing, "UPDATE invoices SET total = 1 WHERE id = $1")
    assert "#3" in out and "row columns differ" in out


async def test_audit_catches_a_deleted_row(settings: Settings, pool: asyncpg.Pool, issuing: Issuing) -> None:
    out = await _tamper_and_audit(
        settings,
        pool,
        issuing,
        "DELETE FROM sms_outbox WHERE invoice_id = $1",  # the buyer's text refers to it: the insider removes both
        "DELETE FROM invoices WHERE id = $1",
    )
    assert "#3" in out and "record missing from the chain" in out and "#4" in out


async def test_audit_catches_a_reordered_chain(settings: Settings, pool: asyncpg.Pool, issuing: Issuing) -> None:
    out = await _tamper_and_audit(
        settings,
        pool,
        issuing,  # swap records #3 and #4 through a free place
        "UPDATE invoices SET chain_seq = -1 WHERE id = $1",
        "UPDATE invoices SET chain_seq = 3 WHERE chain_seq = 4 AND series_id = "
        "(SELECT series_id FROM invoices WHERE id = $1)",
        "UPDATE invoices SET chain_seq = 4 WHERE id = $1",
    )
    assert "does not link to the record before it" in out


async def test_audit_catches_a_forged_signature(settings: Settings, pool: asyncpg.Pool, issuing: Issuing) -> None:
    forged = keys.Signer.from_private(
        __import__("cryptography.hazmat.primitives.asymmetric.ed25519", fromlist=["_"]).Ed25519PrivateKey.generate()
    )
    sig = forged.sign("IL1|anything")
    out = await _tamper_and_audit(settings, pool, issuing, f"UPDATE invoices SET signature = '{sig}' WHERE id = $1")
    assert "#3" in out and "signature does not verify" in out


async def test_audit_sees_voids_in_the_chain(settings: Settings, pool: asyncpg.Pool, issuing: Issuing) -> None:
    issuer, _ = await new_issuer(pool)
    async with pool.acquire() as conn:
        [a, _] = (await services.issue(conn, issuing, issuer, [draft(), draft()])).invoices
        await services.void(conn, issuing, issuer, a.id, "wrong buyer")
        [c] = (await services.issue(conn, issuing, issuer, [draft()])).invoices
        void_hash = await conn.fetchval("SELECT record_hash FROM voids WHERE invoice_id = $1", uuid.UUID(a.id))
    assert c.prev_hash == void_hash and c.invoice_number == "00000003"
    assert cli(settings, "audit", "--issuer", issuer.id).returncode == 0
    await pool.execute(
        "UPDATE voids SET content = jsonb_set(content, '{reason}', '\"x\"') WHERE invoice_id = $1", uuid.UUID(a.id)
    )
    out = cli(settings, "audit", "--issuer", issuer.id)
    assert out.returncode == 1 and "void" in out.stdout
