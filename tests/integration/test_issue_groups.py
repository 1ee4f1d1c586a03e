"""Single issues made at the same time are written in groups (one transaction and one commit for many). Several
processes grouping on the same series must still number every series 1..n with no repeat, chain every record to
the one before it, give each keyed request exactly one invoice, and answer each request on its own: a refusal
or a replay in a group is that request's answer alone."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from invoiceloop.settings import Settings
from invoicing import chain_repository, db, numbering, repository, services, validation
from invoicing.errors import Conflict
from invoicing.model import DEFAULT_TAX_RATES
from invoicing.numbering import Issuing
from invoicing.repository import Issuer
from invoicing.services import Idempotency, Issued, IssueGroups
from tests.conftest import new_issuer
from tests.samples import invoice_body

PROCESSES = 3


def draft(series: str = "default", **kw: object) -> numbering.Draft:
    return numbering.draft_of(validation.invoice_request(invoice_body(series=series, **kw), DEFAULT_TAX_RATES))


@pytest.fixture(scope="module")
async def processes(settings: Settings, issuing: Issuing) -> AsyncIterator[list[IssueGroups]]:
    """Three 'server processes': each its own pool, its own grouping and its own view of the key."""
    pools = [await db.create_pool(settings.require_database_url(), max_size=4) for _ in range(PROCESSES)]
    yield [IssueGroups(p, numbering.Issuing(issuing.secret, issuing.signers)) for p in pools]
    for p in pools:
        await p.close()


def groups_so_far() -> tuple[float, float]:
    """(groups written, single issues written in them) in this test process so far."""
    count = REGISTRY.get_sample_value("invoiceloop_issue_group_size_count") or 0.0
    return count, REGISTRY.get_sample_value("invoiceloop_issue_group_size_sum") or 0.0


async def chains_of(pool: asyncpg.Pool, issuer: Issuer) -> dict[str, list[asyncpg.Record]]:
    """Each series' records (invoices and voids) in chain order, by invoice code."""
    rows = await pool.fetch(
        """SELECT i.invoice_code, i.invoice_number, i.chain_seq, i.prev_hash, i.record_hash, i.id
             FROM invoices i WHERE i.issuer_id = $1
           UNION ALL
           SELECT i.invoice_code, NULL, v.chain_seq, v.prev_hash, v.record_hash, NULL
             FROM voids v JOIN invoices i ON i.id = v.invoice_id WHERE i.issuer_id = $1
           ORDER BY 1, 3""",
        uuid.UUID(issuer.id),
    )
    return {code: list(rs) for code, rs in itertools.groupby(rows, key=lambda r: r["invoice_code"])}


async def waits_for_a_lock(pool: asyncpg.Pool, conn: asyncpg.Connection) -> bool:
    """Whether `conn`'s backend is waiting for a lock now."""
    return bool(
        await pool.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", conn.get_server_pid()
        )
    )


def assert_chained_and_gapless(chain: list[asyncpg.Record]) -> None:
    assert [r["chain_seq"] for r in chain] == list(range(1, len(chain) + 1))
    numbers = [int(r["invoice_number"]) for r in chain if r["invoice_number"] is not None]
    assert numbers == list(range(1, len(numbers) + 1)), "numbers must be exactly 1..n in chain order"
    assert all(b["prev_hash"] == a["record_hash"] for a, b in itertools.pairwise(chain))


