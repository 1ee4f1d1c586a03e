"""The audit at scale: chains cut into segments that are checked apart (a link, a gap or a void across a segment
boundary is still caught), run in parallel processes with a progress bar on a terminal and its rate; and the
incremental audit since a kept checkpoint, which checks what was added and refuses a log that does not extend
the checkpoint. On a deployment of its own (it tampers)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from invoiceloop.app import log_signer
from invoiceloop.settings import Settings
from invoicing import chain_repository, keyring, services
from invoicing.audit import check_segment, plan
from invoicing.numbering import Issuing
from invoicing.repository import Issuer
from invoicing.transparency import LogSigner, sequence
from tests import insider
from tests.conftest import ROOT, _env, new_issuer
from tests.deployment import own_deployment
from tests.integration.test_cli_audit import cli, draft

deployment = own_deployment("audit")


@pytest.fixture
async def seller(own_pool: asyncpg.Pool) -> Issuer:
    issuer, _ = await new_issuer(own_pool)
    return issuer


async def issue(pool: asyncpg.Pool, issuing: Issuing, issuer: Issuer, count: int) -> list[Any]:
    async with pool.acquire() as conn:
        return (await services.issue(conn, issuing, issuer, [draft() for _ in range(count)])).invoices


async def findings_in_segments(pool: asyncpg.Pool, deployment: Settings, issuer: Issuer, size: int) -> list[str]:
    """The audit of one issuer's chains cut into segments of `size` places, each checked on its own."""
    ring = keyring.load(deployment.keyring)
    async with pool.acquire() as conn:
        segments = plan(await chain_repository.series_to_audit(conn, issuer.id), size)
        found = []
        for seg in segments:
            found += [str(f) for f in (await check_segment(conn, ring, seg))[1]]
    return found


async def test_segments_catch_what_crosses_their_boundaries(
    own_pool: asyncpg.Pool, own_issuing: Issuing, deployment: Settings, seller: Issuer
) -> None:
    invoices = await issue(own_pool, own_issuing, seller, 7)
    async with own_pool.acquire() as conn:
        await services.void(conn, own_issuing, seller, invoices[1].id, "开错了")  # chain place 8, far from 2
    assert await findings_in_segments(own_pool, deployment, seller, 3) == []
    await own_pool.execute(
        "UPDATE invoices SET status = 'issued', voided_at = NULL WHERE id = $1", uuid.UUID(invoices[1].id)
    )
    await own_pool.execute(  # the record that opens the second segment, edited
        "UPDATE invoices SET content = jsonb_set(content, '{remarks}', '\"x\"') WHERE id = $1",
        uuid.UUID(invoices[3].id),
    )
    found = await findings_in_segments(own_pool, deployment, seller, 3)
    assert any("#2" in f and "the chained records say voided" in f for f in found), found
    assert any("#4" in f and "does not match its record hash" in f for f in found), found


async def test_the_parallel_audit_finds_what_the_single_one_does(
    own_pool: asyncpg.Pool, own_issuing: Issuing, deployment: Settings, seller: Issuer
) -> None:
    """`invoiceloop audit` in two processes reports the findings the in-process audit reports, and its rate."""
    invoices = await issue(own_pool, own_issuing, seller, 5)
    await own_pool.execute("UPDATE invoices SET status = 'reversed' WHERE id = $1", uuid.UUID(invoices[0].id))
    await own_pool.execute("DELETE FROM sms_outbox WHERE invoice_id = $1", uuid.UUID(invoices[4].id))  # its text
    await own_pool.execute("DELETE FROM invoices WHERE id = $1", uuid.UUID(invoices[4].id))  # the last: head left
    expected = await findings_in_segments(own_pool, deployment, seller, 2)
    out = cli(deployment, "audit", "--issuer", seller.id, "--processes", "2")
    assert out.returncode == 1, out.stdout + out.stderr
    reported = [line.removeprefix("FAIL ") for line in out.stdout.splitlines() if line.startswith("FAIL ")]
    assert set(expected) <= set(reported)  # and the numbering check, which is not per segment
    assert any("the chained records say issued" in f for f in reported)
    assert any("record missing from the chain" in f for f in reported) and any("head" in f for f in reported)
    assert "records/s, 2 process(es)" in out.stdout


def test_the_progress_bar_shows_on_a_terminal(deployment: Settings) -> None:
    """On a terminal the audit draws a progress bar (tqdm) on stderr; piped, it does not."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 wide
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoiceloop", "audit", "--processes", "1"],
        env=_env(deployment),
        cwd=ROOT,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(60)
    os.close(controller)
    assert b"100%|" in seen and b"records/s]" in seen, seen[-500:]  # tqdm's bar, unit and rate


async def test_the_incremental_audit_checks_what_came_after_the_checkpoint(
    tmp_path: Path, own_pool: asyncpg.Pool, own_issuing: Issuing, deployment: Settings, seller: Issuer
) -> None:
    signer: LogSigner = log_signer(deployment)
    old = await issue(own_pool, own_issuing, seller, 3)
    while await sequence(own_pool, signer):
        pass
    state = tmp_path / "kept.note"
    state.write_text(await own_pool.fetchval("SELECT checkpoint FROM log_head"))
    key = signer.verifier_key
    new = await issue(own_pool, own_issuing, seller, 4)
    await sequence(own_pool, signer, 2)  # two logged, the other two still queued
    quick = cli(deployment, "audit", "--since", str(state), "--log-key", key)
    assert quick.returncode == 0, quick.stdout + quick.stderr
    assert "audited 4 record(s) added since the checkpoint" in quick.stdout  # 2 logged + 2 queued, not the old
    await own_pool.execute(  # an old record edited: the incremental audit does not read it (the full one does)
        "UPDATE invoices SET content = jsonb_set(content, '{remarks}', '\"old\"') WHERE id = $1", uuid.UUID(old[0].id)
    )
    assert cli(deployment, "audit", "--since", str(state), "--log-key", key).returncode == 0
    await own_pool.execute(
        "UPDATE invoices SET content = jsonb_set(content, '{remarks}', '\"new\"') WHERE id = $1", uuid.UUID(new[3].id)
    )
    edited = cli(deployment, "audit", "--since", str(state), "--log-key", key)
    assert edited.returncode == 1 and "does not match its record hash" in edited.stdout
    async with own_pool.acquire() as conn, conn.transaction():
        await insider.rebuild_log_without(conn, old[1].record_hash, signer)
    rewritten = cli(deployment, "audit", "--since", str(state), "--log-key", key)
    assert rewritten.returncode == 1 and "stored tree differs from the kept checkpoint" in rewritten.stdout
