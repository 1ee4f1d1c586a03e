"""The public transparency log (FORMATS.md "Transparency log"): the sequencer that moves queued chain records
into the log, and the reader that serves its checkpoint, tiles and proofs.

Issuing never waits for the log: a record is queued in the transaction that appends it to its chain, and the
worker's sequencer appends queued records in batches, each batch in one transaction that writes the new
tiles, the leaves and a checkpoint signed with the log key. Tiles of a given width never change, so readers
keep them; only the checkpoint moves.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from cachetools import LRUCache
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from invoicing import checkpoint, merkle, note
from invoicing import log_repository as repo
from invoicing.log_repository import Head
from invoicing.replicas import Reads
from invoicing.tiles import TileKey, TileStoreError, trim

log = logging.getLogger("invoiceloop.log")
SEQUENCE_BATCH = 1000  # records appended per transaction at most
IDLE_S = 0.2  # the sequencer looks at the queue this often when it is empty


@dataclass(frozen=True)
class LogSigner:
    """The log's identity: its origin (also the key name) and its private key, which is not the invoice key."""

    origin: str
    private_key: Ed25519PrivateKey

    @classmethod
    def load(cls, origin: str, key_file: Path) -> LogSigner:
        """The log key from its file (created on first use) under this origin."""
        if not note.valid_name(origin):
            raise ValueError(f"LOG_ORIGIN {origin!r} cannot be a key name (no spaces, no '+')")
        return cls(origin, checkpoint.load_log_key(key_file))

    @property
    def verifier_key(self) -> str:
        """The verifier key outside parties pin: `{origin}+{key id}+{base64(0x01 || public key)}`."""
        return note.verifier_key(self.origin, note.public_key(self.private_key))

    def sign(self, size: int, root: bytes) -> str:
        """The signed checkpoint of the tree of `size` with `root`."""
        return checkpoint.sign_checkpoint(checkpoint.Checkpoint(self.origin, size, root), self.private_key)


async def stored_tiles(conn: asyncpg.Connection, keys: Iterable[TileKey]) -> dict[TileKey, bytes]:
    """The tiles asked for, cut to their width from the stored blobs; `TileStoreError` for a missing one."""
    keys = list(keys)
    stored = await repo.read_tiles(conn, keys)
    out = {}
    for key in keys:
        blob = stored.get((key.level, key.index))
        if blob is None:
            raise TileStoreError(f"{key.path()} is not stored")
        out[key] = trim(key, blob)
    return out


async def sequence(pool: asyncpg.Pool, signer: LogSigner, limit: int = SEQUENCE_BATCH) -> int:
    """Append up to `limit` queued records to the log and sign the new checkpoint, in one transaction; how many
    records were taken off the queue (0 when it was empty, or another sequencer holds the lock)."""
    async with pool.acquire() as conn, conn.transaction():
        if not await repo.try_sequencer_lock(conn):
            return 0
        head = await repo.head(conn)
        if head is None:
            head = Head(0, merkle.EMPTY_ROOT, signer.sign(0, merkle.EMPTY_ROOT))
            await repo.set_head(conn, head.size, head.root, head.checkpoint)
        hashes = await repo.take_queued(conn, limit)
        known = await repo.already_logged(conn, hashes) if hashes else set()
        fresh = list(dict.fromkeys(h for h in hashes if h not in known))
        if len(fresh) != len(hashes):
            log.warning("integrity alarm: %d queued record(s) were in the log already", len(hashes) - len(fresh))
        if fresh:
            tiles = await stored_tiles(conn, merkle.tiles_for_append(head.size))
            appended = merkle.append(head.size, tiles, [bytes.fromhex(h) for h in fresh])
            await repo.write_tiles(conn, appended.tiles)
            await repo.insert_leaves(conn, head.size, fresh)
            await repo.set_head(conn, appended.size, appended.root, signer.sign(appended.size, appended.root))
        return len(hashes)


async def run_sequencer(pool: asyncpg.Pool, signer: LogSigner) -> None:
    """Sequence for as long as the task runs: batch after batch while records wait, a short sleep when none do.
    A failure is logged and tried again (the queue keeps what was not appended)."""
    while True:
        try:
            taken = await sequence(pool, signer)
        except (OSError, asyncpg.PostgresError, TileStoreError) as exc:
            log.error("the log sequencer failed (%s); trying again", type(exc).__name__, exc_info=exc)
            taken = 0
            await asyncio.sleep(1.0)
        if taken < SEQUENCE_BATCH:
            await asyncio.sleep(IDLE_S)


