"""`invoiceloop operator create` and `invoiceloop postal manifests | export` (for operators without an HTTP
client). Registered by `invoicing.cli`; each handler is `fn(args, settings) -> int`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import asyncpg

from delivery import export, services
from delivery import repository as repo
from invoicing import db
from invoicing.errors import Conflict, NotFound, ValidationFailed
from invoicing.settings import Settings


class _Refused(Exception):
    pass


async def _with_conn(settings: Settings, fn: Any) -> Any:
    conn = await asyncpg.connect(settings.require_database_url())
    try:
        await db._init_connection(conn)
        return await fn(conn)
    except (ValidationFailed, Conflict, NotFound) as exc:
        errors = getattr(exc, "errors", None)
        raise _Refused("; ".join(f"{e.field}: {e.message}" for e in errors) if errors else exc.detail) from None
    finally:
        await conn.close()


def cmd_operator_create(args: argparse.Namespace, settings: Settings) -> int:
    """A postal operator, its provinces, S10 service/country/serial range and its API key (shown once)."""

    async def create(conn: asyncpg.Connection) -> Any:
        return await services.create_operator(
            conn,
            name=args.name,
            provinces=[p for p in args.provinces.split(",") if p.strip()],
            s10_service=args.s10_service,
            s10_country=args.s10_country,
            serial_first=args.serial_first,
            serial_last=args.serial_last,
        )

    try:
        op, key = asyncio.run(_with_conn(settings, create))
    except _Refused as exc:
        print(f"invoiceloop: {exc}", file=sys.stderr)
        return 2
    data = {
        "operator_id": op.id,
        "api_key": key,
        "provinces": op.provinces,
        "serial_range": [op.serial_first, op.serial_last],
    }
    if args.json:
        print(json.dumps(data, ensure_ascii=False))
    else:
        print(
            f"operator {op.id} ({op.name}) serving {','.join(op.provinces)}; "
            f"S10 {op.s10_service}########?{op.s10_country}, serials {op.serial_first}..{op.serial_last}"
        )
        print(f"api key (shown once, keep it safe): {key}")
    return 0


def cmd_postal_manifests(args: argparse.Namespace, settings: Settings) -> int:
    """List an operator's manifests (newest first)."""

    async def listing(conn: asyncpg.Connection) -> list[Any]:
        return await repo.list_manifests(conn, args.operator, args.status, None, args.limit)

    rows = asyncio.run(_with_conn(settings, listing))[: args.limit]
    for r in rows:
        print(
            f"{r['id']}  {r['manifest_number']}  {r['status']:6}  {r['item_count']:>8} item(s)  {r['created_at']:%Y-%m-%d %H:%M}"
        )
    return 0


async def _export(settings: Settings, operator_id: str, manifest_id: str, fmt: str, out: Path) -> int:
    pool = await db.create_pool(settings.require_database_url(), min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            try:
                manifest = await services.get_manifest(conn, operator_id, manifest_id)
            except NotFound as exc:
                raise _Refused(exc.detail) from None
        total, done = manifest["item_count"], 0
        stream = export.csv_stream(pool, manifest) if fmt == "csv" else export.json_stream(pool, manifest)
        with out.open("wb") as handle:
            async for chunk in stream:
                handle.write(chunk)
                done = min(total, done + chunk.count(b"\r\n") if fmt == "csv" else done + export.FETCH_ROWS)
                _progress(done, total)
        print(file=sys.stderr)
        return int(total)
    finally:
        await pool.close()


def _progress(done: int, total: int) -> None:
    share = done / total if total else 1.0
    bar = "#" * int(share * 30)
    print(f"\r[{bar:<30}] {done}/{total}", end="", file=sys.stderr, flush=True)


def cmd_postal_export(args: argparse.Namespace, settings: Settings) -> int:
    """Write one manifest to a file (CSV or JSON), with a progress bar on stderr."""
    try:
        count = asyncio.run(_export(settings, args.operator, args.manifest, args.format, Path(args.output)))
    except _Refused as exc:
        print(f"invoiceloop: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {count} item(s) to {args.output}")
    return 0


def register(sub: Any) -> None:
    """Add `operator create` and `postal manifests|export` to the `invoiceloop` parser."""
    operator = sub.add_parser("operator", help="postal operators").add_subparsers(dest="action", required=True)
    create = operator.add_parser("create", help="a postal operator and its API key")
    create.add_argument("--name", required=True)
    create.add_argument("--provinces", required=True, help="comma-separated GB/T 2260 codes, e.g. 44,45")
    create.add_argument("--s10-service", default="RR")
    create.add_argument("--s10-country", default="CN")
    create.add_argument("--serial-first", type=int, help="first S10 serial (default: the next free block)")
    create.add_argument("--serial-last", type=int)
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=cmd_operator_create)
    postal = sub.add_parser("postal", help="an operator's manifests").add_subparsers(dest="action", required=True)
    listing = postal.add_parser("manifests", help="list an operator's manifests")
    listing.add_argument("--operator", required=True)
    listing.add_argument("--status", choices=["open", "closed"])
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=cmd_postal_manifests)
    exp = postal.add_parser("export", help="write one manifest to a file, progress on stderr")
    exp.add_argument("--operator", required=True)
    exp.add_argument("--manifest", required=True)
    exp.add_argument("--format", choices=["csv", "json"], default="csv")
    exp.add_argument("--output", required=True)
    exp.set_defaults(handler=cmd_postal_export)
