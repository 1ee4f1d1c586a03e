"""The commands of trust: the keyring (`keys rotate | revoke | trust`), the audit, and the log's witness
(`log witness`), which keeps its state outside the service and refuses a log that forked or went back."""

from __future__ import annotations

import argparse
import json
import os
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from invoiceloop.app import log_signer, open_keyring
from invoiceloop.auditing import default_processes, full_audit, incremental_audit
from invoiceloop.errors import CliError
from invoiceloop.settings import Settings
from invoicing import keyring, keys, merkle
from invoicing.checkpoint import Checkpoint, open_checkpoint
from invoicing.keys import b64url_decode
from invoicing.merkle_verify import verify_consistency
from invoicing.note import NoteError, VerifierKey, parse_verifier_key

FETCH_TIMEOUT_S = 10


def cmd_keys_rotate(args: argparse.Namespace, settings: Settings) -> int:
    """A new signing key: its private half replaces SIGNING_KEY_FILE, its public half joins the keyring as the
    active key, and every running process signs with it within seconds. Old keys stay trusted and published."""
    open_keyring(settings)  # a first run's keyring holds the old key before it is rotated
    signer, retired = keys.rotate(settings.key_file)
    keyring.add(settings.keyring, signer.public_raw, activate=True)
    print(f"new signing key {signer.key_id}: {settings.key_file}, active in the keyring {settings.keyring}")
    if retired:
        print(f"the old private key is kept in {retired}; its public key stays trusted and published")
    print("running servers and workers sign with it within seconds")
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """A compromised key: what it signed from `--since` on verifies as tampered, with the reason."""
    try:
        since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"--since {args.since!r} is not an RFC 3339 time, e.g. 2026-11-30T08:00:00Z") from None
    if since.tzinfo is None:
        raise CliError("--since needs a time zone, e.g. 2026-11-30T08:00:00Z")
    if not args.reason.strip():
        raise CliError("--reason must say why")
    key = keyring.revoke(settings.keyring, args.key_id, since.astimezone(UTC), args.reason.strip())
    print(f"revoked {key.key_id} from {args.since}: {args.reason}; running processes follow within seconds")
    return 0


def _public_keys(path: Path) -> list[bytes]:
    text = path.read_text(encoding="utf-8")
    if "BEGIN PUBLIC KEY" in text:
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise CliError(f"{path} does not hold an Ed25519 public key")
        return [key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)]
    data = json.loads(text)
    items = data.get("keys", [data]) if isinstance(data, dict) else []
    return [b64url_decode(str(k["x"])) for k in items if k.get("kty") == "OKP" and k.get("crv") == "Ed25519"]


def cmd_keys_trust(args: argparse.Namespace, settings: Settings) -> int:
    """Add public keys to the keyring, not active (keys an older deployment signed with, checked out of band)."""
    raws = _public_keys(Path(args.file))
    if not raws:
        raise CliError(f"{args.file} holds no Ed25519 public key (PEM, JWK or JWKS)")
    for raw in raws:
        print(f"trusted {keyring.add(settings.keyring, raw, activate=False).key_id}")
    return 0