@dataclass(frozen=True)
class InclusionProof:
    """A record's place in the log and the proof that the checkpoint's tree holds it (hashes in base64)."""

    leaf_index: int
    tree_size: int
    hashes: list[str]
    checkpoint: str

    def as_json(self) -> dict[str, object]:
        """The `log` member of a verification answer (API.md)."""
        return {
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "inclusion_proof": self.hashes,
            "checkpoint": self.checkpoint,
        }


def _rows_bytes(rows: list[bytes]) -> int:
    return sum(map(len, rows))


class LogReader:
    """Reads the log for the public side: the latest checkpoint (read again at most every `head_ttl_s`),
    tiles and the subtrees inside them (kept, since a tile of a given width never changes) and inclusion proofs
    (kept per leaf and size)."""

    def __init__(self, reads: Reads, head_ttl_s: float = 1.0, tile_bytes: int = 32 * 1024 * 1024) -> None:
        self.reads, self.head_ttl_s = reads, head_ttl_s
        self.tiles: LRUCache[TileKey, bytes] = LRUCache(maxsize=tile_bytes, getsizeof=len)
        # each tile's subtrees (`merkle.tile_rows`, twice the tile's bytes): a proof then hashes nothing inside a tile
        self.rows: LRUCache[TileKey, list[bytes]] = LRUCache(maxsize=2 * tile_bytes, getsizeof=_rows_bytes)
        self.proofs: LRUCache[tuple[int, int], list[str]] = LRUCache(maxsize=50_000)
        self._head: Head | None = None
        self._read_at = -1e9
        self._lock = asyncio.Lock()

    async def head(self) -> Head | None:
        """The latest checkpoint (None before the sequencer's first). A checkpoint is kept for `head_ttl_s`; "none
        yet" is not kept, since the first may come any moment and a record found in the log must have one."""
        if time.monotonic() - self._read_at < self.head_ttl_s:
            return self._head
        async with self._lock:
            if time.monotonic() - self._read_at >= self.head_ttl_s:
                # Before the log's first checkpoint has reached a replica, the primary's: a record the leaf
                # lookup finds (on the primary, `Reads.found`) always has a checkpoint to be proved against.
                self._head = await self.reads.found(repo.head)
                if self._head is not None:
                    self._read_at = time.monotonic()
        return self._head

    async def read(self, keys: Iterable[TileKey]) -> dict[TileKey, bytes]:
        """These tiles, from what this process keeps or else in one query."""
        out: dict[TileKey, bytes] = {}
        missing = []
        for key in set(keys):
            data = self.tiles.get(key)
            if data is None:
                missing.append(key)
            else:
                out[key] = data
        if missing:
            read = functools.partial(stored_tiles, keys=missing)
            try:
                fetched = await self.reads.run(read)
            except TileStoreError:
                if self.reads.replica is None:
                    raise
                fetched = await self.reads.on_primary(read)  # not replayed on the replica yet
            for key, data in fetched.items():
                out[key] = data
                if len(data) <= self.tiles.maxsize:
                    self.tiles[key] = data
        return out

    async def inclusion(self, leaf_indexes: Iterable[int]) -> dict[int, InclusionProof]:
        """Inclusion proofs of these leaves in the latest checkpoint's tree (leaves beyond it are left out)."""
        head = await self.head()
        if head is None:
            return {}
        wanted = [i for i in set(leaf_indexes) if i < head.size]
        todo = [i for i in wanted if (i, head.size) not in self.proofs]
        if todo:
            tiles = await self.read(k for i in todo for k in merkle.tiles_for_inclusion(i, head.size))
            for i in todo:
                self.proofs[i, head.size] = [
                    merkle.format_hash(h) for h in merkle.inclusion_proof(i, head.size, tiles, self.rows)
                ]
        return {i: InclusionProof(i, head.size, self.proofs[i, head.size], head.checkpoint) for i in wanted}

    async def consistency(self, first: int, second: int) -> list[bytes]:
        """The consistency proof between two tree sizes (`second` no larger than the latest checkpoint's)."""
        return merkle.consistency_proof(first, second, await self.read(merkle.tiles_for_consistency(first, second)))
