"""The commands of the people who run the service: issuers and operators and their keys, signing keys, the
audit, the figures, the offline QR check, and manifests for operators without an HTTP client."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from delivery import export
from delivery import repository as delivery_repo
from delivery import services as delivery_services
from invoiceloop.errors import CliError
from invoiceloop.settings import Settings
from invoicing import db, repository, rollup_repository, services
from invoicing.errors import Conflict, NotFound, ValidationFailed
from invoicing.model import PROVINCES
from invoicing.schemas import month_figures, province_figures
from invoicing.text import refusal
from invoicing.validation import check_phone, check_tax_id
from verification.qr import check_qr_url, keys_from_jwks, revocations_from_jwks

T = TypeVar("T")
FETCH_TIMEOUT_S = 10


async def _with_conn(settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run `work` on one connection; a refusal of the services becomes the command's one-line message."""
    conn = await db.connect(settings.require_database_url())
    try:
        return await work(conn)
    except ValidationFailed as exc:
        raise CliError("; ".join(f"{e.field}: {e.message}" for e in exc.errors)) from None
    except (Conflict, NotFound) as exc:
        raise CliError(exc.detail) from None
    finally:
        await conn.close()


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, ensure_ascii=False) if getattr(args, "json", False) else text)


# ---------------------------------------------------------------- issuers, operators and their keys


def _issuer_args(args: argparse.Namespace) -> tuple[str, str | None]:
    try:
        tax_id = check_tax_id(args.tax_id)
    except ValueError as exc:
        raise CliError(f"--tax-id {args.tax_id!r} {exc}") from None
    if not (len(args.region) == 4 and args.region.isdigit() and args.region[:2] in PROVINCES):
        raise CliError(f"--region {args.region!r} must be a 4-digit GB/T 2260 region such as 4401 (Guangzhou)")
    if not args.name.strip():
        raise CliError("--name must not be empty")
    for flag, value in (("--name", args.name), ("--address", args.address)):
        if why := refusal(value):
            raise CliError(f"{flag} {why}")
    try:
        return tax_id, check_phone(args.phone) if args.phone else None
    except ValueError as exc:
        raise CliError(f"--phone {args.phone!r} {exc}") from None


def cmd_issuer_create(args: argparse.Namespace, settings: Settings) -> int:
    """A new issuer and its first API key (shown once)."""
    tax_id, phone = _issuer_args(args)

    async def create(conn: asyncpg.Connection) -> tuple[repository.Issuer, str]:
        return await services.create_issuer(
            conn, name=args.name.strip(), tax_id=tax_id, region=args.region, address=args.address, phone=phone
        )

    issuer, api_key = asyncio.run(_with_conn(settings, create))
    text = f"issuer {issuer.id} ({issuer.name}, {issuer.tax_id})\napi key (shown once, keep it safe): {api_key}"
    _print(args, {"issuer_id": issuer.id, "api_key": api_key}, text)
    return 0


async def _owner_key(conn: asyncpg.Connection, kind: str, owner_id: str, revoke: str | None) -> dict[str, Any]:
    """A new key for the owner, or revoke its keys: `revoke` is a whole key or at least its first 8 characters."""
    exists = repository.get_issuer if kind == "issuer" else delivery_repo.get_operator
    if repository.parse_uuid(owner_id) is None or await exists(conn, owner_id) is None:
        raise CliError(f"no {kind} {owner_id}")
    if not revoke:
        return {f"{kind}_id": owner_id, "api_key": await repository.create_key(conn, kind, owner_id)}
    if len(revoke) < 8:
        raise CliError("--revoke needs the key, or at least its first 8 characters")
    return {f"{kind}_id": owner_id, "revoked": await repository.revoke_keys(conn, kind, owner_id, revoke)}


def _key_command(args: argparse.Namespace, settings: Settings, kind: str, owner_id: str) -> int:
    out = asyncio.run(_with_conn(settings, lambda conn: _owner_key(conn, kind, owner_id, args.revoke)))
    if "revoked" in out:
        _print(args, out, f"revoked {out['revoked']} key(s)")
        return 0 if out["revoked"] else 1
    _print(args, out, f"new api key (shown once, keep it safe): {out['api_key']}")
    return 0


def cmd_issuer_key(args: argparse.Namespace, settings: Settings) -> int:
    """Another key for an issuer, or revoke its keys (exit 1 when none was revoked)."""
    return _key_command(args, settings, "issuer", args.issuer)


def cmd_operator_key(args: argparse.Namespace, settings: Settings) -> int:
    """Another key for a postal operator, or revoke its keys (exit 1 when none was revoked)."""
    return _key_command(args, settings, "operator", args.operator)


def cmd_operator_create(args: argparse.Namespace, settings: Settings) -> int:
    """A postal operator, its provinces, S10 service/country/serial range and its API key (shown once)."""

    async def create(conn: asyncpg.Connection) -> tuple[delivery_services.Operator, str]:
        return await delivery_services.create_operator(
            conn,
            name=args.name,
            provinces=[p for p in args.provinces.split(",") if p.strip()],
            s10_service=args.s10_service,
            s10_country=args.s10_country,
            serial_first=args.serial_first,
            serial_last=args.serial_last,
        )

    op, key = asyncio.run(_with_conn(settings, create))
    data = {
        "operator_id": op.id,
        "api_key": key,
        "provinces": op.provinces,
        "serial_range": [op.serial_first, op.serial_last],
    }
    text = (
        f"operator {op.id} ({op.name}) serving {','.join(op.provinces)}; "
        f"S10 {op.s10_service}########?{op.s10_country}, serials {op.serial_first}..{op.serial_last}\n"
        f"api key (shown once, keep it safe): {key}"
    )
    _print(args, data, text)
    return 0