@pytest.mark.parametrize("guesses", [numbering.GUESSES, 0], ids=["unlocked-first", "locked-only"])
async def test_three_processes_grouping_on_shared_series_number_and_chain_correctly(
    pool: asyncpg.Pool, processes: list[IssueGroups], guesses: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """600 single issues from two issuers over four series (two opened during the run), sent at once through
    three processes, a fifth of them keyed, each key sent three times to different processes; with groups sealed
    against heads read without a lock first, and with every try locking its heads (the last try's way)."""
    monkeypatch.setattr(numbering, "GUESSES", guesses)
    issuers = [(await new_issuer(pool))[0] for _ in range(2)]
    async with pool.acquire() as conn:  # two series exist before; 'c' and 'd' are opened by the run
        for issuer in issuers:
            await services.issue(conn, processes[0].issuing, issuer, [draft("a"), draft("b")])
    groups_before = groups_so_far()
    plain: list[tuple[IssueGroups, Issuer, numbering.Draft, Idempotency | None]] = []
    for i in range(480):
        plain.append((processes[i % PROCESSES], random.choice(issuers), draft(random.choice("abcd")), None))
    keyed = []
    for k in range(40):
        issuer, label = random.choice(issuers), random.choice("abcd")
        idem = Idempotency(f"key-{k}", f"{k:064x}")
        keyed += [(processes[(k + j) % PROCESSES], issuer, draft(label), idem) for j in range(3)]
    work = plain + keyed
    random.shuffle(work)
    answers = await asyncio.gather(*(groups.issue(issuer, d, idem) for groups, issuer, d, idem in work))

    groups, singles = (after - before for after, before in zip(groups_so_far(), groups_before, strict=True))
    assert singles > groups, "no two issues were ever written in one group: grouping did not happen"
    by_key: dict[str, list[Issued]] = {}
    for (_, _, _, idem), answer in zip(work, answers, strict=True):
        assert len(answer.invoices) == 1
        if idem is not None:
            by_key.setdefault(idem.key, []).append(answer)
    for key, same in by_key.items():
        assert len({a.invoices[0].id for a in same}) == 1, f"{key} gave more than one invoice"
        assert sorted(a.replayed for a in same) == [False, True, True], key
    ids = [a.invoices[0].id for a in answers]
    assert len(set(ids)) == 480 + 40
    for issuer in issuers:
        chains = await chains_of(pool, issuer)
        assert len(chains) == 4
        for chain in chains.values():
            assert_chained_and_gapless(chain)
    stored = await pool.fetchval(
        "SELECT count(*) FROM invoices WHERE issuer_id = ANY($1::uuid[])", [uuid.UUID(i.id) for i in issuers]
    )
    assert stored == 4 + 480 + 40


async def test_a_series_moved_on_while_a_group_sealed_is_sealed_again_after_the_new_head(
    pool: asyncpg.Pool, issuing: Issuing
) -> None:
    """A group reads its heads without a lock. Another writer moves series 'a' on before the group's statement
    reaches it (the statement waits for that writer's row lock, then finds the head moved): nothing of 'a' is
    written from the old head; 'a' is sealed again after the other writer's record, and 'b' is written at once."""
    issuer, _ = await new_issuer(pool)
    async with pool.acquire() as conn:
        await services.issue(conn, issuing, issuer, [draft("a"), draft("b")])
    retries = REGISTRY.get_sample_value("invoiceloop_issue_head_retries_total") or 0.0
    other = await pool.acquire()
    try:
        tx = other.transaction()
        await tx.start()
        [theirs] = await numbering.issue_drafts(other, issuing, issuer, [draft("a")])  # holds 'a' until commit
        async with pool.acquire() as conn:
            group = asyncio.create_task(
                numbering.issue_grouped(
                    conn, issuing, [numbering.IssuerDraft(issuer, draft(label)) for label in ("a", "a", "b")]
                )
            )
            for _ in range(500):  # the group's statement, waiting for the other writer's row lock
                if await waits_for_a_lock(pool, conn):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the group's statement never waited for the other writer")
            await tx.commit()
            written = await asyncio.wait_for(group, 30)
    finally:
        await pool.release(other)
    ours = [rec.invoice for rec in written if rec is not None]
    assert len(ours) == 3
    assert [inv.invoice_number for inv in ours] == ["00000003", "00000004", "00000002"]
    assert theirs.invoice_number == "00000002"
    assert ours[0].prev_hash == theirs.record_hash
    assert (REGISTRY.get_sample_value("invoiceloop_issue_head_retries_total") or 0.0) == retries + 1
    for chain in (await chains_of(pool, issuer)).values():
        assert_chained_and_gapless(chain)


async def test_a_group_that_deadlocks_on_a_key_writes_nothing_and_leaves_the_request_to_go_alone(
    pool: asyncpg.Pool, issuing: Issuing
) -> None:
    """The group takes its series first and a request's Idempotency-Key after, as `services.issue` does. A
    transaction that holds the key and then wants the series (done here by hand; a credit note takes its key
    before its series) makes a deadlock, which PostgreSQL breaks: the group's try writes nothing and answers None
    for the request (issued alone next), and the other transaction goes on."""
    issuer, _ = await new_issuer(pool)
    async with pool.acquire() as conn:
        await services.issue(conn, issuing, issuer, [draft("a")])
    alone = await pool.acquire()
    try:
        tx = alone.transaction()
        await tx.start()
        assert await repository.claim_idempotency_keys(alone, [(issuer.id, "k", "0" * 64)])
        async with pool.acquire() as conn:
            group = asyncio.create_task(
                numbering.issue_grouped(conn, issuing, [numbering.IssuerDraft(issuer, draft("a"))], [("k", "0" * 64)])
            )
            for _ in range(500):  # the group holds series 'a' and waits for our key (the only lock it can wait for)
                if await waits_for_a_lock(pool, conn):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the group never waited for the key")
            year = numbering.series_year(issuing.clock())
            heads = await chain_repository.lock_heads(alone, [(issuer.id, "a")], year)  # the cycle: we wait for 'a'
            assert list(heads) == [(issuer.id, "a")]
            assert await asyncio.wait_for(group, 30) == [None]
        await tx.rollback()
    finally:
        await pool.release(alone)
    [chain] = (await chains_of(pool, issuer)).values()
    assert len(chain) == 1


async def test_a_refusal_in_a_group_is_that_request_answer_alone(
    pool: asyncpg.Pool, processes: list[IssueGroups]
) -> None:
    """Two issuers at their yearly cap of series each ask for a new one in the same moment as twenty other
    requests: the two new-series requests get 409, the others their invoices."""
    capped = dataclasses.replace(processes[0].issuing, max_series_per_year=1)
    groups = IssueGroups(processes[0].pool, capped)
    issuer, _ = await new_issuer(pool)
    other, _ = await new_issuer(pool)
    await groups.issue(issuer, draft("only"))
    await groups.issue(other, draft("x"))
    asks = [(issuer, "only")] * 10 + [(issuer, "second")] + [(other, "x")] * 10 + [(other, "y")]
    answers = await asyncio.gather(*(groups.issue(i, draft(label)) for i, label in asks), return_exceptions=True)
    refused = [i for i, a in enumerate(answers) if isinstance(a, BaseException)]
    assert refused == [10, 21], answers
    assert all(isinstance(answers[i], Conflict) and "series" in str(answers[i]) for i in refused)
    for chain in [*(await chains_of(pool, issuer)).values(), *(await chains_of(pool, other)).values()]:
        assert_chained_and_gapless(chain)


async def test_a_key_used_with_another_body_in_a_group_is_refused_alone(
    pool: asyncpg.Pool, processes: list[IssueGroups]
) -> None:
    issuer, _ = await new_issuer(pool)
    first = await processes[0].issue(issuer, draft(), Idempotency("k", "1" * 64))
    answers = await asyncio.gather(
        processes[1].issue(issuer, draft(), Idempotency("k", "2" * 64)),
        *(processes[1].issue(issuer, draft()) for _ in range(5)),
        processes[1].issue(issuer, draft(), Idempotency("k", "1" * 64)),
        return_exceptions=True,
    )
    assert type(answers[0]).__name__ == "IdempotencyMismatch"
    assert all(isinstance(a, Issued) and not a.replayed for a in answers[1:6])
    replay = answers[6]
    assert isinstance(replay, Issued) and replay.replayed and replay.invoices[0].id == first.invoices[0].id
    [chain] = (await chains_of(pool, issuer)).values()
    assert len(chain) == 6
    assert_chained_and_gapless(chain)


async def test_a_group_killed_mid_transaction_gives_its_numbers_back(
    pool: asyncpg.Pool, processes: list[IssueGroups]
) -> None:
    """A group's backend is terminated while it holds its series (its insert waits on a row lock we hold):
    every request of the group fails, nothing of it is written, and the next issues take its numbers."""
    issuer, _ = await new_issuer(pool)
    groups = processes[2]
    await groups.issue(issuer, draft())
    blocker = await pool.acquire()
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT 1 FROM issuers WHERE id = $1 FOR UPDATE", uuid.UUID(issuer.id))
        doomed = asyncio.gather(*(groups.issue(issuer, draft()) for _ in range(8)), return_exceptions=True)
        victim = None
        for _ in range(250):  # the group's backend: waiting on our lock while holding the series row
            victim = await pool.fetchval(
                """SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO invoices%'
                    AND datname = current_database()"""
            )
            if victim:
                break
            await asyncio.sleep(0.02)
        assert victim, "the group never reached its insert"
        await pool.execute("SELECT pg_terminate_backend($1)", victim)
        failed = await doomed
        await tx.rollback()
    finally:
        await pool.release(blocker)
    assert any(isinstance(f, (asyncpg.PostgresError, asyncpg.InterfaceError)) for f in failed), failed
    written = sum(isinstance(f, Issued) for f in failed)
    after = await asyncio.gather(*(groups.issue(issuer, draft()) for _ in range(3)))
    [chain] = (await chains_of(pool, issuer)).values()
    assert len(chain) == 1 + written + 3
    assert_chained_and_gapless(chain)
    assert max(int(a.invoices[0].invoice_number) for a in after) == len(chain)


@hsettings(max_examples=12, deadline=None)
@given(
    plan=st.lists(
        st.tuples(
            st.integers(0, PROCESSES - 1),
            st.sampled_from(["a", "b", "c"]),
            st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3"])),
        ),
        min_size=1,
        max_size=30,
    )
)
async def test_any_mix_of_grouped_issues_is_gapless_and_chained(
    pool: asyncpg.Pool, processes: list[IssueGroups], plan: list[tuple[int, str, str | None]]
) -> None:
    """Hypothesis: any set of single issues sent at once through the processes, on new and open series, keyed
    or not (a key reused in the plan is a retry of one request), gives one invoice per distinct request."""
    issuer, _ = await new_issuer(pool)
    bodies = {key: draft(label) for _, label, key in plan if key}  # a retry sends the same body
    work = [
        (processes[p], bodies[key] if key else draft(label), Idempotency(key, "0" * 64) if key else None)
        for p, label, key in plan
    ]
    answers = await asyncio.gather(*(g.issue(issuer, d, idem) for g, d, idem in work))
    distinct = sum(1 for _, _, key in plan if key is None) + len({key for _, _, key in plan if key})
    assert len({a.invoices[0].id for a in answers}) == distinct
    assert Counter(a.replayed for a in answers)[False] == distinct
    chains = await chains_of(pool, issuer)
    assert sum(len(c) for c in chains.values()) == distinct
    for chain in chains.values():
        assert_chained_and_gapless(chain)
