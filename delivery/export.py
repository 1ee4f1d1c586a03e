"""A manifest's items streamed from a server-side cursor as JSON, CSV or PDF, so memory stays flat in the
manifest's size. The mapping is `delivery.manifests`'; this module only moves rows and bytes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import asyncpg

from delivery import manifests
from delivery import repository as repo

FETCH_ROWS = 1000  # rows per round trip of the server-side cursor
FILE_CHUNK = 256 * 1024


async def item_batches(pool: asyncpg.Pool, manifest: Mapping[str, Any]) -> AsyncIterator[list[asyncpg.Record]]:
    """The manifest's items, `FETCH_ROWS` at a time, from a cursor inside a read-only transaction. The next
    batch is asked for before this one is handed out, so PostgreSQL works while the caller formats."""
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        cursor = await conn.cursor(repo.MANIFEST_ITEMS, manifest["id"], manifest["manifest_number"])
        pending = asyncio.ensure_future(cursor.fetch(FETCH_ROWS))
        try:
            while rows := await pending:
                pending = asyncio.ensure_future(cursor.fetch(FETCH_ROWS))
                await asyncio.sleep(0)  # let the request go out before the caller's CPU-bound formatting
                yield rows
        finally:
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending


def header(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest as the API shows it."""
    return {
        "id": str(manifest["id"]),
        "manifest_number": manifest["manifest_number"],
        "operator_id": str(manifest["operator_id"]),
        "operator_name": manifest["operator_name"],
        "status": manifest["status"],
        "item_count": manifest["item_count"],
        "created_at": manifest["created_at"],
        "closed_at": manifest["closed_at"],
    }


async def csv_stream(pool: asyncpg.Pool, manifest: Mapping[str, Any]) -> AsyncIterator[bytes]:
    """Header and rows exactly as `manifests.csv_rows` writes them, produced by PostgreSQL's `COPY ... (FORMAT
    csv)` (several times faster than formatting in Python) with its LF record ends turned into CRLF. A bounded
    queue between the COPY and the response keeps memory flat when the client reads slowly."""
    yield manifests.csv_header().encode()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=4)
    producer = asyncio.create_task(_copy_csv(pool, manifest, queue))
    try:
        crlf = CrlfWriter()
        while (chunk := await queue.get()) is not None:
            yield crlf.convert(chunk)
        await producer  # re-raise what stopped the COPY
    finally:
        if not producer.done():
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer


async def _copy_csv(pool: asyncpg.Pool, manifest: Mapping[str, Any], queue: asyncio.Queue[bytes | None]) -> None:
    buffer = bytearray()

    async def sink(data: bytes) -> None:
        buffer.extend(data)
        if len(buffer) >= FILE_CHUNK:
            await queue.put(bytes(buffer))
            buffer.clear()

    try:
        async with pool.acquire() as conn:
            await conn.copy_from_query(
                repo.MANIFEST_ITEMS_COPY,
                manifest["id"],
                manifest["manifest_number"],
                list(manifests.FORMULA_STARTS),
                output=sink,
                format="csv",
                force_quote=list(manifests.TYPED_COLUMNS),
            )
        if buffer:
            await queue.put(bytes(buffer))
    finally:
        await queue.put(None)


class CrlfWriter:
    """Turns the LF record ends of a CSV byte stream into CRLF (RFC 4180), leaving line breaks inside quoted
    fields alone. The text between two quote characters alternates outside/inside a quoted field (a doubled
    quote inside a field toggles twice), so only the outside parts are converted; the state spans chunks."""

    def __init__(self) -> None:
        self.quoted = False

    def convert(self, chunk: bytes) -> bytes:
        """The chunk with every lone LF written as CRLF (a CR that ends one chunk is remembered)."""
        if b'"' not in chunk:
            return chunk if self.quoted else chunk.replace(b"\n", b"\r\n")
        parts = chunk.split(b'"')
        for i, part in enumerate(parts):
            if i:
                self.quoted = not self.quoted
            if not self.quoted:
                parts[i] = part.replace(b"\n", b"\r\n")
        return b'"'.join(parts)


async def json_stream(pool: asyncpg.Pool, manifest: Mapping[str, Any]) -> AsyncIterator[bytes]:
    """The manifest as one JSON document, streamed from a server-side cursor: memory flat in its size."""
    yield manifests.json_prefix(header(manifest)).encode()
    first = True
    async for rows in item_batches(pool, manifest):
        body = "".join(manifests.json_items(rows, chunk_rows=FETCH_ROWS))
        yield (body if first else "," + body).encode()
        first = False
    yield manifests.json_suffix().encode()


async def pdf_file(pool: asyncpg.Pool, manifest: Mapping[str, Any]) -> str:
    """Render the PDF into a temporary file (reportlab in a thread, fed batch by batch from the cursor);
    returns its path. The caller streams and deletes it."""
    loop = asyncio.get_running_loop()
    batches = item_batches(pool, manifest).__aiter__()

    async def next_batch() -> list[asyncpg.Record]:
        return await batches.__anext__()

    def rows() -> Iterator[Mapping[str, Any]]:
        while True:
            try:
                batch = asyncio.run_coroutine_threadsafe(next_batch(), loop).result()
            except StopAsyncIteration:
                return
            yield from batch

    handle, path = tempfile.mkstemp(prefix="manifest-", suffix=".pdf")
    try:
        with os.fdopen(handle, "wb") as out:
            await asyncio.to_thread(manifests.render_manifest_pdf, header(manifest), rows(), out)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        await batches.aclose()  # type: ignore[attr-defined]
    return path


async def file_stream(path: str) -> AsyncIterator[bytes]:
    """The file's bytes in chunks; the file is deleted when done (or when the client goes away)."""
    try:
        with open(path, "rb") as handle:  # noqa: ASYNC230 - local temp file, chunks read quickly
            while chunk := handle.read(FILE_CHUNK):
                yield chunk
    finally:
        os.unlink(path)
