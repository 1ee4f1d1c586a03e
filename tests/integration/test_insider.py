"""The insider: someone who can write to the database (SQL alone; the format code is public). Each attack of
issue 11 is carried out here and shown caught by verification, the audit or the witness.

The module runs a deployment of its own (database, data folder, keyring, log key, server), since it rewrites
and rolls back the log."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from invoiceloop.app import load_issuing, log_signer
from invoiceloop.settings import Settings
from invoicing import keyring, services
from invoicing.corrections import CreditRequestLine
from invoicing.numbering import Issuing
from invoicing.repository import Issuer
from invoicing.transparency import LogSigner, sequence
from tests import insider
from tests.conftest import ServerProcess, new_issuer
from tests.deployment import own_deployment
from tests.integration.test_cli_audit import cli, draft
from tests.verification_fixtures import altcha_payload

deployment = own_deployment("insider")


@pytest.fixture(scope="module")
def log_key(deployment: Settings) -> LogSigner:
    return log_signer(deployment)


@pytest.fixture(scope="module")
def own_server(deployment: Settings, output_dir: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(deployment, output_dir / "insider-server.log")
    yield server
    server.stop()


@pytest.fixture
async def seller(own_pool: asyncpg.Pool) -> Issuer:
    issuer, _ = await new_issuer(own_pool)
    return issuer


async def issue(pool: asyncpg.Pool, issuing: Issuing, issuer: Issuer, count: int = 1) -> list[Any]:
    async with pool.acquire() as conn:
        return (await services.issue(conn, issuing, issuer, [draft() for _ in range(count)])).invoices


async def verify(server: ServerProcess, inv: Any, **overrides: str) -> dict[str, Any]:
    body = {"invoice_code": inv.invoice_code, "invoice_number": inv.invoice_number, "issue_date": str(inv.issue_date)}
    body.update(overrides or {"check_code_last6": inv.check_code[-6:]})
    headers = {"X-Forwarded-For": f"10.66.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30, headers=headers) as client:
        answer = await client.post("/v1/verifications", json=body)
        if answer.status_code == 428:  # the amount path asks a new address for a proof of work first
            proof = await asyncio.to_thread(altcha_payload, answer.json()["challenge"])
            answer = await client.post("/v1/verifications", json={**body, "altcha": proof})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def sequence_all(pool: asyncpg.Pool, log_key: LogSigner) -> None:
    while await sequence(pool, log_key):
        pass


async def served_size(server: ServerProcess, at_least: int) -> int:
    """The server's checkpoint size, once it shows at least `at_least` entries (it reads it again every second)."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        for _ in range(100):
            size = int((await client.get("/v1/log/checkpoint")).text.splitlines()[1])
            if size >= at_least:
                return size
            await asyncio.sleep(0.1)
    raise AssertionError(f"the server never showed {at_least} entries")


def witness(deployment: Settings, server: ServerProcess, state: Path, key: str) -> Any:
    return cli(deployment, "log", "witness", "--url", server.base_url, "--state", str(state), "--key", key)


def audit(deployment: Settings, *args: str) -> Any:
    return cli(deployment, "audit", *args)


async def test_a_key_written_in_by_an_insider_proves_nothing(
    deployment: Settings, own_pool: asyncpg.Pool, own_issuing: Issuing, own_server: ServerProcess, seller: Issuer
) -> None:
    """Rewrite an invoice from 226.00 to 1.13, re-hash and re-sign it with an attacker's key, re-seal the records
    after it and move the head: the chain links, but the key is no key of the keyring."""
    first, second, third = await issue(own_pool, own_issuing, seller, 3)
    assert (await verify(own_server, second, total_amount="200.00"))["result"] == "valid"
    forger = insider.attacker()
    async with own_pool.acquire() as conn:
        await insider.rewrite(conn, second.id, forger, total_amount="1.00", total_tax="0.13", total="1.13")
    answer = await verify(own_server, second, total_amount="1.00")
    assert answer["result"] == "tampered" and "not in the keyring" in answer["tamper_reason"]
    assert (await verify(own_server, third))["result"] == "tampered"  # re-sealed after it: the same key
    assert (await verify(own_server, first))["result"] == "valid"
    report = audit(deployment, "--issuer", seller.id)
    assert report.returncode == 1 and f"signed by key {forger.key_id}, which is not in the keyring" in report.stdout
    async with httpx.AsyncClient(base_url=own_server.base_url) as client:
        published = {k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]}
    assert forger.key_id not in published and first.key_id in published


