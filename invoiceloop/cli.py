"""The command line (API.md "Command line"): `invoiceloop run | migrate | serve | worker | issuer | operator |
keys | audit | stats | verify-qr | postal | lottery`. Each command is `handler(args, settings) -> exit status`."""

from __future__ import annotations

import argparse
import logging
import sys

import asyncpg

from invoiceloop import admin, lottery_cli, service, trust
from invoiceloop.errors import CliError
from invoiceloop.settings import Settings
from invoicing import db
from invoicing.errors import ConfigError


def _service_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="the whole service on one machine (embedded servers when none configured)")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.set_defaults(handler=service.cmd_run)
    sub.add_parser("migrate", help="apply the migrations once each, in order").set_defaults(handler=service.cmd_migrate)
    serve = sub.add_parser("serve", help="the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(handler=service.cmd_serve)
    sub.add_parser("worker", help="the fulfilment worker (arq)").set_defaults(handler=service.cmd_worker)


def _owner_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    issuer = sub.add_parser("issuer", help="issuers and their API keys").add_subparsers(dest="action", required=True)
    create = issuer.add_parser("create", help="a new issuer and its first API key")
    create.add_argument("--name", required=True)
    create.add_argument("--tax-id", required=True)
    create.add_argument("--region", required=True, help="4-digit GB/T 2260 region, e.g. 4401")
    create.add_argument("--address", default="")
    create.add_argument("--phone")
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=admin.cmd_issuer_create)
    key = issuer.add_parser("key", help="issue a new key, or revoke keys by prefix")
    key.add_argument("--issuer", required=True)
    key.add_argument("--revoke", metavar="KEY_OR_PREFIX", help="a whole key, or at least its first 8 characters")
    key.add_argument("--json", action="store_true")
    key.set_defaults(handler=admin.cmd_issuer_key)

    operator = sub.add_parser("operator", help="postal operators").add_subparsers(dest="action", required=True)
    op = operator.add_parser("create", help="a postal operator and its API key")
    op.add_argument("--name", required=True)
    op.add_argument("--provinces", required=True, help="comma-separated GB/T 2260 codes, e.g. 44,45")
    op.add_argument("--s10-service", default="RR")
    op.add_argument("--s10-country", default="CN")
    op.add_argument("--serial-first", type=int, help="first S10 serial (default: the next free block)")
    op.add_argument("--serial-last", type=int)
    op.add_argument("--json", action="store_true")
    op.set_defaults(handler=admin.cmd_operator_create)
    op_key = operator.add_parser("key", help="another key for an operator, or revoke its keys")
    op_key.add_argument("--operator", required=True)
    op_key.add_argument("--revoke", metavar="KEY_OR_PREFIX", help="a whole key, or at least its first 8 characters")
    op_key.add_argument("--json", action="store_true")
    op_key.set_defaults(handler=admin.cmd_operator_key)


def _record_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="the keyring of signing keys").add_subparsers(dest="action", required=True)
    keys.add_parser("rotate", help="a new signing key, active everywhere within seconds").set_defaults(
        handler=trust.cmd_keys_rotate
    )
    revoke = keys.add_parser("revoke", help="distrust what a key signed from a moment on")
    revoke.add_argument("key_id")
    revoke.add_argument("--since", required=True, help="RFC 3339, e.g. 2026-11-30T08:00:00Z")
    revoke.add_argument("--reason", required=True)
    revoke.set_defaults(handler=trust.cmd_keys_revoke)
    trusted = keys.add_parser("trust", help="add public keys (PEM, JWK or JWKS) to the keyring, not active")
    trusted.add_argument("file")
    trusted.set_defaults(handler=trust.cmd_keys_trust)
    aud = sub.add_parser("audit", help="re-check every record, signature, status (and the log) against the keyring")
    aud.add_argument("--issuer")
    aud.add_argument("--checkpoint", help="a checkpoint kept outside the database (a witness's state file)")
    aud.add_argument("--since", metavar="FILE", help="only what was added after this kept checkpoint (incremental)")
    aud.add_argument("--log-key", help="the log's verifier key, for a bare checkpoint note")
    aud.add_argument("--processes", type=int, help="parallel processes (default: one per core)")
    aud.set_defaults(handler=trust.cmd_audit)
    log = sub.add_parser("log", help="the public transparency log").add_subparsers(dest="action", required=True)
    witness = log.add_parser("witness", help="check the log's checkpoint is consistent with the one kept in FILE")
    witness.add_argument("--url", required=True, help="the service's base URL")
    witness.add_argument("--state", required=True, help="the witness's state file, kept outside the service")
    witness.add_argument("--key", help="the log's verifier key (needed on the first run, pinned after)")
    witness.set_defaults(handler=trust.cmd_log_witness)
    log.add_parser("key", help="print the log's verifier key").set_defaults(handler=trust.cmd_log_key)
    st = sub.add_parser("stats", help="issued, amount, verified and delivered shares by month or province")
    st.add_argument("--json", action="store_true")
    st.add_argument("--by", choices=("month", "province"), default="month", help="group by month (default) or province")
    st.set_defaults(handler=admin.cmd_stats)
    qr = sub.add_parser("verify-qr", help="check an invoice QR URL's signature offline")
    qr.add_argument("url", help="the URL in the invoice's QR code")
    qr.add_argument("--keys", help="JWKS file or URL (default PUBLIC_BASE_URL/.well-known/jwks.json)")
    qr.add_argument("--json", action="store_true")
    qr.set_defaults(handler=admin.cmd_verify_qr)

    postal = sub.add_parser("postal", help="an operator's manifests").add_subparsers(dest="action", required=True)
    listing = postal.add_parser("manifests", help="list an operator's manifests")
    listing.add_argument("--operator", required=True)
    listing.add_argument("--status", choices=["open", "closed"])
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=admin.cmd_postal_manifests)
    exp = postal.add_parser("export", help="write one manifest to a file, progress on stderr")
    exp.add_argument("--operator", required=True)
    exp.add_argument("--manifest", required=True)
    exp.add_argument("--format", choices=["csv", "json"], default="csv")
    exp.add_argument("--output", required=True)
    exp.set_defaults(handler=admin.cmd_postal_export)


def build_parser() -> argparse.ArgumentParser:
    """Every command and its options."""
    parser = argparse.ArgumentParser(prog="invoiceloop", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _service_commands(sub)
    _owner_commands(sub)
    _record_commands(sub)
    lottery_cli.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status 2 with a one-line message for what the person at the terminal must fix."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args, Settings.from_env()))
    except (CliError, ConfigError, db.MigrationChanged, db.NoMigrations) as exc:
        print(f"invoiceloop: {exc}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"invoiceloop: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
