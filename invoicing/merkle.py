"""The transparency log's Merkle tree, computed from tiles (FORMATS.md "Transparency log", RFC 9162 §2.1).

Pure: no I/O. Each operation on the stored log comes as two calls: `tiles_for_*` names the tiles it
reads (so the caller fetches them in one query), then the operation computes from a mapping
`TileKey -> bytes` holding those tiles, each cut to the key's width (`tiles.trim`). A hash the tiles
do not hold directly is computed from them: a perfect subtree from the hashes inside one tile, a
subtree on the right edge from the perfect subtrees it splits into. Hashes are 32 raw bytes.

The proofs' verifiers are in `invoicing/merkle_verify.py`, apart from the generators.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass

from invoicing.tiles import (
    ENTRIES,
    HASH_SIZE,
    MAX_SIZE,
    TILE_HEIGHT,
    TILE_WIDTH,
    LogError,
    TileKey,
    TileStoreError,
    decode_bundle,
    encode_bundle,
    level_count,
    right_edge,
    split_hashes,
    tile_for,
)

Tiles = Mapping[TileKey, bytes]
# The subtrees inside hash tiles (`tile_rows`), by tile: a caller that proves again and again (the public side's
# `LogReader`) keeps them, so that a proof reads a handful of hashes instead of hashing up to 255 per tile level.
TileRows = MutableMapping[TileKey, list[bytes]]
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 9162 §2.1.1: MTH({}) = HASH()
_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 §2.1.1 leaf hash: SHA-256(0x00 || entry)."""
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1 interior node hash: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def format_hash(value: bytes) -> str:
    """A hash in standard base64, as in checkpoints and JSON proofs."""
    return base64.b64encode(value).decode("ascii")


def parse_hash(text: str) -> bytes:
    """A hash from standard, canonical base64 of exactly 32 bytes; `LogError` otherwise."""
    try:
        value = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise LogError("a hash is not base64") from None
    if len(value) != HASH_SIZE or format_hash(value) != text:
        raise LogError("a hash is not canonical base64 of 32 bytes")
    return value


# Every hash a proof or a root needs is MTH(D[lo:hi]) of a node of RFC 9162's recursion: lo is a multiple
# of the least power of two >= hi - lo, so [lo, hi) is one perfect subtree or, on the right edge, a run
# of perfect subtrees of decreasing height.


