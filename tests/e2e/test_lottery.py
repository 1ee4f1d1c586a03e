"""The invoice lottery end to end: registration over JSON and its refusals, the published period, a draw by
`invoiceloop lottery draw` recomputed here from the JSON alone, `invoiceloop lottery verify` against the running
server, the winners texted through the outbox and the real twilio client, and registration as a guessing route."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import subprocess
import sys
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from invoiceloop.settings import Settings
from invoiceloop.worker import build_worker
from invoicing.keyring import KeyringWatcher
from invoicing.model import local_date
from tests.conftest import ROOT, ServerProcess, _env
from tests.e2e.test_verify_sms import message_of, sms_text, text_in
from tests.fake_twilio import FakeTwilio
from tests.unit.test_lottery import draw_by_hand
from tests.verification_fixtures import invoices_in_every_state, query_of, random_mobile, wrong_last6
from verification import lottery as rules
from verification import lottery_repository as repo
from verification.limits import Limits
from verification.lottery_services import Lottery, NotEligible, register
from verification.model import parse_query
from verification.services import Verifier

PRIZES = '[{"tier": 1, "name": "一等奖 First", "count": 1}, {"tier": 2, "name": "二等奖 Second", "count": 3}]'
PAST = "2026-09"  # closed since 2026-10-10 16:00 UTC


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoiceloop", *args],
        env=_env(settings, LOTTERY_PRIZES=PRIZES),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def entry(invoice: dict[str, Any], phone: str, **overrides: Any) -> dict[str, Any]:
    return {**query_of(invoice), "phone": phone, **overrides}


def this_period() -> str:
    return rules.period_of(local_date(datetime.now(UTC)))


async def test_registration_publishes_the_commitment_first_and_numbers_entries(
    consumer: httpx.AsyncClient, seller: Any, pool: asyncpg.Pool
) -> None:
    invoice = await seller.issue()
    period = this_period()
    before = (await consumer.get(f"/v1/lottery/draws/{period}")).json()
    assert before["status"] == "open" and len(before["commitment"]) == 64 and "seed" not in before
    answer = await consumer.post("/v1/lottery/entries", json=entry(invoice, random_mobile()))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    expected_id = hashlib.sha256(
        f"IL-LOTTERY1|{period}|{invoice['invoice_code']}|{invoice['invoice_number']}".encode()
    ).hexdigest()
    assert body["entry_id"] == expected_id and body["period"] == period
    after = (await consumer.get(f"/v1/lottery/draws/{period}")).json()
    assert after["commitment"] == before["commitment"] and after["entries_count"] >= body["seq"]
    assert after["prizes"] == rules.prizes_json(rules.DEFAULT_PRIZES)
    listed = (await consumer.get(f"/v1/lottery/draws/{period}/entries", params={"limit": 500})).json()
    assert {"seq": body["seq"], "entry_id": expected_id} in listed["items"]
    async with pool.acquire() as conn:
        phone = await conn.fetchval("SELECT phone FROM lottery_entries WHERE entry_id = $1", expected_id)
    assert phone not in answer.text and phone not in str(after)


async def test_refusals_voided_credited_small_twice_and_phone_cap(
    consumer: httpx.AsyncClient, seller: Any, pool: asyncpg.Pool
) -> None:
    ok, voided, reversed_, partial, tampered = await invoices_in_every_state(seller, pool)
    phone = random_mobile()
    for bad, outcome in (
        (voided, "voided"),
        (reversed_, "reversed"),
        (partial, "partially_credited"),
        (tampered, "tampered"),
    ):
        refused = await consumer.post("/v1/lottery/entries", json=entry(bad, phone))
        assert refused.status_code == 422 and outcome in refused.json()["errors"][0]["message"], refused.text
    small = await seller.issue(
        lines=[{"description": "笔", "unit": "支", "quantity": "1", "unit_price": "10.00", "tax_rate": "0.13"}]
    )
    refused = await consumer.post("/v1/lottery/entries", json=entry(small, phone))
    assert refused.status_code == 422 and "below the lottery's minimum" in refused.text
    first = await consumer.post("/v1/lottery/entries", json=entry(ok, phone))
    assert first.status_code == 201
    twice = await consumer.post("/v1/lottery/entries", json=entry(ok, random_mobile()))
    assert twice.status_code == 409 and "registered for the lottery already" in twice.json()["detail"]
    for other in (None, "+862087654321"):  # none, or a landline: a prize cannot be texted
        no_phone = await consumer.post(
            "/v1/lottery/entries", json={k: v for k, v in entry(ok, other or "").items() if v}
        )
        assert no_phone.status_code == 422 and no_phone.json()["errors"][0]["field"] == "phone"
    more = [await seller.issue() for _ in range(10)]
    answers = [await consumer.post("/v1/lottery/entries", json=entry(inv, phone)) for inv in more]
    assert [a.status_code for a in answers] == [201] * 9 + [429]  # 10 a day with the first
    assert int(answers[-1].headers["Retry-After"]) > 0 and "registered 10 invoices today" in answers[-1].text


async def test_an_invoice_of_a_closed_period_is_refused(
    verify_server: ServerProcess, seller: Any, settings: Settings, pool: asyncpg.Pool
) -> None:
    invoice = await seller.issue()
    closes = rules.closes_at(this_period())
    verifier = Verifier(
        pool, Limits(None), (settings.check_code_secret or "").encode(), KeyringWatcher(settings.keyring)
    )
    later = Lottery(verifier, clock=lambda: closes + timedelta(seconds=1))
    query = parse_query(entry(invoice, random_mobile()))
    with pytest.raises(NotEligible) as refused:
        await register(later, query, verifier.requester("json", "10.9.9.9", query.phone))
    assert refused.value.errors[0].field == "issue_date" and "closed" in refused.value.errors[0].message


async def test_registration_is_no_guessing_oracle(consumer: httpx.AsyncClient, seller: Any) -> None:
    """Wrong check codes sent to the lottery count against the same locks as verifications: after five, the
    client is locked out of the invoice on the verify endpoint too (remove the verification from registration,
    or its counting, and this fails)."""
    invoice = await seller.issue()
    phone = random_mobile()
    for _ in range(5):
        guess = await consumer.post(
            "/v1/lottery/entries", json=entry(invoice, phone, check_code_last6=wrong_last6(invoice))
        )
        assert guess.status_code == 422 and "mismatch" in guess.text
    right = await consumer.post("/v1/lottery/entries", json=entry(invoice, phone))
    assert right.status_code == 422 and "locked" in right.text
    answer = (await consumer.post("/v1/verifications", json=query_of(invoice))).json()
    assert answer["result"] == "locked"
    not_there = await consumer.post("/v1/lottery/entries", json=entry({**invoice, "invoice_number": "99999999"}, phone))
    assert not_there.status_code == 422 and "not_found" in not_there.text  # no 409/201 telling more than a verification


async def closed_period_with_entries(seller: Any, pool: asyncpg.Pool, count: int) -> list[tuple[str, str]]:
    """`count` real invoices entered in the closed period PAST, as registration would have (its repository);
    their (entry_id, phone) in seq order."""
    seed = secrets.token_bytes(32)
    made: list[tuple[str, str]] = []
    async with pool.acquire() as conn:
        await repo.ensure_period(conn, PAST, seed, rules.commitment(seed))
        for _ in range(count):
            invoice, phone = await seller.issue(), random_mobile()
            entry_id = rules.entry_id(PAST, invoice["invoice_code"], invoice["invoice_number"])
            async with conn.transaction():
                seq = await repo.next_seq(conn, PAST)
                assert seq is not None
                await repo.add_entry(
                    conn, entry_id, PAST, seq, uuid.UUID(invoice["id"]), phone, datetime(2026, 9, 30).date(), "json"
                )
            made.append((entry_id, phone))
    return made


async def run_worker(settings: Settings) -> None:
    worker = build_worker(settings, burst=True, poll_delay=0.1)
    try:
        await worker.main()
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            await worker.close()


async def test_draw_published_recomputed_here_and_by_the_verify_command(
    verify_server: ServerProcess,
    consumer: httpx.AsyncClient,
    seller: Any,
    settings: Settings,
    twilio_settings: Settings,
    session_twilio: FakeTwilio,
    pool: asyncpg.Pool,
) -> None:
    entries = await closed_period_with_entries(seller, pool, 12)
    closed = (await consumer.get(f"/v1/lottery/draws/{PAST}")).json()
    assert closed["status"] == "closed" and closed["entries_count"] == 12 and "seed" not in closed
    published_root = closed["entries_root"]

    refused = cli(settings, "lottery", "draw", "--period", this_period())
    assert refused.returncode == 2 and "still open" in refused.stderr
    drawn = cli(settings, "lottery", "draw", "--period", PAST, "--beacon", "c0ffee")
    assert drawn.returncode == 0, drawn.stderr
    again = cli(settings, "lottery", "draw", "--period", PAST)
    assert again.returncode == 2 and "drawn already" in again.stderr

    published = (await consumer.get(f"/v1/lottery/draws/{PAST}")).json()
    pages: list[dict[str, Any]] = []
    cursor = None
    while True:  # cursor pages of 5
        page = (
            await consumer.get(
                f"/v1/lottery/draws/{PAST}/entries", params={"limit": 5, **({"cursor": cursor} if cursor else {})}
            )
        ).json()
        pages += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ids = [item["entry_id"] for item in pages]
    assert ids == [e for e, _ in entries]
    assert hashlib.sha256(bytes.fromhex(published["seed"])).hexdigest() == published["commitment"]
    root, winners = draw_by_hand(
        bytes.fromhex(published["seed"]),
        bytes.fromhex(published["beacon"]),
        ids,
        [p["count"] for p in published["prizes"]],
    )
    assert published["beacon"] == "c0ffee" and published["entries_root"] == root.hex() == published_root
    assert published["winners"] == [{"tier": t, "seq": s, "entry_id": e} for t, s, e in winners]
    assert [w["tier"] for w in published["winners"]] == [1, 2, 2, 2]

    checked = cli(settings, "lottery", "verify", "--url", verify_server.base_url, "--period", PAST)
    assert checked.returncode == 0 and "matches" in checked.stdout, checked.stderr
    async with pool.acquire() as conn:  # the service's operator swaps a winner behind the public's back
        first = published["winners"][0]["entry_id"]
        other = next(e for e in ids if e not in {w["entry_id"] for w in published["winners"]})
        await conn.execute(
            "UPDATE lottery_winners SET entry_id = $2 WHERE period = $1 AND entry_id = $3", PAST, other, first
        )
    caught = cli(settings, "lottery", "verify", "--url", verify_server.base_url, "--period", PAST)
    assert caught.returncode == 1 and "MISMATCH" in caught.stderr

    await run_worker(twilio_settings)
    winner_phones = {phone for e, phone in entries if e in {first, *(w["entry_id"] for w in published["winners"][1:])}}
    texts = [m for m in session_twilio.messages if m.to in winner_phones]
    assert {m.to for m in texts} == winner_phones and len(texts) == 4
    assert all(PAST in m.body and "发票抽奖" in m.body for m in texts)
    async with pool.acquire() as conn:
        kinds = await conn.fetch(
            "SELECT status FROM sms_outbox WHERE kind = 'lottery_win' AND phone = ANY($1)", list(winner_phones)
        )
    assert [r["status"] for r in kinds] == ["sent"] * 4
    for phone in winner_phones:
        assert phone not in verify_server.log_path.read_text()


async def test_periods_and_cursors_are_checked(consumer: httpx.AsyncClient) -> None:
    assert (await consumer.get("/v1/lottery/draws/2026-13")).status_code == 400
    assert (await consumer.get("/v1/lottery/draws/2001-01")).status_code == 404  # closed, no lottery then
    assert (await consumer.get("/v1/lottery/draws/2099-01")).status_code == 404  # not begun
    bad = await consumer.get(f"/v1/lottery/draws/{this_period()}/entries", params={"cursor": "nonsense"})
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/problem+json")


async def test_registration_by_text_answers_through_twiml(
    verify_server: ServerProcess, session_twilio: FakeTwilio, seller: Any, pool: asyncpg.Pool
) -> None:
    token, sender = session_twilio.auth_token, random_mobile()
    ok, voided, *_ = await invoices_in_every_state(seller, pool)
    text = sms_text(ok).replace("查验", "抽奖")
    reply = message_of(await text_in(verify_server, token, text, sender=sender))
    assert "登记成功" in reply and this_period() in reply
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT phone, channel FROM lottery_entries WHERE invoice_id = $1", uuid.UUID(ok["id"])
        )
    assert row is not None and row["phone"] == sender and row["channel"] == "sms"
    again = message_of(await text_in(verify_server, token, "ＣＪ " + sms_text(ok)[3:], sender=random_mobile()))
    assert "已登记过" in again
    refused = message_of(await text_in(verify_server, token, "lottery " + sms_text(voided)[3:], sender=sender))
    assert "未登记" in refused and "作废" in refused
    assert "抽奖 代码" in message_of(await text_in(verify_server, token, "抽奖 你好", sender=sender))
    assert sender not in verify_server.log_path.read_text()


async def test_an_unsigned_lottery_text_registers_nothing(
    verify_server: ServerProcess, session_twilio: FakeTwilio, seller: Any, pool: asyncpg.Pool
) -> None:
    invoice = await seller.issue()
    text = sms_text(invoice).replace("查验", "抽奖")
    forged = await text_in(verify_server, session_twilio.auth_token, text, signature=None)
    assert forged.status_code == 403
    async with pool.acquire() as conn:
        entered = await conn.fetchval(
            "SELECT count(*) FROM lottery_entries WHERE invoice_id = $1", uuid.UUID(invoice["id"])
        )
    assert entered == 0


async def test_one_invoice_registered_at_once_from_several_phones_enters_once(
    consumer: httpx.AsyncClient, seller: Any, pool: asyncpg.Pool
) -> None:
    invoice = await seller.issue()
    answers = await asyncio.gather(
        *(consumer.post("/v1/lottery/entries", json=entry(invoice, random_mobile())) for _ in range(6))
    )
    assert sorted(a.status_code for a in answers) == [201] + [409] * 5
    async with pool.acquire() as conn:
        count, seqs = await conn.fetchrow(
            "SELECT p.entries_count, array_agg(e.seq ORDER BY e.seq) FROM lottery_periods p"
            " JOIN lottery_entries e USING (period) WHERE p.period = $1 GROUP BY p.entries_count",
            this_period(),
        )
    assert seqs == list(range(1, count + 1))  # no gap left by the refused ones
