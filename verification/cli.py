"""`invoiceloop verify-qr URL [--keys FILE_OR_URL]`: check an invoice QR URL's signature offline."""

from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path
from typing import Any

from verification.qr import check_qr_url, keys_from_jwks

FETCH_TIMEOUT_S = 10


def load_keys(source: str) -> dict[str, bytes]:
    """Public keys from a JWKS file or an http(s) URL."""
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 - http(s) only
            return keys_from_jwks(response.read())
    return keys_from_jwks(Path(source).read_bytes())


def cmd_verify_qr(args: argparse.Namespace, settings: Any) -> int:
    """Print the offline check of the QR URL: exit 0 when the signature is valid, 1 otherwise."""
    source = args.keys or f"{settings.public_base_url.rstrip('/')}/.well-known/jwks.json"
    try:
        keys = load_keys(source)
    except (OSError, ValueError) as exc:
        print(f"invoiceloop: cannot read keys from {source}: {type(exc).__name__}")
        return 1
    check = check_qr_url(args.url, keys)
    fields = check.fields
    if args.json:
        print(
            json.dumps(
                {
                    "valid": check.valid,
                    "reason": check.reason,
                    "invoice_code": fields.get("c"),
                    "invoice_number": fields.get("n"),
                    "key_id": fields.get("kid"),
                }
            )
        )
    else:
        mark = "VALID" if check.valid else "INVALID"
        print(f"{mark}: {check.reason}")
        if "c" in fields and "n" in fields:
            print(
                f"invoice {fields['c']}/{fields['n']} date {fields.get('d')} total {fields.get('t')} key {fields.get('kid')}"
            )
    return 0 if check.valid else 1


def register(subparsers: Any) -> None:
    """Add `verify-qr` to the command line."""
    cmd = subparsers.add_parser("verify-qr", help="check an invoice QR URL's signature offline")
    cmd.add_argument("url", help="the URL in the invoice's QR code")
    cmd.add_argument("--keys", help="JWKS file or URL (default PUBLIC_BASE_URL/.well-known/jwks.json)")
    cmd.add_argument("--json", action="store_true")
    cmd.set_defaults(handler=cmd_verify_qr)