def _kept_checkpoint(path: Path, verifier_key: str | None) -> tuple[Checkpoint, VerifierKey]:
    """The checkpoint kept in `path` and the key it opened with: a witness's state file (it names its key), or a
    bare signed note checked with `verifier_key`."""
    text = path.read_text(encoding="utf-8")
    try:
        state = json.loads(text)
        note, key = state["checkpoint"], verifier_key or state["verifier_key"]
    except (ValueError, KeyError, TypeError):
        note, key = text, verifier_key
    if key is None:
        raise CliError("a bare checkpoint needs --log-key, the log's verifier key")
    try:
        parsed = parse_verifier_key(key)
        return open_checkpoint(note, parsed), parsed
    except NoteError as exc:
        raise CliError(f"{path}: the checkpoint does not open with the log key: {exc}") from None


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    """Re-check every chain against the keyring (and the log against a checkpoint kept outside the database), in
    parallel processes; or, with --since, only what was added after a kept checkpoint. Exit 1 with a report when
    anything fails."""
    open_keyring(settings)
    url = settings.require_database_url()
    if args.since:
        kept, key = _kept_checkpoint(Path(args.since), args.log_key)
        timed = incremental_audit(url, settings.keyring, kept, key)
        scope = f"added since the checkpoint of {kept.size} entries ({timed.report.leaves} new log leaves)"
    else:
        against = _kept_checkpoint(Path(args.checkpoint), args.log_key)[0] if args.checkpoint else None
        timed = full_audit(url, settings.keyring, args.issuer, against, args.processes or default_processes())
        logged = f", {timed.report.leaves} log leaves against the kept checkpoint" if against else ""
        scope = f"in {timed.report.series} series{logged}"
    report = timed.report
    for finding in report.findings:
        print(f"FAIL {finding}")
    verdict = "OK" if report.ok else f"{len(report.findings)} problem(s)"
    print(f"audited {report.records} record(s) {scope}: {verdict}")
    print(f"{timed.seconds:.1f} s, {timed.rate:,.0f} records/s, {timed.processes} process(es)")
    return 0 if report.ok else 1


def _fetch(url: str) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise CliError(f"--url must be http(s), not {url!r}")
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 - http(s) only
        return bytes(response.read())


def _save_state(path: Path, state: dict[str, Any]) -> None:
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def _witness(base: str, state: dict[str, Any] | None, key_text: str) -> tuple[Checkpoint, str, list[str]]:
    """The log's latest checkpoint, its note and what is wrong with it (nothing when it is consistent with the
    one in `state`)."""
    note = _fetch(base + "/v1/log/checkpoint").decode("utf-8")
    try:
        latest = open_checkpoint(note, parse_verifier_key(key_text))
    except NoteError as exc:
        raise CliError(f"the checkpoint's signature does not check against the pinned log key: {exc}") from None
    if state is None or state["size"] == 0:
        return latest, note, []
    old_size, old_root = int(state["size"]), merkle.parse_hash(state["root"])
    if latest.size < old_size:
        return latest, note, [f"the log went back from {old_size} to {latest.size} entries (rolled back)"]
    if latest.size == old_size:
        return latest, note, [] if latest.root == old_root else [f"a second tree of size {old_size} (forked)"]
    query = urllib.parse.urlencode({"first": old_size, "second": latest.size})
    proof = [merkle.parse_hash(h) for h in json.loads(_fetch(f"{base}/v1/log/proof/consistency?{query}"))["hashes"]]
    if not verify_consistency(old_size, latest.size, old_root, latest.root, proof):
        return latest, note, [f"the tree of {latest.size} does not extend the one of {old_size} kept here (rewritten)"]
    return latest, note, []


def cmd_log_witness(args: argparse.Namespace, settings: Settings) -> int:
    """Check the log's checkpoint (signature against the pinned key, consistency with the last one kept in
    `--state`) and keep the new one; exit 1 with a report on a fork, a rewrite or a rollback."""
    path, base = Path(args.state), args.url.rstrip("/")
    state = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    pinned = state["verifier_key"] if state else args.key
    if pinned is None:
        raise CliError("the first run needs --key, the log's verifier key as published (pinned from then on)")
    if args.key and state and args.key != pinned:
        raise CliError(f"--key differs from the key pinned in {path}")
    latest, note, problems = _witness(base, state, pinned)
    for problem in problems:
        print(f"FAIL {problem}")
    if problems:
        print(f"the log at {base} is not consistent with the checkpoint kept in {path}; keeping the old one")
        return 1
    was = f"{state['size']}" if state else "nothing kept yet"
    kept = {
        "verifier_key": pinned,
        "origin": latest.origin,
        "size": latest.size,
        "root": merkle.format_hash(latest.root),
    }
    _save_state(path, {**kept, "checkpoint": note, "checked_at": datetime.now(UTC).isoformat()})
    print(f"OK: {latest.origin} has {latest.size} entries (was {was}), consistent; kept in {path}")
    return 0


def cmd_log_key(args: argparse.Namespace, settings: Settings) -> int:
    """Print the log's verifier key (what witnesses pin)."""
    print(log_signer(settings).verifier_key)
    return 0
