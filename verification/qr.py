"""Offline check of an invoice's QR URL (FORMATS.md "QR code"): rebuild the signing core from the URL's
fields and verify its Ed25519 signature with the published key `kid`. Pure: no I/O."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from invoicing import formats
from invoicing.keys import b64url_decode, verify_signature
from invoicing.model import local_date

QR_FIELDS = ("c", "n", "d", "a", "x", "t", "k", "h", "s", "kid")
_PATTERNS = {
    "c": r"[0-9]{12}",
    "n": r"[0-9]{8}",
    "d": r"[0-9]{8}",
    "a": r"-?[0-9]{1,13}\.[0-9]{2}",
    "x": r"-?[0-9]{1,13}\.[0-9]{2}",
    "t": r"-?[0-9]{1,13}\.[0-9]{2}",
    "k": r"[0-9]{20}",
    "h": r"[0-9a-f]{64}",
    "s": r"[A-Za-z0-9_-]{86}",
    "kid": r"[0-9a-f]{16}",
}


@dataclass(frozen=True)
class QrCheck:
    """The result: `valid` True only when the signature checks against the key `kid`."""

    valid: bool
    reason: str  # "signature valid", or why not
    fields: dict[str, str]  # the QR fields found (all strings)
    signing_core: str | None = None


def qr_fields(params: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The QR fields present in `params`, and the names of those missing or malformed."""
    found = {name: params[name] for name in QR_FIELDS if name in params}
    bad = [name for name in QR_FIELDS if not re.fullmatch(_PATTERNS[name], found.get(name, ""))]
    return found, bad


def core_of(f: Mapping[str, str]) -> str | None:
    """The signing core the QR fields stand for (None when the date is no calendar day)."""
    try:
        day = date(int(f["d"][:4]), int(f["d"][4:6]), int(f["d"][6:]))
    except ValueError:
        return None
    return formats.signing_core(f["c"], f["n"], day, Decimal(f["a"]), Decimal(f["x"]), Decimal(f["t"]), f["k"], f["h"])


def check_qr_params(
    params: Mapping[str, str], keys: Mapping[str, bytes], revoked: Mapping[str, datetime] | None = None
) -> QrCheck:
    """Check the QR fields of a parsed query against `keys` (kid -> raw 32-byte Ed25519 public key); a key in
    `revoked` (kid -> since when) proves nothing for an invoice issued on or after that day (the QR carries
    the issue day, not the moment: the check errs on the side of distrust)."""
    found, bad = qr_fields(params)
    if bad:
        return QrCheck(False, f"missing or malformed fields: {', '.join(bad)}", found)
    core = core_of(found)
    if core is None:
        return QrCheck(False, "malformed fields: d", found)
    key = keys.get(found["kid"])
    if key is None:
        return QrCheck(False, f"unknown key id {found['kid']}", found, core)
    since = (revoked or {}).get(found["kid"])
    if since is not None and found["d"] >= formats.yyyymmdd(local_date(since)):
        return QrCheck(False, f"key {found['kid']} was revoked on {local_date(since).isoformat()}", found, core)
    if not verify_signature(key, core, found["s"]):
        return QrCheck(False, "signature does not match", found, core)
    return QrCheck(True, "signature valid", found, core)


def check_qr_url(url: str, keys: Mapping[str, bytes], revoked: Mapping[str, datetime] | None = None) -> QrCheck:
    """Check an invoice's QR URL offline against `keys` (kid -> raw public key) and their revocations, e.g. from
    `keys_from_jwks` and `revocations_from_jwks`."""
    query = parse_qs(urlsplit(url.strip()).query, keep_blank_values=True)
    return check_qr_params({name: values[0] for name, values in query.items()}, keys, revoked)


def keys_from_jwks(document: str | bytes | dict[str, Any]) -> dict[str, bytes]:
    """kid -> raw public key for every Ed25519 key of a JWKS document (others are skipped)."""
    data = json.loads(document) if isinstance(document, str | bytes) else document
    keys: dict[str, bytes] = {}
    for item in data.get("keys", []) if isinstance(data, dict) else []:
        if isinstance(item, dict) and item.get("kty") == "OKP" and item.get("crv") == "Ed25519" and "kid" in item:
            raw = b64url_decode(str(item.get("x", "")))
            if len(raw) == 32:
                keys[str(item["kid"])] = raw
    return keys


def revocations_from_jwks(document: str | bytes | dict[str, Any]) -> dict[str, datetime]:
    """kid -> since when, for every key of a JWKS document that says it is revoked (`revoked.since`)."""
    data = json.loads(document) if isinstance(document, str | bytes) else document
    out: dict[str, datetime] = {}
    for item in data.get("keys", []) if isinstance(data, dict) else []:
        revoked = item.get("revoked") if isinstance(item, dict) else None
        if isinstance(revoked, dict) and "kid" in item:
            try:
                out[str(item["kid"])] = formats.parse_rfc3339(str(revoked.get("since")))
            except ValueError:
                out[str(item["kid"])] = datetime.min.replace(tzinfo=UTC)  # unreadable: distrust all it signed
    return out