def _largest_power_below(n: int) -> int:
    """The largest power of two smaller than `n` (n >= 2): RFC 9162's k."""
    return 1 << ((n - 1).bit_length() - 1)


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose MTHs make PATH(index, D[size]) (RFC 9162 §2.1.3.1), leaf end first."""
    ranges = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _largest_power_below(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    return ranges[::-1]


def _consistency_ranges(m: int, n: int) -> list[tuple[int, int]]:
    """The ranges whose MTHs make PROOF(m, D[n]) = SUBPROOF(m, D[n], true) (RFC 9162 §2.1.4.1)."""
    ranges = []
    lo, hi, whole = 0, n, True
    while hi != m:
        k = _largest_power_below(hi - lo)
        if m <= lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, whole = lo + k, False
    if not whole:
        ranges.append((lo, hi))
    return ranges[::-1]


def _perfect_subtrees(lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """(height, index) of the perfect subtrees that [lo, hi) splits into, left to right."""
    while lo < hi:
        height = (hi - lo).bit_length() - 1
        yield height, lo >> height
        lo += 1 << height


@functools.lru_cache(maxsize=1 << 16)  # pure; a tree's upper subtrees are on every proof of that size
def _hash_tile_of(height: int, index: int, size: int) -> tuple[TileKey, int, int]:
    """The tile holding the tile-level hashes under perfect subtree (height, index), and their slice."""
    level, rise = divmod(height, TILE_HEIGHT)
    first = index << rise
    key = tile_for(level, first + (1 << rise) - 1, size)
    start = first - (key.index << TILE_HEIGHT)
    return key, start, start + (1 << rise)


def _fold(row: list[bytes]) -> bytes:
    """The MTH of a perfect subtree over a power-of-two row of hashes."""
    while len(row) > 1:
        row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
    return row[0]


def tile_rows(key: TileKey, data: bytes) -> list[bytes]:
    """The perfect subtrees inside hash tile `key`: row 0 its hashes, row r + 1 the node hashes of the pairs of
    row r (the odd last hash of a partial tile has no parent inside it), each row 32-byte hashes end to end.
    A tile of a given key never changes, so neither do its rows."""
    split_hashes(key, data)  # the tile is exactly its width, or TileStoreError
    rows = [data]
    row, pair = data, 2 * HASH_SIZE
    while len(row) >= pair:
        row = b"".join(
            [
                node_hash(row[i : i + HASH_SIZE], row[i + HASH_SIZE : i + pair])
                for i in range(0, len(row) - pair + 1, pair)
            ]
        )
        rows.append(row)
    return rows


def _needed(ranges: Sequence[tuple[int, int]], size: int) -> frozenset[TileKey]:
    return frozenset(_hash_tile_of(h, k, size)[0] for lo, hi in ranges for h, k in _perfect_subtrees(lo, hi))


class _Reader:
    """MTHs of the ranges above, computed from the tiles of the tree of `size` (their subtrees kept in `rows`)."""

    def __init__(self, size: int, tiles: Tiles, rows: TileRows | None = None) -> None:
        self.size = size
        self.tiles = tiles
        self.rows: TileRows = {} if rows is None else rows

    def subtree(self, height: int, index: int) -> bytes:
        """MTH of the perfect subtree (height, index): one hash of its tile's rows."""
        key, start, end = _hash_tile_of(height, index, self.size)
        rows = self.rows.get(key)
        if rows is None:
            rows = self.rows[key] = tile_rows(key, _get(self.tiles, key))
        rise = (end - start).bit_length() - 1
        at = (start >> rise) * HASH_SIZE
        return rows[rise][at : at + HASH_SIZE]

    def mth(self, lo: int, hi: int) -> bytes:
        parts = [self.subtree(height, index) for height, index in _perfect_subtrees(lo, hi)]
        value = parts.pop()
        while parts:
            value = node_hash(parts.pop(), value)
        return value


def tiles_for_root(size: int) -> frozenset[TileKey]:
    """The tiles `root(size, ...)` reads: the partial tiles of the tree's right edge."""
    _check_size(size, 0)
    return _needed([(0, size)] if size else [], size)


def root(size: int, tiles: Tiles) -> bytes:
    """MTH(D[0:size]) (RFC 9162 §2.1.1), from `tiles_for_root(size)`."""
    _check_size(size, 0)
    return _Reader(size, tiles).mth(0, size) if size else EMPTY_ROOT


def tiles_for_inclusion(index: int, size: int) -> frozenset[TileKey]:
    """The tiles `inclusion_proof(index, size, ...)` reads. Every leaf of one level-0 tile reads the same ones (below
    tile height its path stays inside that tile, above it depends on the tile alone), so they are worked out once
    per tile and tree size."""
    _check_inclusion(index, size)
    return _tiles_for_leaf_tile(index >> TILE_HEIGHT, size)


@functools.lru_cache(maxsize=1 << 14)
def _tiles_for_leaf_tile(tile: int, size: int) -> frozenset[TileKey]:
    return _needed(_inclusion_ranges(tile << TILE_HEIGHT, size), size)


def inclusion_proof(index: int, size: int, tiles: Tiles, rows: TileRows | None = None) -> list[bytes]:
    """PATH(index, D[size]) (RFC 9162 §2.1.3.1), from `tiles_for_inclusion(index, size)` (and the tiles' `rows`
    kept from earlier proofs, which this one adds to)."""
    _check_inclusion(index, size)
    reader = _Reader(size, tiles, rows)
    return [reader.mth(lo, hi) for lo, hi in _inclusion_ranges(index, size)]


def tiles_for_consistency(m: int, n: int) -> frozenset[TileKey]:
    """The tiles `consistency_proof(m, n, ...)` reads."""
    _check_consistency(m, n)
    return _needed(_consistency_ranges(m, n), n)


def consistency_proof(m: int, n: int, tiles: Tiles) -> list[bytes]:
    """PROOF(m, D[n]) (RFC 9162 §2.1.4.1) for 1 <= m <= n (empty when m == n), from
    `tiles_for_consistency(m, n)`."""
    _check_consistency(m, n)
    reader = _Reader(n, tiles)
    return [reader.mth(lo, hi) for lo, hi in _consistency_ranges(m, n)]


