"""The log's Merkle core (invoicing/merkle.py, invoicing/tiles.py) against RFC 9162 written out plainly
here: MTH (§2.1.1), PATH (§2.1.3.1) and PROOF/SUBPROOF (§2.1.4.1) over a list of leaves. Logs are built
the way the sequencer will build them, by appending batches into a store of tiles keyed by level and
index, and every proof is computed from tiles cut out of that store."""

from __future__ import annotations

import hashlib
import random
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invoicing import merkle
from invoicing.merkle import (
    EMPTY_ROOT,
    append,
    consistency_proof,
    inclusion_proof,
    root,
    tiles_for_append,
    tiles_for_consistency,
    tiles_for_inclusion,
    tiles_for_root,
)
from invoicing.merkle_verify import verify_consistency, verify_inclusion
from invoicing.tiles import (
    ENTRIES,
    MAX_SIZE,
    LogError,
    TileKey,
    TileStoreError,
    decode_bundle,
    encode_bundle,
    level_count,
    right_edge,
    trim,
)

BOUNDED = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
BIG = 70_000  # tlog-tiles' own example size: full and partial tiles at levels 0 and 1, a level-2 tile
REFERENCE_SIZE = BIG + 1000


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def entry(i: int) -> bytes:
    """The i-th entry of every test log: 32 bytes, as a record_hash is."""
    return sha(b"record %d" % i)


