"""What someone who can write to the database can do, with SQL alone (and our own format code, which is
public): rewrite a record and sign it with a key of their own, re-seal the chain after it, rewrite or roll back
the log's tables. The insider tests use these to attack; the service must catch each attack."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from invoicing import formats, merkle
from invoicing.keys import Signer
from invoicing.transparency import LogSigner

LOG_TABLES = ("log_leaves", "log_tiles", "log_head")


def attacker() -> Signer:
    """A signing key the service never trusted."""
    return Signer.from_private(Ed25519PrivateKey.generate())


def _core(content: dict[str, Any], record_hash: str) -> str:
    if content["kind"] == "void":
        return formats.void_signing_core(content, record_hash)
    return formats.content_signing_core(content, record_hash)


async def rewrite(conn: asyncpg.Connection, invoice_id: str, signer: Signer, **changes: str) -> str:
    """Change fields of an invoice's stored content, re-hash and re-sign it with `signer`, make the row's
    columns agree, and re-seal every later record of its series (and the series head) so the chain links.
    Returns the record's new hash."""
    row = await conn.fetchrow("SELECT series_id, chain_seq, content FROM invoices WHERE id = $1", uuid.UUID(invoice_id))
    content = {**row["content"], **changes}
    new_hash = formats.record_hash(content)
    await conn.execute(
        "UPDATE invoices SET content = $2::text::jsonb, record_hash = $3, signature = $4, key_id = $5, "
        "total_amount = $6, total_tax = $7, total = $8 WHERE id = $1",
        uuid.UUID(invoice_id),
        formats.canonical_bytes(content).decode(),
        new_hash,
        signer.sign(_core(content, new_hash)),
        signer.key_id,
        *(Decimal(content[k]) for k in ("total_amount", "total_tax", "total")),
    )
    await reseal(conn, row["series_id"], row["chain_seq"], new_hash, signer)
    return new_hash


async def reseal(conn: asyncpg.Connection, series_id: int, after_seq: int, prev_hash: str, signer: Signer) -> None:
    """Re-link every record of the series after `after_seq` to `prev_hash` onwards, re-signed by `signer`, and
    move the series head to the last one."""
    rows = await conn.fetch(
        "SELECT 'invoices' AS t, chain_seq, content FROM invoices WHERE series_id = $1 AND chain_seq > $2 "
        "UNION ALL SELECT 'voids', chain_seq, content FROM voids WHERE series_id = $1 AND chain_seq > $2 "
        "ORDER BY chain_seq",
        series_id,
        after_seq,
    )
    for row in rows:
        content = {**row["content"], "prev_hash": prev_hash}
        new_hash = formats.record_hash(content)
        await conn.execute(
            f"UPDATE {row['t']} SET content = $3::text::jsonb, prev_hash = $4, record_hash = $5, signature = $6, "
            "key_id = $7 WHERE series_id = $1 AND chain_seq = $2",
            series_id,
            row["chain_seq"],
            formats.canonical_bytes(content).decode(),
            prev_hash,
            new_hash,
            signer.sign(_core(content, new_hash)),
            signer.key_id,
        )
        prev_hash = new_hash
    await conn.execute("UPDATE series SET last_hash = $2 WHERE id = $1", series_id, prev_hash)


async def snapshot_log(conn: asyncpg.Connection) -> dict[str, list[asyncpg.Record]]:
    """The log's tables as they are now (what a backup holds)."""
    return {table: list(await conn.fetch(f"SELECT * FROM {table}")) for table in LOG_TABLES}


async def restore_log(conn: asyncpg.Connection, snapshot: dict[str, list[asyncpg.Record]]) -> None:
    """Put the log's tables back as in `snapshot` (a restored backup: the log goes back in time)."""
    for table in LOG_TABLES:
        await conn.execute(f"DELETE FROM {table}")
        for row in snapshot[table]:
            names = list(row.keys())
            marks = ", ".join(f"${i + 1}" for i in range(len(names)))
            await conn.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", *row.values())


async def rebuild_log_without(conn: asyncpg.Connection, record_hash: str, log_key: LogSigner) -> int:
    """Rewrite the whole log, leaving one record out, and sign the new history with the log's own key (the
    strongest insider: they hold the log key too). Returns the new size."""
    hashes = [r["record_hash"] for r in await conn.fetch("SELECT record_hash FROM log_leaves ORDER BY leaf_index")]
    kept = [h for h in hashes if h != record_hash]
    for table in LOG_TABLES:
        await conn.execute(f"DELETE FROM {table}")
    appended = merkle.append(0, {}, [bytes.fromhex(h) for h in kept])
    for key, data in appended.tiles.items():
        await conn.execute("INSERT INTO log_tiles (level, idx, data) VALUES ($1, $2, $3)", key.level, key.index, data)
    await conn.executemany("INSERT INTO log_leaves (leaf_index, record_hash) VALUES ($1, $2)", list(enumerate(kept)))
    note = log_key.sign(appended.size, appended.root)
    await conn.execute(
        "INSERT INTO log_head (id, size, root, checkpoint) VALUES (true, $1, $2, $3)",
        appended.size,
        appended.root,
        note,
    )
    return appended.size
