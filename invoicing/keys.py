"""Ed25519 signing keys: loading, generating, rotating, signing, JWKs (FORMATS.md "Signature")."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.bindings import crypto_sign, crypto_sign_open
from nacl.exceptions import BadSignatureError

NO_ENCRYPTION = serialization.NoEncryption()


def write_private(path: Path, data: bytes) -> None:
    """Create `path` with owner-only permissions (0600, folder 0700); never overwrites."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def b64url(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """base64url with or without padding."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id_of(public_raw: bytes) -> str:
    """First 16 hex characters of SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    """An Ed25519 signing key with its raw public key and key id. Signatures are made by libsodium (PyNaCl),
    which takes about 60 % of the CPU `cryptography` does per signature (docs/issuing.md); the two give the same
    bytes, as Ed25519 signatures are deterministic."""

    private_key: Ed25519PrivateKey = field(repr=False)
    public_raw: bytes
    key_id: str
    _sodium_key: bytes = field(repr=False, compare=False)  # libsodium's form: seed then public key

    @classmethod
    def from_private(cls, key: Ed25519PrivateKey) -> Signer:
        """The signer of a private key."""
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, NO_ENCRYPTION)
        return cls(key, raw, key_id_of(raw), seed + raw)

    def sign(self, core: str) -> str:
        """base64url (no padding) Ed25519 signature of the UTF-8 bytes of `core`."""
        return b64url(crypto_sign(core.encode("utf-8"), self._sodium_key)[:64])


def verify_signature(public_raw: bytes, core: str, signature: str) -> bool:
    """Whether `signature` (base64url) is `public_raw`'s Ed25519 signature of `core`. Checked by libsodium
    (PyNaCl), faster than `cryptography` (docs/decisions.md); it runs on every first verification of
    an invoice; it also refuses small-order keys and non-canonical encodings, which nothing of ours makes."""
    try:
        raw = b64url_decode(signature)
        if len(raw) != 64:
            return False
        crypto_sign_open(raw + core.encode("utf-8"), public_raw)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def jwk(key_id: str, public_raw: bytes) -> dict[str, str]:
    """The public key as a JWK (`kty: OKP`, `crv: Ed25519`)."""
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(public_raw), "kid": key_id, "use": "sig", "alg": "EdDSA"}


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in `path` (PKCS#8 PEM)."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


def load_or_create(path: Path) -> Signer:
    """The signing key in `path` (PKCS#8 PEM), generated with owner-only permissions on first use (by whichever
    process gets there first: the others read the key it wrote)."""
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            write_private(path, _pem(Ed25519PrivateKey.generate()))
    return Signer.from_private(load_private_key(path))


def rotate(path: Path) -> tuple[Signer, Path | None]:
    """A new key in `path`, replacing the old one at once (a reader sees one or the other, never none); the old
    one is kept beside it, named with its key id."""
    retired = None
    if path.exists():
        old = Signer.from_private(load_private_key(path))
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        retired = path.with_name(f"{path.name}.{old.key_id}.{stamp}.retired")
        write_private(retired, path.read_bytes())
    fresh = path.with_name(f".{path.name}.{os.getpid()}.new")
    fresh.unlink(missing_ok=True)
    write_private(fresh, _pem(Ed25519PrivateKey.generate()))
    os.replace(fresh, path)
    return Signer.from_private(load_private_key(path)), retired