@dataclass(frozen=True)
class Appended:
    """What an append produced: the new tree size and root, and the tiles to write (hash tiles at
    every level and entry bundles, full and partial; a partial one replaces the narrower blob of the
    same level and index)."""

    size: int
    root: bytes
    tiles: dict[TileKey, bytes]


def tiles_for_append(size: int) -> frozenset[TileKey]:
    """The tiles `append(size, ...)` reads: the partial hash tiles and the partial entry bundle of the
    tree of `size`."""
    keys = set(right_edge(size))
    if size % TILE_WIDTH:
        keys.add(tile_for(ENTRIES, size - 1, size))
    return frozenset(keys)


def append(size: int, tiles: Tiles, entries: Sequence[bytes]) -> Appended:
    """Append `entries` to the tree of `size`, reading `tiles_for_append(size)`. Hashes each new entry
    once, each tile it completes once (255 hashes) and the new right edge once."""
    _check_size(size, 0)
    if size + len(entries) > MAX_SIZE:
        raise LogError("the log would outgrow its maximum size")
    if not entries:
        return Appended(size, root(size, tiles), {})
    written: dict[TileKey, bytes] = {}
    old: list[bytes] = []
    if size % TILE_WIDTH:
        key = tile_for(ENTRIES, size - 1, size)
        old = decode_bundle(_get(tiles, key))
        if len(old) != key.width:
            raise TileStoreError(f"{key.path()} holds {len(old)} entries")
    for key, bundle in _chunks(ENTRIES, size, [*old, *entries]):
        written[key] = encode_bundle(bundle)
    fresh = [leaf_hash(entry) for entry in entries]
    level = 0
    while fresh:
        count = level_count(size, level)
        row: list[bytes] = []
        if count % TILE_WIDTH:
            edge = tile_for(level, count - 1, size)
            row = split_hashes(edge, _get(tiles, edge))
        completed = []
        for key, chunk in _chunks(level, count, [*row, *fresh]):
            written[key] = b"".join(chunk)
            if key.full:
                completed.append(_fold(chunk))
        fresh = completed
        level += 1
    new_size = size + len(entries)
    return Appended(new_size, root(new_size, {**tiles, **written}), written)


def _chunks(level: int, count: int, row: list[bytes]) -> Iterator[tuple[TileKey, list[bytes]]]:
    """`row`, which starts at the first item of the tile holding item `count` of `level`, cut into tiles."""
    first = count >> TILE_HEIGHT
    for i in range(0, len(row), TILE_WIDTH):
        chunk = row[i : i + TILE_WIDTH]
        yield TileKey(level, first + i // TILE_WIDTH, len(chunk)), chunk


def _get(tiles: Tiles, key: TileKey) -> bytes:
    data = tiles.get(key)
    if data is None:
        raise TileStoreError(f"tile {key.path()} was not supplied")
    return data


def _check_size(size: int, least: int) -> None:
    if not least <= size <= MAX_SIZE:
        raise LogError(f"tree size {size} is not {least}..{MAX_SIZE}")


def _check_inclusion(index: int, size: int) -> None:
    _check_size(size, 1)
    if not 0 <= index < size:
        raise LogError(f"leaf index {index} is not below tree size {size}")


def _check_consistency(m: int, n: int) -> None:
    _check_size(n, 1)
    if not 1 <= m <= n:
        raise LogError(f"first tree size {m} is not 1..{n}")


class RootBuilder:
    """The RFC 9162 root of entries given one by one, in O(log n) memory: for an audit that recomputes the
    whole tree from the records, without the stored tiles."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []  # perfect subtrees, largest first: (height, hash)

    def add(self, entry: bytes) -> None:
        """Append one entry."""
        height, value = 0, leaf_hash(entry)
        while self._stack and self._stack[-1][0] == height:
            value = node_hash(self._stack.pop()[1], value)
            height += 1
        self._stack.append((height, value))
        self.size += 1

    def root(self) -> bytes:
        """The root of the entries given so far."""
        if not self._stack:
            return EMPTY_ROOT
        value = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            value = node_hash(left, value)
        return value