async def test_unvoiding_by_sql_is_caught(
    deployment: Settings, own_pool: asyncpg.Pool, own_issuing: Issuing, own_server: ServerProcess, seller: Issuer
) -> None:
    [inv] = await issue(own_pool, own_issuing, seller)
    async with own_pool.acquire() as conn:
        await services.void(conn, own_issuing, seller, inv.id, "开错了")
    assert (await verify(own_server, inv))["result"] == "voided"
    await own_pool.execute(
        "UPDATE invoices SET status = 'issued', voided_at = NULL, void_reason = NULL WHERE id = $1", uuid.UUID(inv.id)
    )
    answer = await verify(own_server, inv)
    assert answer["result"] == "tampered"
    assert answer["tamper_reason"] == "the status says issued, the chained records say voided"
    report = audit(deployment, "--issuer", seller.id)
    assert report.returncode == 1 and "the status says issued, the chained records say voided" in report.stdout


async def test_a_reversed_status_without_a_credit_note_is_caught(
    deployment: Settings, own_pool: asyncpg.Pool, own_issuing: Issuing, own_server: ServerProcess, seller: Issuer
) -> None:
    [inv] = await issue(own_pool, own_issuing, seller)
    await own_pool.execute("UPDATE invoices SET status = 'reversed' WHERE id = $1", uuid.UUID(inv.id))
    answer = await verify(own_server, inv)
    assert answer["result"] == "tampered" and "the chained records say issued" in answer["tamper_reason"]
    report = audit(deployment, "--issuer", seller.id)
    assert report.returncode == 1 and "the status says reversed, the chained records say issued" in report.stdout


async def test_a_real_credit_note_gives_the_status_and_passes(
    deployment: Settings, own_pool: asyncpg.Pool, own_issuing: Issuing, own_server: ServerProcess, seller: Issuer
) -> None:
    """The control: statuses the chain does give are trusted."""
    whole, part = await issue(own_pool, own_issuing, seller, 2)
    async with own_pool.acquire() as conn:
        await services.credit(conn, own_issuing, seller, whole.id, "退货", None)
        await services.credit(conn, own_issuing, seller, part.id, "部分", [CreditRequestLine(1, Decimal("1"))])
    assert (await verify(own_server, whole))["result"] == "reversed"
    assert (await verify(own_server, part))["result"] == "partially_credited"
    assert audit(deployment, "--issuer", seller.id).returncode == 0


async def test_a_deleted_void_with_a_rewound_head_is_caught_by_the_log(
    tmp_path: Path,
    deployment: Settings,
    own_pool: asyncpg.Pool,
    own_issuing: Issuing,
    own_server: ServerProcess,
    log_key: LogSigner,
    seller: Issuer,
) -> None:
    """Delete the void record and set the series head back: the chain alone looks whole, but the void is in the
    public log, and the audit against a checkpoint kept outside finds it gone."""
    [inv] = await issue(own_pool, own_issuing, seller)
    async with own_pool.acquire() as conn:
        await services.void(conn, own_issuing, seller, inv.id, "开错了")
    await sequence_all(own_pool, log_key)
    await served_size(own_server, 1)
    state = tmp_path / "witness.json"
    assert witness(deployment, own_server, state, log_key.verifier_key).returncode == 0
    async with own_pool.acquire() as conn, conn.transaction():
        void = await conn.fetchrow("SELECT series_id, prev_hash FROM voids WHERE invoice_id = $1", uuid.UUID(inv.id))
        await conn.execute("DELETE FROM voids WHERE invoice_id = $1", uuid.UUID(inv.id))
        await conn.execute(
            "UPDATE series SET last_seq = last_seq - 1, last_hash = $2 WHERE id = $1",
            void["series_id"],
            void["prev_hash"],
        )
        await conn.execute("UPDATE invoices SET status = 'issued', voided_at = NULL WHERE id = $1", uuid.UUID(inv.id))
    assert audit(deployment, "--issuer", seller.id).returncode == 0  # the chain alone cannot tell
    assert (await verify(own_server, inv))["result"] == "valid"  # nor can the record
    report = audit(deployment, "--checkpoint", str(state))
    assert report.returncode == 1 and "is in the log but not in the database (deleted?)" in report.stdout


async def test_a_log_rewritten_to_hide_a_record_fails_the_witness_and_the_audit(
    tmp_path: Path,
    deployment: Settings,
    own_pool: asyncpg.Pool,
    own_issuing: Issuing,
    own_server: ServerProcess,
    log_key: LogSigner,
    seller: Issuer,
) -> None:
    """The strongest insider holds the log key too: they rebuild the log without one record and sign the new
    history. The witness's kept checkpoint cannot be extended to it; the audit's recomputed tree differs."""
    hidden, *_ = await issue(own_pool, own_issuing, seller, 3)
    await sequence_all(own_pool, log_key)
    await served_size(own_server, 3)
    state = tmp_path / "witness.json"
    assert witness(deployment, own_server, state, log_key.verifier_key).returncode == 0
    size = json.loads(state.read_text())["size"]  # what the witness trusts
    async with own_pool.acquire() as conn, conn.transaction():
        rewritten = await insider.rebuild_log_without(conn, hidden.record_hash, log_key)
        await conn.execute("DELETE FROM sms_outbox WHERE invoice_id = $1", uuid.UUID(hidden.id))  # its buyer's text
        await conn.execute("DELETE FROM invoices WHERE id = $1", uuid.UUID(hidden.id))
    await issue(own_pool, own_issuing, seller, 2)  # the log goes on growing past the old size
    await sequence_all(own_pool, log_key)
    await served_size(own_server, rewritten + 2)
    assert rewritten + 2 > size
    out = witness(deployment, own_server, state, log_key.verifier_key)
    assert out.returncode == 1 and "does not extend" in out.stdout, out.stdout + out.stderr
    assert json.loads(state.read_text())["size"] == size  # the witness keeps what it trusted
    report = audit(deployment, "--checkpoint", str(state))
    assert report.returncode == 1 and "the log's tree differs from the kept checkpoint" in report.stdout