class Reference:
    """RFC 9162 §2.1 straight from the text, over leaves D[0:n], with MTH memoised per range."""

    def __init__(self, entries: list[bytes]) -> None:
        self.leaves = [sha(b"\x00" + e) for e in entries]
        self.memo: dict[tuple[int, int], bytes] = {}

    @staticmethod
    def split(n: int) -> int:
        """The largest power of two smaller than n."""
        k = 1
        while k * 2 < n:
            k *= 2
        return k

    def mth(self, lo: int, hi: int) -> bytes:
        if (lo, hi) not in self.memo:
            n = hi - lo
            if n == 0:
                value = sha(b"")
            elif n == 1:
                value = self.leaves[lo]
            else:
                k = self.split(n)
                value = sha(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi))
            self.memo[(lo, hi)] = value
        return self.memo[(lo, hi)]

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        if hi - lo == 1:
            return []
        k = self.split(hi - lo)
        if m - lo < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m, lo + k, hi), self.mth(lo, lo + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        return self.subproof(m, 0, n, True)

    def subproof(self, m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
        if m == hi:
            return [] if whole else [self.mth(lo, hi)]
        k = self.split(hi - lo)
        if m - lo <= k:
            return [*self.subproof(m, lo, lo + k, whole), self.mth(lo + k, hi)]
        return [*self.subproof(m, lo + k, hi, False), self.mth(lo, lo + k)]


class Store:
    """Tiles as the database will keep them: one blob per (level, index), replaced when it widens."""

    def __init__(self) -> None:
        self.blobs: dict[tuple[int, int], bytes] = {}
        self.size = 0
        self.written: list[dict[TileKey, bytes]] = []

    def view(self, keys: frozenset[TileKey]) -> dict[TileKey, bytes]:
        return {key: trim(key, self.blobs[(key.level, key.index)]) for key in keys}

    def append(self, entries: list[bytes]) -> merkle.Appended:
        appended = append(self.size, self.view(tiles_for_append(self.size)), entries)
        for key, data in appended.tiles.items():
            self.blobs[(key.level, key.index)] = data
        self.size = appended.size
        self.written.append(appended.tiles)
        return appended


@cache
def reference() -> Reference:
    return Reference([entry(i) for i in range(REFERENCE_SIZE)])


@cache
def big_store() -> Store:
    store = Store()
    rng = random.Random(9162)
    while store.size < BIG:
        n = min(BIG - store.size, rng.choice([1, 7, 255, 256, 257, 3000]))
        store.append([entry(i) for i in range(store.size, store.size + n)])
    return store


@cache
def small_store() -> Store:
    store = Store()
    for i in range(70):
        store.append([entry(i)])
    return store


def flip(value: bytes, bit: int) -> bytes:
    return bytes([value[0] ^ (1 << (bit % 8))]) + value[1:]


# RFC 6962's test leaves and the roots of their prefixes (as in transparency-dev/merkle's testonly).
VECTOR_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
VECTOR_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_rfc6962_vectors() -> None:
    leaves = [bytes.fromhex(h) for h in VECTOR_LEAVES]
    ref = Reference(leaves)
    store = Store()
    assert root(0, {}) == EMPTY_ROOT == bytes.fromhex(VECTOR_ROOTS[0])
    for n in range(1, 9):
        appended = store.append([leaves[n - 1]])
        assert appended.root == ref.mth(0, n) == bytes.fromhex(VECTOR_ROOTS[n])
        for i in range(n):
            assert verify_inclusion(merkle.leaf_hash(leaves[i]), i, n, ref.path(i, 0, n), appended.root)


def test_every_proof_of_small_trees() -> None:
    store, ref = small_store(), reference()
    for n in range(1, store.size + 1):
        top = ref.mth(0, n)
        assert root(n, store.view(tiles_for_root(n))) == top
        for i in range(n):
            proof = inclusion_proof(i, n, store.view(tiles_for_inclusion(i, n)))
            assert proof == ref.path(i, 0, n)
            assert verify_inclusion(ref.leaves[i], i, n, proof, top)
        for m in range(1, n + 1):
            proof = consistency_proof(m, n, store.view(tiles_for_consistency(m, n)))
            assert proof == ref.proof(m, n)
            assert verify_consistency(m, n, ref.mth(0, m), top, proof)


def test_small_tampering_fails() -> None:
    """Wrong index, wrong sizes with their roots, and proofs of the wrong length for the claimed size.
    (With the right root, a proof may also verify under another claimed size of the same proof length:
    RFC 9162's algorithms do not bind the size, which comes with the root from one checkpoint.)"""
    ref = reference()
    for n in range(1, 40):
        top = ref.mth(0, n)
        for i in range(n):
            proof = ref.path(i, 0, n)
            for j in range(n):
                assert verify_inclusion(ref.leaves[i], j, n, proof, top) == (i == j)
            for other in range(i + 1, 40):
                if other != n:
                    assert not verify_inclusion(ref.leaves[i], i, other, proof, ref.mth(0, other))
                    if len(ref.path(i, 0, other)) != len(proof):
                        assert not verify_inclusion(ref.leaves[i], i, other, proof, top)
        for m in range(1, n + 1):
            proof = ref.proof(m, n)
            for other in range(1, n):
                if other != m:
                    assert not verify_consistency(other, n, ref.mth(0, other), top, proof)
            for other in range(m, 40):
                if other != n:
                    assert not verify_consistency(m, other, ref.mth(0, m), ref.mth(0, other), proof)
                    if len(ref.proof(m, other)) != len(proof):
                        assert not verify_consistency(m, other, ref.mth(0, m), top, proof)


def log_sizes() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(1, 5000), st.integers(1, BIG), st.sampled_from([255, 256, 257, 65535, 65536, BIG]))


@BOUNDED
@given(st.data())
def test_inclusion_proofs(data: st.DataObject) -> None:
    store, ref = big_store(), reference()
    n = data.draw(log_sizes())
    i = data.draw(st.integers(0, n - 1))
    keys = tiles_for_inclusion(i, n)
    assert len(keys) <= 2 * len(range(0, n.bit_length(), 8)) + 1
    proof = inclusion_proof(i, n, store.view(keys))
    assert proof == ref.path(i, 0, n)
    top = ref.mth(0, n)
    assert verify_inclusion(ref.leaves[i], i, n, proof, top)
    assert not verify_inclusion(ref.leaves[i ^ 1], i, n, proof, top)
    assert not verify_inclusion(ref.leaves[i], i, n, proof, ref.mth(0, n - 1))
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof]
        bad[k] = flip(bad[k], data.draw(st.integers(0, 7)))
        assert not verify_inclusion(ref.leaves[i], i, n, bad, top)
        assert not verify_inclusion(ref.leaves[i], i, n, proof[:-1], top)
        assert not verify_inclusion(ref.leaves[i], i, n, proof[1:], top)
        assert not verify_inclusion(ref.leaves[i], i, n, [proof[0][:31], *proof[1:]], top)
    assert not verify_inclusion(ref.leaves[i], i, n, [*proof, top], top)
    assert not verify_inclusion(ref.leaves[i], i, n, [top, *proof], top)
    j = data.draw(st.integers(0, n - 1))
    assert verify_inclusion(ref.leaves[i], j, n, proof, top) == (i == j)


@given(st.integers(1, MAX_SIZE), st.data())
def test_every_leaf_of_a_level_0_tile_reads_the_same_tiles(size: int, data: st.DataObject) -> None:
    """`tiles_for_inclusion` works the tiles out once per level-0 tile: that holds only if every leaf of the tile
    needs the same ones, which is checked here against the ranges of each leaf's own path."""
    i = data.draw(st.integers(0, size - 1))
    j = data.draw(st.integers(i >> 8 << 8, min(size - 1, (i >> 8 << 8) + 255)))
    own = merkle._needed(merkle._inclusion_ranges(j, size), size)
    assert tiles_for_inclusion(i, size) == own


