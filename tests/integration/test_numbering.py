"""Numbering is gapless and never repeats: under concurrency, with failing requests mid-stream,
and with connections killed mid-transaction (pg_terminate_backend)."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import uuid

import asyncpg
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from invoiceloop.settings import Settings
from invoicing import keyring, numbering, services, validation
from invoicing.audit import audit
from invoicing.errors import ValidationFailed
from invoicing.model import DEFAULT_TAX_RATES
from invoicing.numbering import WRITE_PIECE, Issuing
from invoicing.repository import Issuer
from tests.conftest import new_issuer
from tests.samples import invoice_body


def draft(series: str = "default", **kw: object) -> numbering.Draft:
    return numbering.draft_of(validation.invoice_request(invoice_body(series=series, **kw), DEFAULT_TAX_RATES))


async def numbers_of(pool: asyncpg.Pool, issuer: Issuer) -> dict[str, list[int]]:
    rows = await pool.fetch(
        "SELECT invoice_code, invoice_number FROM invoices WHERE issuer_id = $1", uuid.UUID(issuer.id)
    )
    out: dict[str, list[int]] = {}
    for r in rows:
        out.setdefault(r["invoice_code"], []).append(int(r["invoice_number"]))
    return {k: sorted(v) for k, v in out.items()}


def assert_gapless(numbers: list[int]) -> None:
    assert numbers == list(range(1, len(numbers) + 1)), "numbers must be exactly 1..n"


async def test_20_tasks_x_50_issues_on_one_series_are_consecutive(pool: asyncpg.Pool, issuing: Issuing) -> None:
    issuer, _ = await new_issuer(pool)

    async def worker() -> list[str]:
        got = []
        for _ in range(50):
            async with pool.acquire() as conn:
                issued = await services.issue(conn, issuing, issuer, [draft()])
            got.append(issued.invoices[0].invoice_number)
        return got

    results = await asyncio.gather(*(worker() for _ in range(20)))
    flat = [int(n) for r in results for n in r]
    assert len(flat) == len(set(flat)) == 1000
    [numbers] = (await numbers_of(pool, issuer)).values()
    assert_gapless(numbers)
    assert len(numbers) == 1000


async def test_failures_mid_stream_leave_no_gap(pool: asyncpg.Pool, issuing: Issuing) -> None:
    """Some requests fail validation, some transactions fail after taking a number (a constraint
    violation on insert), some connections are killed mid-transaction: numbers stay 1..n."""
    issuer, _ = await new_issuer(pool)
    killed = failed = 0
    killer = await pool.acquire()  # its own connection: pool connections may all be waiting on the lock
    gate = asyncio.Semaphore(20)

    async def one(i: int) -> None:
        async with gate:
            await one_inner(i)

    async def one_inner(i: int) -> None:
        nonlocal killed, failed
        roll = random.random()
        if roll < 0.15:  # invalid: refused before any number is taken
            with pytest.raises(ValidationFailed):
                validation.invoice_request(invoice_body(lines=0), DEFAULT_TAX_RATES)
            return
        async with pool.acquire() as conn:
            if roll < 0.35:  # killed while holding the series lock, mid-transaction
                pid = conn.get_server_pid()
                try:
                    async with conn.transaction():
                        await conn.fetchrow(
                            "UPDATE series SET last_number = last_number + 1 "
                            "WHERE issuer_id = $1 RETURNING last_number",
                            uuid.UUID(issuer.id),
                        )
                        await killer.execute("SELECT pg_terminate_backend($1)", pid)
                        await conn.execute("SELECT pg_sleep(0.01)")
                except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError, OSError):
                    killed += 1
                return
            if roll < 0.45:  # fails half-way: the number is taken, then the insert breaks
                try:
                    async with conn.transaction():
                        await services.issue(conn, issuing, issuer, [draft()])
                        await conn.execute("SELECT 1/0")
                except asyncpg.DivisionByZeroError:
                    failed += 1
                return
            await services.issue(conn, issuing, issuer, [draft()])

    try:
        await one(0)  # opens the series
        await asyncio.gather(*(one(i) for i in range(300)))
    finally:
        await pool.release(killer)
    assert killed > 0 and failed > 0
    for numbers in (await numbers_of(pool, issuer)).values():
        assert_gapless(numbers)


async def test_killed_connection_during_issue_gives_number_back(pool: asyncpg.Pool, issuing: Issuing) -> None:
    """The real issuing path is stopped after it took a number (its insert waits on a row lock we
    hold), its backend is terminated: the number comes back and the next issue takes it."""
    issuer, _ = await new_issuer(pool)
    async with pool.acquire() as conn:
        await services.issue(conn, issuing, issuer, [draft()])
    blocker = await pool.acquire()
    victim = await pool.acquire()
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT 1 FROM issuers WHERE id = $1 FOR UPDATE", uuid.UUID(issuer.id))
        task = asyncio.create_task(services.issue(victim, issuing, issuer, [draft()]))
        pid = victim.get_server_pid()
        for _ in range(100):  # wait until the victim holds the series row and waits on our lock
            if await pool.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid):
                break
            await asyncio.sleep(0.02)
        assert await pool.fetchval("SELECT last_number FROM series WHERE issuer_id = $1", uuid.UUID(issuer.id)) == 1
        await pool.execute("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
            await task
        await tx.rollback()
    finally:
        await pool.release(blocker)
        await pool.release(victim)
    async with pool.acquire() as conn:
        issued = await services.issue(conn, issuing, issuer, [draft()])
    assert issued.invoices[0].invoice_number == "00000002"
    [numbers] = (await numbers_of(pool, issuer)).values()
    assert_gapless(numbers)


async def test_series_are_independent_and_concurrent(pool: asyncpg.Pool, issuing: Issuing) -> None:
    issuer, _ = await new_issuer(pool)
    labels = [f"till-{i}" for i in range(8)]

    async def one(label: str) -> None:
        async with pool.acquire() as conn:
            await services.issue(conn, issuing, issuer, [draft(series=label)])

    await asyncio.gather(*(one(random.choice(labels)) for _ in range(200)))
    by_code = await numbers_of(pool, issuer)
    assert len(by_code) == len(labels)
    for numbers in by_code.values():
        assert_gapless(numbers)
    codes = sorted(by_code)
    assert len(set(codes)) == len(labels) and all(c.startswith("4401") for c in codes)


async def test_batch_of_1000_numbered_in_order(pool: asyncpg.Pool, issuing: Issuing) -> None:
    issuer, _ = await new_issuer(pool)
    drafts = [draft(remarks=f"#{i}") for i in range(1000)]
    async with pool.acquire() as conn:
        issued = await services.issue(conn, issuing, issuer, drafts)
    assert [inv.remarks for inv in issued.invoices] == [f"#{i}" for i in range(1000)]
    assert [int(inv.invoice_number) for inv in issued.invoices] == list(range(1, 1001))
    chain = [inv.prev_hash for inv in issued.invoices[1:]]
    assert chain == [inv.record_hash for inv in issued.invoices[:-1]]


async def test_a_batch_written_in_pieces_chains_across_them(
    pool: asyncpg.Pool, issuing: Issuing, settings: Settings
) -> None:
    """A batch of more than two pieces (`WRITE_PIECE`) over three series, interleaved: each series numbered in the
    order given and chained across the pieces' boundaries, every hash, link and signature good by the audit, and
    each stored record is the content the answer states."""
    issuer, _ = await new_issuer(pool)
    labels = ["abc"[i * i % 5 % 3] for i in range(2 * WRITE_PIECE + 57)]
    async with pool.acquire() as conn:
        issued = await services.issue(
            conn, issuing, issuer, [draft(series=label, remarks=f"#{i}") for i, label in enumerate(labels)]
        )
        rows = await conn.fetch(
            """SELECT s.label, i.invoice_number, i.chain_seq, i.content::text AS content, i.prev_hash, i.record_hash
                 FROM invoices i JOIN series s ON s.id = i.series_id WHERE i.issuer_id = $1
                ORDER BY s.label, i.chain_seq""",
            uuid.UUID(issuer.id),
        )
        report = await audit(conn, keyring.load(settings.keyring), issuer.id)
    assert report.records == len(labels) and report.findings == []
    for label in "abc":
        given = [f"#{i}" for i, one in enumerate(labels) if one == label]
        stored = [r for r in rows if r["label"] == label]
        assert [json.loads(r["content"])["remarks"] for r in stored] == given
        assert (
            [int(r["invoice_number"]) for r in stored]
            == [r["chain_seq"] for r in stored]
            == list(range(1, len(given) + 1))
        )
        assert all(b["prev_hash"] == a["record_hash"] for a, b in itertools.pairwise(stored))
    by_hash = {r["record_hash"]: json.loads(r["content"]) for r in rows}
    assert [by_hash[inv.record_hash] for inv in issued.invoices] == issued.contents


async def test_a_batch_refused_in_a_later_piece_writes_nothing(pool: asyncpg.Pool, issuing: Issuing) -> None:
    """The database refuses a record of the batch's third piece (a trigger, as a constraint would): the pieces
    already written go back with it, the next piece's sealing is waited for, and the series goes on from where it
    was, gapless."""
    issuer, _ = await new_issuer(pool)
    refused = f"{2 * WRITE_PIECE + 9:08d}"
    async with pool.acquire() as conn:
        await services.issue(conn, issuing, issuer, [draft()])
        await conn.execute(
            f"""CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                  IF NEW.issuer_id = '{issuer.id}' AND NEW.invoice_number = '{refused}' THEN
                    RAISE EXCEPTION 'refused %', NEW.invoice_number;
                  END IF;
                  RETURN NEW;
                END $$;
                CREATE TRIGGER refuse_one BEFORE INSERT ON invoices FOR EACH ROW EXECUTE FUNCTION refuse_one()"""
        )
        try:
            with pytest.raises(asyncpg.RaiseError, match=f"refused {refused}"):
                await services.issue(conn, issuing, issuer, [draft() for _ in range(3 * WRITE_PIECE)])
        finally:
            await conn.execute("DROP TRIGGER refuse_one ON invoices; DROP FUNCTION refuse_one()")
        issued = await services.issue(conn, issuing, issuer, [draft() for _ in range(WRITE_PIECE + 1)])
    assert issued.invoices[0].invoice_number == "00000002"
    [numbers] = (await numbers_of(pool, issuer)).values()
    assert_gapless(numbers)
    assert len(numbers) == WRITE_PIECE + 2


async def test_batch_is_all_or_nothing(pool: asyncpg.Pool, issuing: Issuing) -> None:
    issuer, _ = await new_issuer(pool)
    async with pool.acquire() as conn:
        await services.issue(conn, issuing, issuer, [draft()])
        with pytest.raises(asyncpg.DivisionByZeroError):
            async with conn.transaction():
                await services.issue(conn, issuing, issuer, [draft() for _ in range(10)])
                await conn.execute("SELECT 1/0")
        issued = await services.issue(conn, issuing, issuer, [draft() for _ in range(3)])
    assert [i.invoice_number for i in issued.invoices] == ["00000002", "00000003", "00000004"]


@hsettings(max_examples=15)
@given(
    plan=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.integers(1, 5) | st.integers(WRITE_PIECE - 1, 2 * WRITE_PIECE + 1),  # one piece, or several
            st.booleans(),
        ),
        min_size=1,
        max_size=12,
    )
)
async def test_any_mix_of_batches_and_failures_is_gapless(
    pool: asyncpg.Pool, issuing: Issuing, plan: list[tuple[str, int, bool]]
) -> None:
    """Hypothesis: any sequence of batches over several series, small ones and ones written in pieces, some rolled
    back, leaves every series numbered exactly 1..n where n counts the committed invoices of that series."""
    issuer, _ = await new_issuer(pool)
    expected: dict[str, int] = {}
    async with pool.acquire() as conn:
        for label, size, rollback in plan:
            try:
                async with conn.transaction():
                    await services.issue(conn, issuing, issuer, [draft(series=label) for _ in range(size)])
                    if rollback:
                        raise RuntimeError("roll back")
            except RuntimeError:
                continue
            expected[label] = expected.get(label, 0) + size
    got = await numbers_of(pool, issuer)
    assert sorted(len(v) for v in got.values()) == sorted(expected.values())
    for numbers in got.values():
        assert_gapless(numbers)


async def test_issues_from_several_processes_and_a_void_chain_correctly(pool: asyncpg.Pool, issuing: Issuing) -> None:
    """Issues from three processes' Issuing, interleaved, and a void (a chain place without a number): numbers
    stay 1..n and every record links to the one before it."""
    issuer, _ = await new_issuer(pool)
    workers = [numbering.Issuing(issuing.secret, issuing.signers) for _ in range(3)]
    async with pool.acquire() as conn:
        await services.issue(conn, workers[0], issuer, [draft()])
        for i in range(30):
            await services.issue(conn, workers[i % 3], issuer, [draft()])
        [a] = (await services.issue(conn, workers[1], issuer, [draft()])).invoices
        await services.void(conn, issuing, issuer, a.id, "void moves the chain without a number")
        await services.issue(conn, workers[2], issuer, [draft()])
        rows = await conn.fetch(
            """SELECT chain_seq, prev_hash, record_hash FROM invoices WHERE issuer_id = $1
                                   UNION ALL SELECT v.chain_seq, v.prev_hash, v.record_hash FROM voids v
                                   JOIN invoices i ON i.id = v.invoice_id WHERE i.issuer_id = $1
                                   ORDER BY chain_seq""",
            uuid.UUID(issuer.id),
        )
    assert [r["chain_seq"] for r in rows] == list(range(1, 35))
    assert all(b["prev_hash"] == a["record_hash"] for a, b in itertools.pairwise(rows))
    [numbers] = (await numbers_of(pool, issuer)).values()
    assert_gapless(numbers)
    assert len(numbers) == 33
