"""The command line (API.md "Command line"): `invoiceloop run | migrate | serve | worker | issuer |
keys | audit | stats`, plus the commands the verification and delivery packages add."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg

from invoicing import db, keys, repository, services
from invoicing.audit import audit
from invoicing.errors import ConfigError
from invoicing.model import PROVINCES
from invoicing.settings import Settings, write_private
from invoicing.validation import check_phone, check_tax_id

Handler = Callable[[argparse.Namespace, Settings], int]


class CliError(Exception):
    """A clear message for the person at the terminal; exit status 2."""


def _connect(settings: Settings) -> Any:
    return asyncpg.connect(settings.require_database_url())


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, ensure_ascii=False) if getattr(args, "json", False) else text)


# ---------------------------------------------------------------- migrate


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    try:
        result = _run(db.migrate_url(settings.require_database_url()))
    except db.MigrationChanged as exc:
        raise CliError(str(exc)) from None
    for name in result.applied:
        print(f"applied {name}")
    print(f"{len(result.applied)} applied, {len(result.already)} already applied")
    return 0


# ---------------------------------------------------------------- issuers and keys


def validate_issuer_args(args: argparse.Namespace) -> tuple[str, str | None]:
    try:
        tax_id = check_tax_id(args.tax_id)
    except ValueError as exc:
        raise CliError(f"--tax-id {args.tax_id!r} {exc}") from None
    if not (len(args.region) == 4 and args.region.isdigit() and args.region[:2] in PROVINCES):
        raise CliError(f"--region {args.region!r} must be a 4-digit GB/T 2260 region such as 4401 (Guangzhou)")
    phone = None
    if args.phone:
        try:
            phone = check_phone(args.phone)
        except ValueError as exc:
            raise CliError(f"--phone {args.phone!r} {exc}") from None
    return tax_id, phone


async def _create_issuer(
    settings: Settings, name: str, tax_id: str, region: str, address: str, phone: str | None
) -> tuple[repository.Issuer, str]:
    conn = await _connect(settings)
    try:
        return await services.create_issuer(conn, name=name, tax_id=tax_id, region=region, address=address, phone=phone)
    finally:
        await conn.close()


def cmd_issuer_create(args: argparse.Namespace, settings: Settings) -> int:
    tax_id, phone = validate_issuer_args(args)
    if not args.name.strip():
        raise CliError("--name must not be empty")
    issuer, api_key = _run(_create_issuer(settings, args.name.strip(), tax_id, args.region, args.address, phone))
    _print(
        args,
        {"issuer_id": issuer.id, "api_key": api_key},
        f"issuer {issuer.id} ({issuer.name}, {issuer.tax_id})\napi key (shown once, keep it safe): {api_key}",
    )
    return 0


async def _issuer_key(settings: Settings, issuer_id: str, revoke: str | None) -> dict[str, Any]:
    conn = await _connect(settings)
    try:
        if repository.parse_uuid(issuer_id) is None or await repository.get_issuer(conn, issuer_id) is None:
            raise CliError(f"no issuer {issuer_id}")
        if revoke:
            if len(revoke) < 8:
                raise CliError("--revoke needs at least the first 8 characters of the key")
            return {"issuer_id": issuer_id, "revoked": await repository.revoke_keys(conn, "issuer", issuer_id, revoke)}
        return {"issuer_id": issuer_id, "api_key": await services.add_api_key(conn, "issuer", issuer_id)}
    finally:
        await conn.close()


def cmd_issuer_key(args: argparse.Namespace, settings: Settings) -> int:
    out = _run(_issuer_key(settings, args.issuer, args.revoke))
    text = (
        f"revoked {out['revoked']} key(s)"
        if "revoked" in out
        else f"new api key (shown once, keep it safe): {out['api_key']}"
    )
    _print(args, out, text)
    if "revoked" in out and out["revoked"] == 0:
        return 1
    return 0


async def _rotate(settings: Settings) -> tuple[keys.Signer, Path | None]:
    signer, retired = keys.rotate(settings.key_file)
    conn = await _connect(settings)
    try:
        await repository.upsert_signing_key(conn, signer.key_id, signer.public_raw)
    finally:
        await conn.close()
    return signer, retired


def cmd_keys_rotate(args: argparse.Namespace, settings: Settings) -> int:
    signer, retired = _run(_rotate(settings))
    print(f"new signing key {signer.key_id} in {settings.key_file}")
    if retired:
        print(f"the old private key is kept in {retired}; its public key stays published")
    print("restart running services so they sign with the new key")
    return 0


# ---------------------------------------------------------------- audit and stats


async def _audit(settings: Settings, issuer_id: str | None) -> Any:
    conn = await _connect(settings)
    try:
        await db._init_connection(conn)
        return await audit(conn, issuer_id)
    finally:
        await conn.close()


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    report = _run(_audit(settings, args.issuer))
    for finding in report.findings or []:
        print(f"FAIL {finding}")
    verdict = "OK" if report.ok else f"{len(report.findings or [])} problem(s)"
    print(f"audited {report.records} record(s) in {report.series} series: {verdict}")
    return 0 if report.ok else 1


async def _stats(settings: Settings) -> list[dict[str, Any]]:
    from invoicing.api import month_figures

    conn = await _connect(settings)
    try:
        return [month_figures(r) for r in await repository.stats(conn, None)]
    finally:
        await conn.close()


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    months = _run(_stats(settings))
    if args.json:
        print(json.dumps({"months": months}, ensure_ascii=False))
        return 0
    columns = [
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
    print(" ".join(f"{name:>{width}}" if i else f"{name:{width}}" for i, (name, width) in enumerate(columns)))
    for m in months:
        values = [
            m["month"],
            m["invoices"],
            m["amount"],
            f"{m['verified_share']:.1%}",
            f"{m['delivered_share']:.1%}",
            m.get("returned", 0),
            m.get("pending_without_operator", 0),
            m["voided"],
            m["credit_notes"],
            m.get("mismatches", 0),
        ]
        print(
            " ".join(
                f"{v:>{w}}" if i else f"{v:{w}}" for i, (v, (_, w)) in enumerate(zip(values, columns, strict=True))
            )
        )
    return 0


# ---------------------------------------------------------------- serve, worker, run


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    settings.require_database_url()
    uvicorn.run(
        "invoicing.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
        access_log=False,
    )
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from invoicing.worker import run_worker

    return int(_run(run_worker(settings)))


@contextlib.contextmanager
def _services_for(settings: Settings) -> Iterator[Settings]:
    """Settings whose DATABASE_URL and REDIS_URL point at running servers: the configured ones, or
    embedded ones started in the data folder and stopped on exit."""
    from dataclasses import replace

    from invoicing.embedded import embedded_postgres, embedded_redis, postgres_data_dir

    with contextlib.ExitStack() as stack:
        if not settings.database_url:
            print(f"starting embedded PostgreSQL in {postgres_data_dir(settings.data_dir)} ...")
            settings = replace(settings, database_url=stack.enter_context(embedded_postgres(settings.data_dir)))
        if not settings.redis_url:
            print(f"starting embedded Redis in {settings.data_dir} ...")
            settings = replace(settings, redis_url=stack.enter_context(embedded_redis(settings.data_dir)))
        yield settings


def _demo(settings: Settings) -> dict[str, Any]:
    """The demo issuer (and operator, when the postal package is there), created once; their keys
    are kept in the data folder (owner-only) so each run can print them again."""
    path = settings.data_dir / "demo.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    from stdnum.cn import uscc

    body = "91440101MA5CXKYQ1"
    tax_id = body + uscc.calc_check_digit(body)
    issuer, key = _run(
        _create_issuer(settings, "广州示例科技有限公司", tax_id, "4401", "广州市天河区天河路 1 号", "+862012345678")
    )
    demo: dict[str, Any] = {"issuer_id": issuer.id, "issuer_api_key": key}
    from invoicing import worker

    demo.update(_run(worker.create_demo_operator(settings)))
    write_private(path, json.dumps(demo, indent=2).encode())
    return demo


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with _services_for(settings) as settings:
        cmd_migrate(args, settings)
        demo = _demo(settings)
        base = f"http://{args.host}:{args.port}"
        print("\ninvoiceloop is running")
        print(f"  API docs     {base}/schema")
        print(f"  verify page  {base}/verify")
        print(f"  demo issuer  {demo['issuer_id']}  key {demo['issuer_api_key']}")
        if demo.get("operator_api_key"):
            print(f"  demo postal operator {demo['operator_id']}  key {demo['operator_api_key']}")
        print(f"  try: curl -H 'Authorization: Bearer {demo['issuer_api_key']}' {base}/v1/invoices")
        print("Ctrl-C stops the service and the embedded servers.\n")
        from invoicing.worker import serve_and_work

        with contextlib.suppress(KeyboardInterrupt):
            _run(serve_and_work(settings, args.host, args.port))
    print("stopped")
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="invoiceloop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="the whole service on one machine (embedded servers when none configured)")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.set_defaults(handler=cmd_run)
    sub.add_parser("migrate", help="apply migrations/*.sql once each, in order").set_defaults(handler=cmd_migrate)
    serve = sub.add_parser("serve", help="the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(handler=cmd_serve)
    sub.add_parser("worker", help="the fulfilment worker (arq)").set_defaults(handler=cmd_worker)

    issuer = sub.add_parser("issuer", help="issuers and their API keys").add_subparsers(dest="action", required=True)
    create = issuer.add_parser("create", help="a new issuer and its first API key")
    create.add_argument("--name", required=True)
    create.add_argument("--tax-id", required=True)
    create.add_argument("--region", required=True, help="4-digit GB/T 2260 region, e.g. 4401")
    create.add_argument("--address", default="")
    create.add_argument("--phone")
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=cmd_issuer_create)
    key = issuer.add_parser("key", help="issue a new key, or revoke keys by prefix")
    key.add_argument("--issuer", required=True)
    key.add_argument("--revoke", metavar="KEY_PREFIX")
    key.add_argument("--json", action="store_true")
    key.set_defaults(handler=cmd_issuer_key)

    keys_cmd = sub.add_parser("keys", help="signing keys").add_subparsers(dest="action", required=True)
    keys_cmd.add_parser("rotate", help="new signing key; old public keys stay published").set_defaults(
        handler=cmd_keys_rotate
    )
    aud = sub.add_parser("audit", help="re-check every record hash, chain link and signature")
    aud.add_argument("--issuer")
    aud.set_defaults(handler=cmd_audit)
    st = sub.add_parser("stats", help="issued, amount, verified and delivered shares by month")
    st.add_argument("--json", action="store_true")
    st.set_defaults(handler=cmd_stats)
    for module in ("verification.cli", "delivery.cli"):
        with contextlib.suppress(ModuleNotFoundError):
            __import__(module, fromlist=["register"]).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args, Settings.from_env()))
    except (CliError, ConfigError, db.MigrationChanged) as exc:
        print(f"invoiceloop: {exc}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"invoiceloop: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