# One cache of tile rows across proofs in growing trees, as the public side's LogReader keeps it: a tile's key
# names its width, so a partial tile's rows never stand in for the full tile's, nor an old width's for a new one.
SHARED_ROWS: merkle.TileRows = {}


@BOUNDED
@given(st.lists(st.tuples(st.integers(2, BIG), st.floats(0, 1)), min_size=1, max_size=8))
def test_inclusion_proofs_with_kept_tile_rows_are_the_reference_paths(asks: list[tuple[int, float]]) -> None:
    store, ref = big_store(), reference()
    for n, where in sorted(asks):  # trees as they grow, with the rows of every earlier proof kept
        i = min(n - 1, int(where * n))
        assert inclusion_proof(i, n, store.view(tiles_for_inclusion(i, n)), SHARED_ROWS) == ref.path(i, 0, n)
    assert SHARED_ROWS


@BOUNDED
@given(st.data())
def test_consistency_proofs(data: st.DataObject) -> None:
    store, ref = big_store(), reference()
    n = data.draw(log_sizes())
    m = data.draw(st.one_of(st.integers(1, n), st.sampled_from([1, n, max(1, n - 1), 1 << (n.bit_length() - 1)])))
    keys = tiles_for_consistency(m, n)
    assert len(keys) <= 3 * len(range(0, n.bit_length(), 8)) + 1
    proof = consistency_proof(m, n, store.view(keys))
    assert proof == ref.proof(m, n)
    old, new = ref.mth(0, m), ref.mth(0, n)
    assert verify_consistency(m, n, old, new, proof)
    assert not verify_consistency(m, n, new, old, proof) or m == n
    assert not verify_consistency(m, n, flip(old, 0), new, proof)
    assert not verify_consistency(m, n, old, flip(new, 0), proof)
    assert not verify_consistency(m, n, old, new, [*proof, old])
    assert not verify_consistency(m, n, old, new, [new, *proof])
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof]
        bad[k] = flip(bad[k], data.draw(st.integers(0, 7)))
        assert not verify_consistency(m, n, old, new, bad)
        assert not verify_consistency(m, n, old, new, proof[:-1])
        assert not verify_consistency(m, n, old, new, proof[1:])
    if m < n:
        assert not verify_consistency(n, m, new, old, proof)
        assert not verify_consistency(m, n, old, new, [])


def test_verifiers_refuse_impossible_arguments() -> None:
    ref = reference()
    top = ref.mth(0, 4)
    assert not verify_inclusion(ref.leaves[0], -1, 4, ref.path(0, 0, 4), top)
    assert not verify_inclusion(ref.leaves[0], 4, 4, ref.path(0, 0, 4), top)
    assert not verify_inclusion(ref.leaves[0], 0, 0, [], EMPTY_ROOT)
    assert verify_inclusion(ref.leaves[0], 0, 1, [], ref.leaves[0])
    assert not verify_consistency(0, 4, EMPTY_ROOT, top, [])
    assert not verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(4, 4, top, top, [])
    assert not verify_consistency(4, 4, top, top, [top])
    assert not verify_consistency(4, 4, top, ref.mth(0, 3), [])


@BOUNDED
@given(st.lists(st.one_of(st.integers(1, 300), st.sampled_from([255, 256, 257, 1024, 2500])), min_size=1, max_size=10))
def test_tiles_written_by_appends(batches: list[int]) -> None:
    ref = reference()
    store = Store()
    frozen: dict[tuple[int, int], bytes] = {}
    for count in batches:
        old = store.size
        appended = store.append([entry(i) for i in range(old, old + count)])
        n = appended.size
        assert n == old + count and appended.root == ref.mth(0, n)
        expected = set()
        for level in [ENTRIES, *range(4)]:
            before = old if level == ENTRIES else level_count(old, level)
            after = n if level == ENTRIES else level_count(n, level)
            for index in range(before >> 8, (after + 255) >> 8 if after > before else before >> 8):
                expected.add(TileKey(level, index, min(256, after - index * 256)))
        assert set(appended.tiles) == expected
        for key, data in appended.tiles.items():
            assert (key.level, key.index) not in frozen
            first = key.index * 256
            if key.level == ENTRIES:
                assert decode_bundle(data) == [entry(i) for i in range(first, first + key.width)]
            else:
                span = 256**key.level
                hashes = [ref.mth((first + j) * span, (first + j + 1) * span) for j in range(key.width)]
                assert data == b"".join(hashes)
            if key.full:
                frozen[(key.level, key.index)] = data
    assert {key for key in tiles_for_append(store.size) if key.level != ENTRIES} == set(right_edge(store.size))


