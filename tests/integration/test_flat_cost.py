"""Costs that must not grow with the data (docs/scale-data.md): the service's connections never JIT-compile a
query (PostgreSQL compiles once a statement's estimated cost passes `jit_above_cost`, and estimates grow with
the tables), and a batch of verifications reads the invoices asked for, not every pairing of their codes and
numbers."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import pytest

from invoicing import chain_repository, db, log_repository, numbering, outbox_repository, services, validation
from invoicing.model import DEFAULT_TAX_RATES
from invoicing.numbering import Issuing
from invoicing.transparency import LogSigner, sequence
from tests.conftest import _database, new_issuer
from tests.samples import invoice_body
from verification import repository as vrepo


async def test_pool_connections_do_not_jit(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await conn.fetchval("SHOW jit") == "off"


async def test_command_connections_do_not_jit(database_url: str) -> None:
    conn = await db.connect(database_url)
    try:
        assert await conn.fetchval("SHOW jit") == "off"
    finally:
        await conn.close()


async def test_verification_lookup_reads_only_the_pairs_asked_for(pool: asyncpg.Pool, issuing: Issuing) -> None:
    """Two series with numbers 1 and 2 each: asking for (A, 1) and (B, 2) must not read (A, 2) and (B, 1) too.
    Matching every asked code with every asked number made a batch's work grow with the invoices per series."""
    issuer, _ = await new_issuer(pool)
    async with pool.acquire() as conn:
        made = {}
        for label in ("a", "b"):
            drafts = [numbering.draft_of(validation.invoice_request(invoice_body(series=label), DEFAULT_TAX_RATES))]
            issued = (await services.issue(conn, issuing, issuer, drafts * 2)).invoices
            made[label] = [(inv.invoice_code, inv.invoice_number) for inv in issued]
        asked = [made["a"][0], made["b"][1]]
        found = await vrepo.find_invoices(conn, asked)
    assert made["a"][0][0] != made["b"][0][0]
    assert set(found) == set(asked)


async def test_new_records_land_at_the_end_of_the_primary_key(pool: asyncpg.Pool, issuing: Issuing) -> None:
    """Record ids are time-ordered (UUIDv7): records issued one after another sort after each other, so each insert
    touches the right edge of `invoices_pkey` instead of a random leaf page (one full-page image in the WAL per
    page per checkpoint, which at 10 M invoices was most of an issue's WAL). A random id (v4) fails this."""
    issuer, _ = await new_issuer(pool)
    draft = numbering.draft_of(validation.invoice_request(invoice_body(series="order"), DEFAULT_TAX_RATES))
    ids = []
    async with pool.acquire() as conn:
        for _ in range(3):  # a batch, then single issues
            ids += [uuid.UUID(inv.id) for inv in (await services.issue(conn, issuing, issuer, [draft] * 20)).invoices]
        stored = await conn.fetch("SELECT id FROM invoices WHERE issuer_id = $1 ORDER BY id", uuid.UUID(issuer.id))
    assert {i.version for i in ids} == {7}
    assert [r["id"] for r in stored] == ids  # the key's order is the issue order


async def test_a_fan_out_finds_its_texts_through_the_buyer_text_index(pool: asyncpg.Pool) -> None:
    """The generic plan of the fan-out's lookup (the one a prepared statement settles on after a few runs) reads the
    buyer-text index of the records asked for, never the unsent rows, which under load are the backlog. Played with
    a backlog of 5,000 unsent texts, in a transaction rolled back."""
    async with pool.acquire() as conn:
        work = conn.transaction()
        await work.start()
        try:
            await conn.execute(
                "INSERT INTO sms_outbox (kind, phone, body) SELECT 'receipt', '+8613912345678', 'backlog' "
                "FROM generate_series(1, 5000)"
            )
            await conn.execute("ANALYZE sms_outbox")
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await conn.execute("PREPARE pending_texts (text, uuid[]) AS " + outbox_repository.PENDING_OF)
            explain = "EXPLAIN EXECUTE pending_texts ('invoice', ARRAY[gen_random_uuid()])"
            plan = "\n".join(r[0] for r in await conn.fetch(explain))
            await conn.execute("DEALLOCATE pending_texts")
        finally:
            await work.rollback()
    assert "sms_outbox_one_buyer_text" in plan and "sms_outbox_unsent" not in plan, plan


