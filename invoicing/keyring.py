"""The keyring: the public signing keys that make a signature valid, kept outside the database.

A folder (`INVOICELOOP_KEYRING`) deployed like a TLS certificate holds one JWK per trusted key, `<kid>.jwk`,
and a file `active` naming the key that signs now. Verification, the published JWKS, `verify-qr` and the
audit trust these keys and no other: a key written into the database proves nothing. A revoked key's JWK
carries `revoked: {since, reason}`; what it signed from `since` on is not trusted.

Every process reads the folder again when its files change (`KeyringWatcher`, checked at most once a second),
so `keys rotate` and `keys revoke` reach running servers and workers within seconds, without a restart.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from invoicing.errors import ConfigError
from invoicing.keys import Signer, b64url_decode, jwk, key_id_of, load_or_create, load_private_key

ACTIVE = "active"
SUFFIX = ".jwk"


@dataclass(frozen=True)
class TrustedKey:
    """A public signing key of the keyring, and its revocation if any."""

    key_id: str
    public_raw: bytes
    created_at: datetime
    revoked_since: datetime | None = None
    revocation_reason: str | None = None

    def distrust(self, signed_at: datetime) -> str | None:
        """Why a signature this key made at `signed_at` is not to be trusted (it was revoked by then), or None."""
        if self.revoked_since is not None and signed_at >= self.revoked_since:
            return (
                f"signed by key {self.key_id}, revoked since {_rfc3339(self.revoked_since)}: {self.revocation_reason}"
            )
        return None

    def as_jwk(self) -> dict[str, Any]:
        """The key as published (a JWK, with `created` and, once revoked, `revoked`)."""
        out: dict[str, Any] = {**jwk(self.key_id, self.public_raw), "created": _rfc3339(self.created_at)}
        if self.revoked_since is not None:
            out["revoked"] = {"since": _rfc3339(self.revoked_since), "reason": self.revocation_reason or ""}
        return out


@dataclass(frozen=True)
class Keyring:
    """The trusted keys by key id, and the one that signs now."""

    keys: Mapping[str, TrustedKey] = field(default_factory=dict)
    active: str | None = None

    def jwks(self) -> dict[str, Any]:
        """Every trusted key as a JWKS, oldest first, so old invoices stay checkable after a rotation."""
        ordered = sorted(self.keys.values(), key=lambda k: (k.created_at, k.key_id))
        return {"keys": [k.as_jwk() for k in ordered]}


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(text: Any, where: Path) -> datetime:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise ConfigError(f"{where}: {text!r} has no time zone")
    return moment


def _read_key(path: Path) -> TrustedKey:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        raw = b64url_decode(str(data["x"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a JWK of an Ed25519 public key ({type(exc).__name__})") from None
    if data.get("kty") != "OKP" or data.get("crv") != "Ed25519" or len(raw) != 32:
        raise ConfigError(f"{path}: not a JWK of an Ed25519 public key")
    key_id = key_id_of(raw)
    if data.get("kid") != key_id or path.name != key_id + SUFFIX:
        raise ConfigError(
            f"{path}: the key id must be {key_id} (the first 16 hex of SHA-256 of the key), in kid and name"
        )
    revoked = data.get("revoked")
    return TrustedKey(
        key_id,
        raw,
        _parse_time(data.get("created", "1970-01-01T00:00:00Z"), path),
        _parse_time(revoked["since"], path) if revoked else None,
        str(revoked.get("reason", "")) if revoked else None,
    )


def load(folder: Path) -> Keyring:
    """The keyring in `folder`; `ConfigError` for a file that is not what it claims to be."""
    if not folder.is_dir():
        raise ConfigError(f"the keyring {folder} does not exist (INVOICELOOP_KEYRING)")
    keys = {k.key_id: k for k in map(_read_key, sorted(folder.glob("*" + SUFFIX)))}
    active_file = folder / ACTIVE
    active = active_file.read_text(encoding="utf-8").strip() if active_file.exists() else None
    if active is not None and active not in keys:
        raise ConfigError(f"{active_file} names {active!r}, which is not a key of the keyring")
    return Keyring(keys, active)


def _write(path: Path, text: str) -> None:
    """Replace `path` at once (readers see the old file or the new one, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def _save(folder: Path, key: TrustedKey) -> None:
    _write(folder / (key.key_id + SUFFIX), json.dumps(key.as_jwk(), indent=2) + "\n")


def add(folder: Path, public_raw: bytes, *, activate: bool, now: datetime | None = None) -> TrustedKey:
    """Trust a public key (kept as it is when already trusted); `activate` makes it the key that signs."""
    key_id = key_id_of(public_raw)
    path = folder / (key_id + SUFFIX)
    key = _read_key(path) if path.exists() else TrustedKey(key_id, public_raw, now or datetime.now(UTC))
    if not path.exists():
        _save(folder, key)
    if activate:
        _write(folder / ACTIVE, key_id + "\n")
    return key


def revoke(folder: Path, key_id: str, since: datetime, reason: str) -> TrustedKey:
    """Mark a key revoked from `since` on; `ConfigError` for a key the keyring does not have, or the active one."""
    ring = load(folder)
    key = ring.keys.get(key_id)
    if key is None:
        raise ConfigError(f"no key {key_id} in the keyring {folder}")
    if ring.active == key_id:
        raise ConfigError(f"{key_id} signs now: rotate to a new key first (invoiceloop keys rotate)")
    revoked = replace(key, revoked_since=since, revocation_reason=reason)
    _save(folder, revoked)
    return revoked


class KeyringWatcher:
    """The keyring as last read, read again when its files change; a change is looked for at most once every
    `every_s`, so asking costs nothing on a hot path."""

    def __init__(self, folder: Path, every_s: float = 1.0) -> None:
        self.folder, self.every_s = folder, every_s
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._checked = 0.0
        self._ring = Keyring()
        self.current()

    def _files(self) -> tuple[tuple[str, int, int], ...]:
        with os.scandir(self.folder) as entries:
            return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in entries if e.is_file()))

    def current(self) -> Keyring:
        """The keyring, read again if its files changed since the last look."""
        now = time.monotonic()
        if now - self._checked < self.every_s and self._stamp is not None:
            return self._ring
        self._checked = now
        stamp = self._files()
        if stamp != self._stamp:
            self._ring, self._stamp = load(self.folder), stamp
        return self._ring


