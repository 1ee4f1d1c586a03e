"""The lottery's pure rules (FORMATS.md "Lottery"): entry ids, periods, the draw as a pure function of the
published data that never picks an entry twice, checked against a recomputation written here from FORMATS.md."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invoiceloop.errors import CliError
from invoiceloop.lottery_cli import _beacon, check_draw
from invoiceloop.settings import Settings
from invoicing.errors import ConfigError
from verification import lottery as rules

seeds = st.binary(min_size=32, max_size=32)
beacons = st.binary(max_size=40)
entry_ids = st.lists(st.binary(min_size=32, max_size=32).map(bytes.hex), min_size=0, max_size=60, unique=True)
prize_lists = st.lists(st.integers(1, 8), min_size=1, max_size=4).map(
    lambda counts: tuple(rules.Prize(i + 1, f"tier {i + 1}", c) for i, c in enumerate(counts))
)


def rfc9162_root(leaves: list[bytes]) -> bytes:
    """MTH of RFC 9162 §2.1.1, recursively, written from the RFC (not the log's tiles or RootBuilder)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + rfc9162_root(leaves[:k]) + rfc9162_root(leaves[k:])).digest()


def draw_by_hand(
    seed: bytes, beacon: bytes, ids: list[str], counts: list[int]
) -> tuple[bytes, list[tuple[int, int, str]]]:
    """FORMATS.md's draw, step by step: (entries_root, [(tier, seq, entry_id)] in draw order)."""
    root = rfc9162_root([bytes.fromhex(i) for i in ids])
    key = hashlib.sha256(seed + beacon).digest()
    tiers = [tier for tier, count in enumerate(counts, start=1) for _ in range(count)]
    picked: list[int] = []
    k = 0
    while len(picked) < min(len(tiers), len(ids)):
        r = int.from_bytes(hmac.new(key, root + k.to_bytes(8, "big"), hashlib.sha256).digest(), "big")
        if r % len(ids) not in picked:
            picked.append(r % len(ids))
        k += 1
    return root, [(tiers[n], p + 1, ids[p]) for n, p in enumerate(picked)]


def test_entry_id_and_period_follow_formats() -> None:
    expected = hashlib.sha256(b"IL-LOTTERY1|2026-11|044012600111|00000001").hexdigest()
    assert rules.entry_id("2026-11", "044012600111", "00000001") == expected
    assert rules.period_of(date(2026, 11, 30)) == "2026-11"
    assert rules.parse_period("2026-13") is None and rules.parse_period("1999-01") is None
    assert rules.parse_period("2026-01") == "2026-01"


def test_a_period_closes_at_the_end_of_the_next_months_tenth_day_in_shanghai() -> None:
    assert rules.closes_at("2026-11") == datetime(2026, 12, 10, 16, 0, tzinfo=UTC)  # 12-11 00:00 UTC+8
    assert rules.closes_at("2026-12") == datetime(2027, 1, 10, 16, 0, tzinfo=UTC)
    assert rules.is_open("2026-11", datetime(2026, 12, 10, 15, 59, 59, tzinfo=UTC))
    assert not rules.is_open("2026-11", datetime(2026, 12, 10, 16, 0, tzinfo=UTC))
    assert not rules.is_open("2026-12", datetime(2026, 11, 30, 15, 59, tzinfo=UTC))  # not begun
    assert rules.status_of("2026-11", datetime(2026, 12, 11, tzinfo=UTC), drawn=False) == "closed"


@given(seeds, beacons, entry_ids, prize_lists)
def test_the_draw_is_the_formats_draw_and_picks_no_entry_twice(
    seed: bytes, beacon: bytes, ids: list[str], prizes: tuple[rules.Prize, ...]
) -> None:
    root, winners = rules.winners_of(seed, beacon, ids, prizes)
    expected_root, expected = draw_by_hand(seed, beacon, ids, [p.count for p in prizes])
    assert root == expected_root
    assert [(w.tier, w.seq, w.entry_id) for w in winners] == expected
    assert len({w.entry_id for w in winners}) == len(winners) == min(len(ids), sum(p.count for p in prizes))
    assert [w.tier for w in winners] == sorted(w.tier for w in winners)  # tier 1 first


@given(seeds, beacons, entry_ids, prize_lists)
def test_the_draw_is_a_pure_function_of_the_published_data(
    seed: bytes, beacon: bytes, ids: list[str], prizes: tuple[rules.Prize, ...]
) -> None:
    first = rules.winners_of(seed, beacon, ids, prizes)
    again = rules.winners_of(bytes(seed), bytes(beacon), list(ids), rules.prizes_from_json(rules.prizes_json(prizes)))
    assert first == again
    published = {
        "period": "2026-10",
        "status": "drawn",
        "commitment": rules.commitment(seed),
        "entries_count": len(ids),
        "entries_root": first[0].hex(),
        "seed": seed.hex(),
        "beacon": beacon.hex(),
        "prizes": rules.prizes_json(prizes),
        "winners": [{"tier": w.tier, "seq": w.seq, "entry_id": w.entry_id} for w in first[1]],
    }
    entries = [{"seq": n, "entry_id": e} for n, e in enumerate(ids, start=1)]
    assert check_draw(published, entries) == []


def test_the_check_finds_a_changed_seed_beacon_entry_or_winner() -> None:
    seed, ids = bytes(range(32)), [hashlib.sha256(bytes([n])).hexdigest() for n in range(30)]
    prizes = rules.DEFAULT_PRIZES
    root, winners = rules.winners_of(seed, b"\x01", ids, prizes)
    published = {
        "status": "drawn",
        "commitment": rules.commitment(seed),
        "entries_count": 30,
        "entries_root": root.hex(),
        "seed": seed.hex(),
        "beacon": "01",
        "prizes": rules.prizes_json(prizes),
        "winners": [{"tier": w.tier, "seq": w.seq, "entry_id": w.entry_id} for w in winners],
    }
    entries = [{"seq": n, "entry_id": e} for n, e in enumerate(ids, start=1)]
    assert check_draw(published, entries) == []
    assert check_draw({**published, "beacon": "02"}, entries)
    assert any("commitment" in p for p in check_draw({**published, "seed": "00" * 32}, entries))
    assert check_draw(published, [*entries[:-1], {"seq": 30, "entry_id": "00" * 32}])
    assert check_draw({**published, "winners": published["winners"][::-1]}, entries)
    assert check_draw({**published, "status": "closed"}, entries)


def test_prizes_setting_is_json_tiers_names_counts() -> None:
    prizes = rules.parse_prizes(
        '[{"tier": 2, "name": "二等奖", "count": 3}, {"tier": 1, "name": "一等奖", "count": 1}]'
    )
    assert prizes == (rules.Prize(1, "一等奖", 1), rules.Prize(2, "二等奖", 3))
    assert rules.tiers_in_draw_order(prizes, 3) == [1, 2, 2]
    for bad in ("[]", "x", '[{"tier": 2, "name": "a", "count": 1}]', '[{"tier": 1, "name": "a", "count": 0}]'):
        with pytest.raises(ValueError):
            rules.parse_prizes(bad)
    settings = Settings.from_env(
        {"LOTTERY_PRIZES": '[{"tier": 1, "name": "大奖", "count": 2}]', "LOTTERY_MIN_TOTAL": "50"}
    )
    assert settings.lottery_prizes == (rules.Prize(1, "大奖", 2),) and str(settings.lottery_min_total) == "50.00"
    assert Settings.from_env({}).lottery_prizes == rules.DEFAULT_PRIZES
    for name, value in (("LOTTERY_MIN_TOTAL", "1.001"), ("LOTTERY_MIN_TOTAL", "-1"), ("LOTTERY_PRIZES", "{}")):
        with pytest.raises(ConfigError):
            Settings.from_env({name: value})
    assert _beacon("00ff") == b"\x00\xff"
    with pytest.raises(CliError):
        _beacon("xyz")
