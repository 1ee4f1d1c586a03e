"""Signed notes with Ed25519 keys (c2sp.org/signed-note), the envelope of the log's checkpoints.

Pure: no I/O. A note is a text ending in a newline, an empty line, and signature lines
`— {key name} {base64(key id || signature)}`. The key id is the first 4 bytes of
SHA-256(key name || 0x0A || 0x01 || public key); a verifier key is `{name}+{key id hex}+{base64(0x01 ||
public key)}`. Signing uses `cryptography`; checking uses libsodium (PyNaCl), as `invoicing/keys.py` does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

ED25519 = 0x01  # signed-note signature type of Ed25519
MAX_NOTE_BYTES = 128 * 1024  # room for the 16 signatures a verifier must accept, post-quantum ones included
MAX_SIGNATURES = 100
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_SIGNATURE_PREFIX = "\u2014 "  # em dash, space


class NoteError(ValueError):
    """A note, verifier key or key name that a careful verifier refuses."""


def valid_name(name: str) -> bool:
    """Whether `name` can name a key: non-empty, no Unicode spaces, no `+`, no control characters."""
    return (
        bool(name)
        and "+" not in name
        and not any(ch.isspace() or ch < " " or "\ud800" <= ch <= "\udfff" for ch in name)
    )


def public_key(private_key: Ed25519PrivateKey) -> bytes:
    """The 32-byte RFC 8032 encoding of the public half of `private_key`."""
    return private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public: bytes) -> bytes:
    """The 4-byte key id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    if not valid_name(name):
        raise NoteError(f"invalid key name {name!r}")
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519]) + public).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    """An Ed25519 verifier key: the key name, its 4-byte key id and the 32-byte public key."""

    name: str
    key_id: bytes
    public_key: bytes

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([ED25519]) + self.public_key)}"


def verifier_key(name: str, public: bytes) -> str:
    """The verifier key string `{name}+{key id hex}+{base64(0x01 || public key)}`."""
    if len(public) != 32:
        raise NoteError("an Ed25519 public key has 32 bytes")
    return str(VerifierKey(name, key_id(name, public), public))


def parse_verifier_key(text: str) -> VerifierKey:
    """The verifier key of `text`; `NoteError` unless it is an Ed25519 verifier key whose id matches
    its name and public key (lowercase hex id, canonical base64)."""
    parts = text.split("+", 2)  # the base64 key may hold "+" too
    if len(parts) != 3 or not valid_name(parts[0]) or not re.fullmatch(r"[0-9a-f]{8}", parts[1], re.ASCII):
        raise NoteError("malformed verifier key")
    name, id_hex, key_b64 = parts
    key = _b64decode(key_b64)
    if len(key) != 33 or key[0] != ED25519:
        raise NoteError("not an Ed25519 verifier key")
    if key_id(name, key[1:]) != bytes.fromhex(id_hex):
        raise NoteError("verifier key id does not match its name and key")
    return VerifierKey(name, bytes.fromhex(id_hex), key[1:])


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed note of `text` (ending in a newline) with one signature line by `name`'s key."""
    if not text.endswith("\n") or _CONTROL.search(text):
        raise NoteError("note text must end in a newline and hold no control characters")
    signature = private_key.sign(text.encode("utf-8"))
    return f"{text}\n{_SIGNATURE_PREFIX}{name} {_b64(key_id(name, public_key(private_key)) + signature)}\n"


def open_note(note: bytes | str, key: VerifierKey) -> str:
    """The text of `note` once a signature by `key` checks. `NoteError` if the note is too large, not
    UTF-8, holds control characters, has no signature block or a malformed signature line, if a
    signature by `key` fails (the whole note is refused), or if none is by `key`. Signatures by other
    keys, even sharing the name or the id, are ignored."""
    data = note.encode("utf-8", "surrogatepass") if isinstance(note, str) else note
    if len(data) > MAX_NOTE_BYTES:
        raise NoteError("note too large")
    try:
        message = data.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("note is not UTF-8") from None
    if _CONTROL.search(message):
        raise NoteError("note holds control characters")
    split = message.rfind("\n\n")
    if split < 0 or not message.endswith("\n") or split + 2 == len(message):
        raise NoteError("note does not end in a signature block")
    text, block = message[: split + 1], message[split + 2 : -1]
    lines = block.split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError("too many signatures")
    verified = False
    for line in lines:
        name, space, encoded = line.removeprefix(_SIGNATURE_PREFIX).partition(" ")
        if not line.startswith(_SIGNATURE_PREFIX) or not space or not valid_name(name):
            raise NoteError("malformed signature line")
        signature = _b64decode(encoded)
        if len(signature) < 5:
            raise NoteError("malformed signature line")
        if name == key.name and signature[:4] == key.key_id:
            if not _ed25519_ok(key.public_key, text.encode("utf-8"), signature[4:]):
                raise NoteError(f"invalid signature by {key.name}")
            verified = True
    if not verified:
        raise NoteError(f"no signature by {key.name}+{key.key_id.hex()}")
    return text


def _ed25519_ok(public: bytes, message: bytes, signature: bytes) -> bool:
    if len(signature) != 64:
        return False
    try:
        crypto_sign_open(signature + message, public)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str) -> bytes:
    """Standard base64, canonical only (padding and unused bits as an encoder writes them)."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise NoteError("invalid base64") from None
    if _b64(data) != text:
        raise NoteError("non-canonical base64")
    return data