async def test_a_verification_lookup_probes_notices_voids_and_credits_per_invoice(
    pool: asyncpg.Pool, issuing: Issuing
) -> None:
    """The lookup checks the buyer's notice, a void and credit notes per invoice found (a LATERAL with LIMIT), with
    no subplan: PostgreSQL may run an EXISTS subplan hashed, reading the whole table once per statement, and a
    prepared statement keeps that plan. At 10 M invoices a plan made just after the outbox was emptied read every
    buyer's notice on each lookup, more with every notice. Played in a transaction rolled back: the plan made (generic,
    as a prepared statement keeps it) right after the outbox is emptied, then 3,000 notices written, then a lookup
    of 40 invoices reaches the outbox through its notice index and reads none of the 3,000."""
    issuer, _ = await new_issuer(pool)
    async with pool.acquire() as conn:
        drafts = [numbering.draft_of(validation.invoice_request(invoice_body(series="probe"), DEFAULT_TAX_RATES))]
        issued = (await services.issue(conn, issuing, issuer, drafts * 40)).invoices
        asked = [f"'{{{','.join(column)}}}'" for column in zip(*((i.invoice_code, i.invoice_number) for i in issued))]
        work = conn.transaction()
        await work.start()
        try:
            await conn.execute("TRUNCATE sms_outbox CASCADE")
            await conn.execute("ANALYZE invoices")
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await conn.execute("PREPARE lookup (char(12)[], char(8)[]) AS " + vrepo.FIND_INVOICES)
            await conn.execute(
                "INSERT INTO sms_outbox (kind, phone, body) SELECT 'buyer_notice', '+8613912345678', 'notice' "
                "FROM generate_series(1, 3000)"
            )
            explain = f"EXPLAIN (ANALYZE, COSTS OFF) EXECUTE lookup ({', '.join(asked)})"  # digits only: made above
            plan = "\n".join(r[0] for r in await conn.fetch(explain))
            await conn.execute("DEALLOCATE lookup")
        finally:
            await work.rollback()
    assert "SubPlan" not in plan, plan
    assert "Index Only Scan using sms_outbox_one_notice" in plan and "rows=3000" not in plan, plan


async def test_a_records_leaf_is_found_through_a_hash_index_and_is_logged_once(
    pool: asyncpg.Pool, issuing: Issuing, tmp_path: Path
) -> None:
    """Record hashes are random: a B-tree over them is read at a random leaf page for every lookup, a recent
    invoice's as an old one's, and grows a level as the log grows; a hash index is read in two pages whatever the
    log's size (docs/scale-data.md, "A leaf by its record hash"). The verification lookup, the leaf lookup and the
    sequencer's check of what is logged already reach `log_leaves` through it (generic plans, as prepared statements
    keep them; sequential scans off, so that the tables' few rows here do not decide), and a second leaf for a record
    already in the log is still refused, by the exclusion constraint the hash index carries."""
    issuer, _ = await new_issuer(pool)
    async with pool.acquire() as conn:
        drafts = [numbering.draft_of(validation.invoice_request(invoice_body(series="leaf"), DEFAULT_TAX_RATES))]
        issued = (await services.issue(conn, issuing, issuer, drafts * 3)).invoices
    signer = LogSigner.load("flat-cost.example/log", tmp_path / "log-key.pem")
    while await sequence(pool, signer):
        pass
    code, number, record_hash = issued[0].invoice_code, issued[0].invoice_number, issued[0].record_hash
    asked = ([code], [number])
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute("SET LOCAL enable_seqscan = off")
        for sql, args in (
            (vrepo.FIND_INVOICES, asked),
            (log_repository.LEAF_OF, (record_hash,)),
            (log_repository.ALREADY_LOGGED, ([record_hash],)),
        ):
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN (COSTS OFF) " + sql, *args))
            assert "using log_leaves_record_hash_once on log_leaves" in plan, plan
        assert await log_repository.leaf_of(conn, record_hash) is not None
        with pytest.raises(asyncpg.ExclusionViolationError):
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO log_leaves (leaf_index, record_hash) SELECT max(leaf_index) + 1, $1 FROM log_leaves",
                    record_hash,
                )