# ---------------------------------------------------------------- figures, QR


STATS_COLUMNS = [
    ("month", 8),
    ("invoices", 9),
    ("amount", 16),
    ("verified", 9),
    ("delivered", 10),
    ("returned", 9),
    ("no operator", 12),
    ("voided", 7),
    ("credits", 8),
    ("mismatches", 10),
]


PROVINCE_COLUMNS = [
    ("province", 14),
    ("invoices", 9),
    ("amount", 16),
    ("verified", 9),
    ("delivered", 10),
    ("returned", 9),
    ("voided", 7),
    ("credits", 8),
    ("mismatches", 10),
]


def _print_table(columns: list[tuple[str, int]], rows: list[list[Any]]) -> None:
    print(" ".join(f"{name:>{width}}" if i else f"{name:{width}}" for i, (name, width) in enumerate(columns)))
    for values in rows:
        cells = zip(values, columns, strict=True)
        print(" ".join(f"{v:>{w}}" if i else f"{v:{w}}" for i, (v, (_, w)) in enumerate(cells)))


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    """The service's figures by month (or `--by province`: the seller's), as a table or JSON, from the rollup."""
    if getattr(args, "by", "month") == "province":
        return _stats_by_province(args, settings)

    async def figures(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        return [month_figures(r) for r in await repository.stats(conn, None)]

    months = asyncio.run(_with_conn(settings, figures))
    if args.json:
        print(json.dumps({"months": months}, ensure_ascii=False))
        return 0
    rows = [
        [
            m["month"],
            m["invoices"],
            m["amount"],
            f"{m['verified_share']:.1%}",
            f"{m['delivered_share']:.1%}",
            m["returned"],
            m["pending_without_operator"],
            m["voided"],
            m["credit_notes"],
            m["mismatches"],
        ]
        for m in months
    ]
    _print_table(STATS_COLUMNS, rows)
    return 0


def _stats_by_province(args: argparse.Namespace, settings: Settings) -> int:
    async def figures(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        return [province_figures(r) for r in await rollup_repository.by_province(conn, None)]

    provinces = asyncio.run(_with_conn(settings, figures))
    if args.json:
        print(json.dumps({"provinces": provinces}, ensure_ascii=False))
        return 0
    rows = [
        [
            f"{p['province']} {p['name_en']}",
            p["invoices"],
            p["amount"],
            f"{p['verified_share']:.1%}",
            f"{p['delivered_share']:.1%}",
            p["returned"],
            p["voided"],
            p["credit_notes"],
            p["mismatches"],
        ]
        for p in provinces
    ]
    _print_table(PROVINCE_COLUMNS, rows)
    return 0


def load_jwks(source: str) -> bytes:
    """A JWKS document from a file or an http(s) URL."""
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 - http(s) only
            return bytes(response.read())
    return Path(source).read_bytes()


def cmd_verify_qr(args: argparse.Namespace, settings: Settings) -> int:
    """Print the offline check of the QR URL: exit 0 when the signature is valid, 1 otherwise."""
    source = args.keys or f"{settings.public_base_url.rstrip('/')}/.well-known/jwks.json"
    try:
        document = load_jwks(source)
        public_keys, revoked = keys_from_jwks(document), revocations_from_jwks(document)
    except (OSError, ValueError) as exc:
        print(f"invoiceloop: cannot read keys from {source}: {type(exc).__name__}")
        return 1
    check = check_qr_url(args.url, public_keys, revoked)
    f = check.fields
    if args.json:
        out = {"valid": check.valid, "reason": check.reason, "invoice_code": f.get("c")}
        print(json.dumps({**out, "invoice_number": f.get("n"), "key_id": f.get("kid")}))
    else:
        print(f"{'VALID' if check.valid else 'INVALID'}: {check.reason}")
        if "c" in f and "n" in f:
            print(f"invoice {f['c']}/{f['n']} date {f.get('d')} total {f.get('t')} key {f.get('kid')}")
    return 0 if check.valid else 1


# ---------------------------------------------------------------- manifests


def cmd_postal_manifests(args: argparse.Namespace, settings: Settings) -> int:
    """List an operator's manifests (newest first)."""

    async def listing(conn: asyncpg.Connection) -> list[Any]:
        return await delivery_repo.list_manifests(conn, args.operator, args.status, None, args.limit)

    for r in asyncio.run(_with_conn(settings, listing))[: args.limit]:
        count = f"{r['item_count']:>8} item(s)"
        print(f"{r['id']}  {r['manifest_number']}  {r['status']:6}  {count}  {r['created_at']:%Y-%m-%d %H:%M}")
    return 0


async def _export(settings: Settings, operator_id: str, manifest_id: str, fmt: str, out: Path) -> int:
    pool = await db.create_pool(settings.require_database_url(), min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            try:
                manifest = await delivery_services.get_manifest(conn, operator_id, manifest_id)
            except NotFound as exc:
                raise CliError(exc.detail) from None
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
    bar = "#" * int((done / total if total else 1.0) * 30)
    print(f"\r[{bar:<30}] {done}/{total}", end="", file=sys.stderr, flush=True)


def cmd_postal_export(args: argparse.Namespace, settings: Settings) -> int:
    """Write one manifest to a file (CSV or JSON), with a progress bar on stderr."""
    try:
        count = asyncio.run(_export(settings, args.operator, args.manifest, args.format, Path(args.output)))
    except CliError as exc:
        print(f"invoiceloop: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {count} item(s) to {args.output}")
    return 0