class ActiveSigner:
    """The signer of this process: the keyring's active key, its private half read from `private_key_file`.
    When the keyring names another active key (`keys rotate`), the file is read again, and the new key signs
    once the file holds it; until then the old key goes on signing."""

    def __init__(self, watcher: KeyringWatcher, private_key_file: Path) -> None:
        self.watcher, self.private_key_file = watcher, private_key_file
        self._signer = self._load()
        if self._signer is None:
            raise ConfigError(
                f"the signing key in {private_key_file} is not the keyring's active key "
                f"({watcher.current().active}): its signatures would not be trusted"
            )

    def _load(self) -> Signer | None:
        signer = Signer.from_private(load_private_key(self.private_key_file))
        return signer if signer.key_id == self.watcher.current().active else None

    def current(self) -> Signer:
        """The signer to use now (take it once per record: its key id and signature must go together)."""
        assert self._signer is not None
        if self.watcher.current().active != self._signer.key_id:
            self._signer = self._load() or self._signer
        return self._signer


def bootstrap(folder: Path, private_key_file: Path) -> Keyring:
    """A new keyring for a first run (`invoiceloop run`, or a fresh data folder): the signing key (created if
    need be) and the retired keys kept beside it become trusted, the signing key active."""
    signer = load_or_create(private_key_file)
    for retired in sorted(private_key_file.parent.glob(private_key_file.name + ".*.retired")):
        add(folder, Signer.from_private(load_private_key(retired)).public_raw, activate=False)
    add(folder, signer.public_raw, activate=True)
    return load(folder)