async def test_the_sequencer_plans_for_the_log_as_it_is_not_as_it_was_when_empty(
    server_url: str, template_database: str, run_id: str, tmp_path: Path
) -> None:
    """A prepared statement keeps a generic plan made once. Prepared while the log was empty, the sequencer's check
    of what is logged already hashed every leaf (a sequential scan of `log_leaves`) on every pass from then on, so a
    pass's cost grew with the log (docs/issuing.md). The sequencer's transaction plans for the log as it is. Here one
    connection sequences a new log from its first record and the log grows to 5,000 leaves: the check, as that
    connection prepared it, never ran on a generic plan (without the rule PostgreSQL kept one from the sixth pass on,
    a sequential scan of the leaves), and in a sequencer's transaction it probes the hash index."""
    name = f"invoiceloop_test_{run_id}_sequencer_plans"
    async with _database(server_url, name, template=template_database) as url:
        seq_pool = await db.create_pool(url, min_size=1, max_size=1)  # every pass on the one connection
        try:
            signer = LogSigner.load("flat-cost.example/log", tmp_path / "log-key.pem")

            async def queue(count: int) -> None:
                await seq_pool.execute(
                    "INSERT INTO log_queue (record_hash) SELECT encode(sha256(gen_random_uuid()::text::bytea), 'hex')"
                    " FROM generate_series(1, $1)",
                    count,
                )

            for _ in range(8):  # past the five custom plans after which PostgreSQL may keep a generic one
                await queue(1)
                assert await sequence(seq_pool, signer) == 1
            await queue(5000)
            while await sequence(seq_pool, signer):
                pass
            async with seq_pool.acquire() as conn:
                check = await conn.fetchrow(
                    "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
                    log_repository.ALREADY_LOGGED,
                )
                assert check is not None  # the sequencer's own prepared statement, on its connection
                assert check["generic_plans"] == 0 and check["custom_plans"] > 5, dict(check)
                hashes = "{" + ",".join(f"{i:064x}" for i in range(5)) + "}"
                explain = f"EXPLAIN (COSTS OFF) EXECUTE {check['name']}('{hashes}')"
                async with conn.transaction():
                    assert await log_repository.try_sequencer_lock(conn)
                    plan = "\n".join(r[0] for r in await conn.fetch(explain))
                    assert "Index Scan using log_leaves_record_hash_once on log_leaves" in plan, plan
        finally:
            await seq_pool.close()


async def test_a_connection_prepares_the_issue_path_again_once_the_tables_have_grown(
    server_url: str, template_database: str, run_id: str, issuing: Issuing
) -> None:
    """A connection that issued while `series` was small kept generic plans that hash every series (`READ_HEADS`,
    `INSERT_RECORDS`); with nothing analysing the tables, an issue on it took six times as long once 20,000 series
    existed (docs/issuing.md). The pool's connections prepare each statement again after a lifetime
    (`db.STATEMENT_LIFETIME_S`, shortened here): the issue after it runs on statements prepared, and so planned, after
    the table grew. Fails if the pool keeps its statements for good (a lifetime of 0)."""
    lifetime = 2.0
    name = f"invoiceloop_test_{run_id}_statement_lifetime"
    async with _database(server_url, name, template=template_database) as url:
        issue_pool = await db.create_pool(url, min_size=1, max_size=1, statement_lifetime=lifetime)
        try:
            issuer, _ = await new_issuer(issue_pool)
            draft = numbering.draft_of(validation.invoice_request(invoice_body(series="grow"), DEFAULT_TAX_RATES))
            async with issue_pool.acquire() as conn:
                await services.issue(conn, issuing, issuer, [draft])  # opens the series
                one = [numbering.IssuerDraft(issuer, draft)]

                async def issue_one() -> None:
                    [record] = await numbering.issue_grouped(conn, issuing, one)
                    assert record is not None

                async def prepared() -> dict[str, asyncpg.Record]:
                    rows = await conn.fetch(
                        "SELECT statement, prepare_time, generic_plans FROM pg_prepared_statements"
                        " WHERE statement = ANY($1::text[])",
                        [chain_repository.READ_HEADS, chain_repository.INSERT_RECORDS],
                    )
                    return {r["statement"]: r for r in rows}

                for _ in range(8):  # past the five custom plans after which PostgreSQL may keep a generic one
                    await issue_one()
                kept = await prepared()
                assert len(kept) == 2 and all(r["generic_plans"] > 0 for r in kept.values()), kept
                grown_at = await conn.fetchval(
                    "INSERT INTO series (issuer_id, label, year, invoice_code, last_hash)"
                    " SELECT $1, 'grown-' || g, $2, '4401' || lpad(g::text, 8, '0'), repeat('0', 64)"
                    " FROM generate_series(1, 5000) g RETURNING clock_timestamp()",
                    uuid.UUID(issuer.id),
                    numbering.series_year(issuing.clock()),
                )
                await asyncio.sleep(lifetime * 1.5)
                await issue_one()
                renewed = await prepared()
                assert set(renewed) == set(kept)
                for statement, row in renewed.items():
                    assert row["prepare_time"] > grown_at > kept[statement]["prepare_time"], statement
        finally:
            await issue_pool.close()