def test_tile_counts_of_the_spec_example() -> None:
    store = big_store()
    layout = sorted((level, index, len(data) // 32) for (level, index), data in store.blobs.items() if level >= 0)
    assert layout == [(0, i, 256) for i in range(273)] + [(0, 273, 112), (1, 0, 256), (1, 1, 17), (2, 0, 1)]
    assert right_edge(BIG) == [TileKey(0, 273, 112), TileKey(1, 1, 17), TileKey(2, 0, 1)]
    assert tiles_for_root(BIG) == frozenset(right_edge(BIG))
    assert right_edge(256) == [TileKey(1, 0, 1)] == list(tiles_for_root(256))
    assert right_edge(0) == [] and tiles_for_root(0) == frozenset()
    ref = reference()
    for (level, index), data in store.blobs.items():
        if level >= 1:
            span = 256**level
            assert data == b"".join(
                ref.mth(j * span, (j + 1) * span) for j in range(index * 256, index * 256 + len(data) // 32)
            )


def test_append_hashes_only_the_new_work(monkeypatch: pytest.MonkeyPatch) -> None:
    store = big_store()
    calls = 0
    real = hashlib.sha256

    def counting(data: bytes = b"") -> Any:
        nonlocal calls
        calls += 1
        return real(data)

    monkeypatch.setattr(merkle, "_sha256", counting)
    for size, k in [(BIG, 1), (65535, 1), (65535, 1000), (BIG, 600)]:
        view = {}
        for key in tiles_for_append(size):
            view[key] = trim(key, store.blobs[(key.level, key.index)])
        calls = 0
        appended = append(size, view, [entry(size + i) for i in range(k)])
        assert appended.root == reference().mth(0, size + k)
        assert calls <= 2 * k + 3 * 256 + 64, (size, k, calls)


def test_append_of_nothing_and_refusals() -> None:
    store = small_store()
    view = store.view(tiles_for_append(70))
    assert append(70, view, []) == merkle.Appended(70, reference().mth(0, 70), {})
    assert append(0, {}, []).root == EMPTY_ROOT
    with pytest.raises(LogError):
        append(MAX_SIZE, {}, [b"x"])
    with pytest.raises(LogError):
        append(-1, {}, [b"x"])
    with pytest.raises(LogError):
        append(0, {}, [b"x" * 65536])
    with pytest.raises(TileStoreError):
        append(70, {}, [b"x"])
    with pytest.raises(TileStoreError):
        append(70, {**view, TileKey(ENTRIES, 0, 70): encode_bundle([b"x"] * 69)}, [b"x"])


def test_proof_arguments_refused() -> None:
    for call in [
        lambda: tiles_for_inclusion(5, 5),
        lambda: tiles_for_inclusion(-1, 5),
        lambda: tiles_for_inclusion(0, 0),
        lambda: inclusion_proof(0, 0, {}),
        lambda: tiles_for_consistency(0, 5),
        lambda: tiles_for_consistency(6, 5),
        lambda: consistency_proof(3, 2, {}),
        lambda: tiles_for_root(-1),
        lambda: root(MAX_SIZE + 1, {}),
    ]:
        with pytest.raises(LogError):
            call()
    assert issubclass(LogError, ValueError)


def test_missing_or_damaged_tiles_are_store_errors() -> None:
    store = small_store()
    view = store.view(tiles_for_inclusion(3, 70))
    key = next(iter(view))
    with pytest.raises(TileStoreError):
        inclusion_proof(3, 70, {k: v for k, v in view.items() if k != key})
    with pytest.raises(TileStoreError):
        inclusion_proof(3, 70, {**view, key: view[key][:-1]})
    with pytest.raises(TileStoreError):
        trim(TileKey(0, 0, 71), store.blobs[(0, 0)])
    with pytest.raises(TileStoreError):
        trim(TileKey(ENTRIES, 0, 71), store.blobs[(ENTRIES, 0)])


def test_hash_encoding() -> None:
    value = sha(b"x")
    assert merkle.parse_hash(merkle.format_hash(value)) == value
    good = merkle.format_hash(value)
    for bad in ["", good[:-1], good + "=", good.replace("=", "A"), "é" + good[1:], good[:-2] + "Z=", " " + good]:
        with pytest.raises(LogError):
            merkle.parse_hash(bad)
    with pytest.raises(LogError):
        merkle.parse_hash(merkle.format_hash(value[:31]))


@given(st.integers(min_value=0, max_value=700))
def test_the_streaming_root_is_the_reference_mth(size: int) -> None:
    builder = merkle.RootBuilder()
    for i in range(size):
        builder.add(entry(i))
    assert builder.size == size and builder.root() == reference().mth(0, size)
