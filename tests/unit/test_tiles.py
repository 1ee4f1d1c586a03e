"""Tile keys, tlog-tiles paths and entry bundles (invoicing/tiles.py)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invoicing.tiles import (
    ENTRIES,
    MAX_SIZE,
    LogError,
    TileKey,
    TileStoreError,
    decode_bundle,
    encode_bundle,
    parse_tile_path,
    tile_for,
    trim,
)

BOUNDED = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def test_paths_of_the_spec() -> None:
    assert TileKey(0, 1234067).path() == "tile/0/x001/x234/067"
    assert TileKey(3, 1234067, 1).path() == "tile/3/x001/x234/067.p/1"
    assert TileKey(0, 0).path() == "tile/0/000"
    assert TileKey(1, 999, 17).path() == "tile/1/999.p/17"
    assert TileKey(63, 1000).path() == "tile/63/x001/000"
    assert TileKey(ENTRIES, 0, 255).path() == "tile/entries/000.p/255"
    assert TileKey(ENTRIES, 273).path() == "tile/entries/273"
    assert parse_tile_path("tile/0/x001/x234/067") == TileKey(0, 1234067, 256)
    assert parse_tile_path("tile/entries/x001/000.p/3") == TileKey(ENTRIES, 1000, 3)


keys = st.builds(
    TileKey,
    st.one_of(st.just(ENTRIES), st.integers(0, 63)),
    st.one_of(st.integers(0, 2000), st.integers(0, MAX_SIZE >> 8)),
    st.one_of(st.just(256), st.integers(1, 256)),
)


@BOUNDED
@given(keys)
def test_paths_round_trip(key: TileKey) -> None:
    assert parse_tile_path(key.path()) == key


@pytest.mark.parametrize(
    "path",
    [
        "",
        "tile",
        "tile/0",
        "tile/0/",
        "/tile/0/000",
        "tile/0/000/",
        "tile/0/0",
        "tile/0/00",
        "tile/0/0000",
        "tile/00/000",
        "tile/01/000",
        "tile/64/000",
        "tile/-1/000",
        "tile/data/000",
        "tile/Entries/000",
        "tile/0/001/234",
        "tile/0/x001",
        "tile/0/x000/001",
        "tile/0/x001/x234/67",
        "tile/0/X001/234",
        "tile/0/x01/234",
        "tile/0/+01",
        "tile/0/ 01",
        "tile/0/00a",
        "tile/0/٠٠١",
        "tile/0/000.p",
        "tile/0/000.p/",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/05",
        "tile/0/000.p/1/2",
        "tile/0/000.p/+1",
        "tile/0/000.P/1",
        "tile/0/000.p/1 ",
        "tile/0/x001/x002/x003/x004/x005/x006/x007/008",
        "tile/0/x999/x999/x999/x999/x999/999",
        "tile/0/000\n",
    ],
)
def test_malformed_paths_refused(path: str) -> None:
    with pytest.raises(LogError):
        parse_tile_path(path)


def test_keys_refuse_impossible_values() -> None:
    for level, index, width in [(-2, 0, 1), (64, 0, 1), (0, -1, 1), (0, 0, 0), (0, 0, 257), (0, 1 << 56, 1)]:
        with pytest.raises(LogError):
            TileKey(level, index, width)
    assert tile_for(0, 256, 70_000) == TileKey(0, 1, 256)
    assert tile_for(0, 69_999, 70_000) == TileKey(0, 273, 112)
    assert tile_for(ENTRIES, 69_999, 70_000) == TileKey(ENTRIES, 273, 112)
    assert tile_for(2, 0, 70_000) == TileKey(2, 0, 1)
    with pytest.raises(LogError):
        tile_for(2, 1, 70_000)


entries = st.binary(max_size=40) | st.builds(
    lambda n, b: bytes([b]) * n, st.sampled_from([255, 256, 65534, 65535]), st.integers(0, 255)
)  # long entries built, not drawn: drawing 64 KiB of bytes is slow
entry_lists = st.lists(entries, max_size=6)


@BOUNDED
@given(entry_lists, entry_lists)
def test_bundles_round_trip_and_trim(head: list[bytes], tail: list[bytes]) -> None:
    data = encode_bundle(head + tail)
    assert decode_bundle(data) == head + tail
    if head:
        assert trim(TileKey(ENTRIES, 0, len(head)), data) == encode_bundle(head)


def test_bundle_codec_refusals() -> None:
    assert encode_bundle([b"ab", b""]) == b"\x00\x02ab\x00\x00"
    assert decode_bundle(b"") == []
    with pytest.raises(LogError):
        encode_bundle([b"x" * 65536])
    for bad in [b"\x00", b"\x00\x02a", b"\x00\x01a\x00", b"\xff\xff" + b"x" * 100]:
        with pytest.raises(TileStoreError):
            decode_bundle(bad)
    with pytest.raises(TileStoreError):
        trim(TileKey(ENTRIES, 0, 2), encode_bundle([b"a"]))
    with pytest.raises(TileStoreError):
        trim(TileKey(ENTRIES, 0, 1), b"\x00\x05ab")


def test_trim_of_hash_tiles() -> None:
    blob = bytes(range(32)) * 5
    assert trim(TileKey(0, 0, 3), blob) == blob[:96]
    assert trim(TileKey(0, 0, 5), blob) == blob
    with pytest.raises(TileStoreError):
        trim(TileKey(0, 0, 6), blob)
    with pytest.raises(TileStoreError):
        trim(TileKey(0, 0, 1), blob + b"x")