async def test_a_rolled_back_log_fails_the_witness(
    tmp_path: Path,
    deployment: Settings,
    own_pool: asyncpg.Pool,
    own_issuing: Issuing,
    own_server: ServerProcess,
    log_key: LogSigner,
    seller: Issuer,
) -> None:
    """A backup of the log restored over it: the log goes back to an older, smaller tree."""
    await issue(own_pool, own_issuing, seller)
    await sequence_all(own_pool, log_key)
    async with own_pool.acquire() as conn:
        backup = await insider.snapshot_log(conn)
    await issue(own_pool, own_issuing, seller, 2)
    await sequence_all(own_pool, log_key)
    state = tmp_path / "witness.json"
    async with own_pool.acquire() as conn:
        latest = await conn.fetchval("SELECT size FROM log_head")
    await served_size(own_server, latest)
    assert witness(deployment, own_server, state, log_key.verifier_key).returncode == 0
    size = json.loads(state.read_text())["size"]
    assert size == latest
    async with own_pool.acquire() as conn, conn.transaction():
        await insider.restore_log(conn, backup)
    for _ in range(50):  # the server reads the checkpoint again within a second
        out = witness(deployment, own_server, state, log_key.verifier_key)
        if out.returncode:
            break
        await asyncio.sleep(0.2)
    assert out.returncode == 1 and "rolled back" in out.stdout
    assert json.loads(state.read_text())["size"] == size
    report = audit(deployment, "--checkpoint", str(state))
    assert report.returncode == 1 and "rolled back" in report.stdout


async def test_a_witness_follows_an_honest_log(
    tmp_path: Path,
    deployment: Settings,
    own_pool: asyncpg.Pool,
    own_issuing: Issuing,
    own_server: ServerProcess,
    log_key: LogSigner,
    seller: Issuer,
) -> None:
    """The control: a log that only grows passes the witness run after run, and a witness pinned to another key
    refuses it."""
    state = tmp_path / "witness.json"
    for _ in range(2):
        await issue(own_pool, own_issuing, seller, 2)
        await sequence_all(own_pool, log_key)
        out = witness(deployment, own_server, state, log_key.verifier_key)
        assert out.returncode == 0 and "consistent" in out.stdout, out.stdout + out.stderr
    other = LogSigner.load(log_key.origin, tmp_path / "other-log-key.pem")
    refused = witness(deployment, own_server, tmp_path / "fresh.json", other.verifier_key)
    assert refused.returncode == 2 and "does not check against the pinned log key" in refused.stderr


async def test_a_revoked_key_stops_vouching_from_its_since_on(
    tmp_path: Path, deployment: Settings, own_pool: asyncpg.Pool, own_server: ServerProcess, seller: Issuer
) -> None:
    """A compromised key: what it signed before `since` stays valid, what it signed after is tampered, with the
    reason, and the audit lists it. It is rotated out first (the active key cannot be revoked)."""
    issuing = load_issuing(deployment)
    [before] = await issue(own_pool, issuing, seller)
    old_key = before.key_id
    [after] = await issue(own_pool, issuing, seller)
    since = after.issued_at.isoformat()
    assert cli(deployment, "keys", "revoke", old_key, "--since", since, "--reason", "x").returncode == 2
    assert cli(deployment, "keys", "rotate").returncode == 0
    out = cli(deployment, "keys", "revoke", old_key, "--since", since, "--reason", "key file leaked")
    assert out.returncode == 0, out.stderr
    for _ in range(50):  # the server reads the keyring again within a second
        answer = await verify(own_server, after)
        if answer["result"] == "tampered":
            break
        await asyncio.sleep(0.1)
    assert answer["result"] == "tampered" and "revoked since" in answer["tamper_reason"]
    assert "key file leaked" in answer["tamper_reason"]
    assert (await verify(own_server, before))["result"] == "valid"
    report = audit(deployment, "--issuer", seller.id)
    assert report.returncode == 1 and report.stdout.count("revoked since") == 1, report.stdout
    ring = keyring.load(deployment.keyring)
    assert ring.keys[old_key].revoked_since is not None and ring.active != old_key
