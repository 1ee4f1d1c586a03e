"""The tile layout of the transparency log (FORMATS.md "Transparency log", after c2sp.org/tlog-tiles).

Pure: no I/O. A tile at level L holds consecutive Merkle Tree Hashes of tree level 8·L (a level-0 tile
holds leaf hashes, a level-L hash covers 256**L entries); a full tile holds 256 of them, a partial tile
1..255. Entry bundles (level `ENTRIES` here) hold the entries themselves, each as a big-endian uint16
length and its bytes. A tile is named by `TileKey` and served at `TileKey.path()`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

HASH_SIZE = 32
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
ENTRIES = -1  # the level of entry bundles
MAX_LEVEL = 63  # tlog-tiles: L is 0..63
MAX_SIZE = (1 << 63) - 1  # tree sizes and indices fit a PostgreSQL bigint
MAX_ENTRY = 0xFFFF  # an entry's length must fit the bundle's uint16 prefix


class LogError(ValueError):
    """An impossible argument to a log function (index beyond the tree, malformed tile path, ...):
    the caller's mistake, an HTTP 400."""


class TileStoreError(RuntimeError):
    """A tile the computation needs is missing or has the wrong length: the store is behind or
    damaged, not the caller's mistake (HTTP 500)."""


@dataclass(frozen=True, order=True)
class TileKey:
    """Tile `index` at `level` (`ENTRIES` for an entry bundle) holding `width` hashes or entries."""

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if not (self.level == ENTRIES or 0 <= self.level <= MAX_LEVEL):
            raise LogError(f"tile level {self.level} is not {ENTRIES} or 0..{MAX_LEVEL}")
        if not 0 <= self.index <= MAX_SIZE >> TILE_HEIGHT:
            raise LogError(f"tile index {self.index} out of range")
        if not 1 <= self.width <= TILE_WIDTH:
            raise LogError(f"tile width {self.width} is not 1..{TILE_WIDTH}")

    @property
    def full(self) -> bool:
        """Whether the tile is full (and so never changes again)."""
        return self.width == TILE_WIDTH

    def path(self) -> str:
        """The tlog-tiles path: `tile/{L}/{N}[.p/{W}]` or `tile/entries/{N}[.p/{W}]`, N in groups of
        three digits, all but the last prefixed `x` (1234067 → `x001/x234/067`)."""
        digits = str(self.index)
        digits = "0" * (-len(digits) % 3) + digits
        groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
        level = "entries" if self.level == ENTRIES else str(self.level)
        tail = "" if self.full else f".p/{self.width}"
        return f"tile/{level}/" + "".join(f"x{g}/" for g in groups[:-1]) + groups[-1] + tail


_PATH = re.compile(r"tile/(entries|[0-9]{1,2})/((?:x[0-9]{3}/){0,6}[0-9]{3})(?:\.p/([0-9]{1,3}))?", re.ASCII)


def parse_tile_path(path: str) -> TileKey:
    """The `TileKey` of a tlog-tiles path; `LogError` unless `path` is exactly the canonical path of a
    tile (no leading zeros in L or W, W 1..255, no redundant `x000/` groups, ASCII digits only)."""
    match = _PATH.fullmatch(path)
    if match is None:
        raise LogError(f"malformed tile path {path!r}")
    level_text, index_text, width_text = match.groups()
    level = ENTRIES if level_text == "entries" else int(level_text)
    width = TILE_WIDTH if width_text is None else int(width_text)
    try:
        key = TileKey(level, int(index_text.replace("x", "").replace("/", "")), width)
    except LogError:
        raise LogError(f"malformed tile path {path!r}") from None
    if key.path() != path:
        raise LogError(f"malformed tile path {path!r}")
    return key


def level_count(size: int, level: int) -> int:
    """How many level-`level` tile hashes (hashes of tree level 8·level) a tree of `size` has."""
    return size >> (TILE_HEIGHT * level)


def tile_for(level: int, index: int, size: int) -> TileKey:
    """The tile holding hash `index` of `level` (of tree level 8·level) in the tree of `size`, with the
    width it has in that tree: full, or the right edge's partial width."""
    count = size if level == ENTRIES else level_count(size, level)
    if not 0 <= index < count:
        raise LogError(f"no hash {index} at level {level} in a tree of size {size}")
    n = index >> TILE_HEIGHT
    return TileKey(level, n, min(TILE_WIDTH, count - (n << TILE_HEIGHT)))


def right_edge(size: int) -> list[TileKey]:
    """The partial hash tiles of the tree of `size`, level 0 upwards: at level L, width
    floor(size / 256**L) mod 256 where that is not 0 (tlog-tiles "Partial Tiles")."""
    _check_size(size)
    edge = []
    level = 0
    while (count := level_count(size, level)) > 0:
        if count % TILE_WIDTH:
            edge.append(TileKey(level, count >> TILE_HEIGHT, count % TILE_WIDTH))
        level += 1
    return edge


def split_hashes(key: TileKey, data: bytes) -> list[bytes]:
    """The hashes of hash tile `key`; `TileStoreError` unless `data` is exactly `key.width` hashes."""
    if key.level == ENTRIES or len(data) != key.width * HASH_SIZE:
        raise TileStoreError(f"{key.path()} has {len(data)} bytes, not {key.width} hashes")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_bundle(entries: Iterable[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length followed by its bytes (tlog-tiles)."""
    out = bytearray()
    for entry in entries:
        if len(entry) > MAX_ENTRY:
            raise LogError(f"an entry of {len(entry)} bytes does not fit a bundle")
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def decode_bundle(data: bytes) -> list[bytes]:
    """The entries of an entry bundle; `TileStoreError` if it is truncated."""
    entries = []
    at = 0
    while at < len(data):
        if at + 2 > len(data):
            raise TileStoreError("entry bundle truncated in a length")
        end = at + 2 + int.from_bytes(data[at : at + 2], "big")
        if end > len(data):
            raise TileStoreError("entry bundle truncated in an entry")
        entries.append(data[at + 2 : end])
        at = end
    return entries


def trim(key: TileKey, stored: bytes) -> bytes:
    """The bytes of tile `key` cut from the `stored` blob of the same level and index, which may be
    wider (the store keeps one blob per tile, widened as the tree grows, and a partial tile of an
    older tree size is a prefix of it). `TileStoreError` if `stored` is narrower than `key`."""
    if key.level != ENTRIES:
        end = key.width * HASH_SIZE
        if len(stored) < end or len(stored) % HASH_SIZE:
            raise TileStoreError(f"stored tile has {len(stored)} bytes, {key.path()} needs {end}")
        return stored[:end]
    end = 0
    for _ in range(key.width):
        if end + 2 > len(stored):
            raise TileStoreError(f"stored bundle is narrower than {key.path()}")
        end += 2 + int.from_bytes(stored[end : end + 2], "big")
    if end > len(stored):
        raise TileStoreError(f"stored bundle is narrower than {key.path()}")
    return stored[:end]


def _check_size(size: int) -> None:
    if not 0 <= size <= MAX_SIZE:
        raise LogError(f"tree size {size} out of range")
