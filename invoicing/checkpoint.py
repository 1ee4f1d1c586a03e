"""Checkpoints of the transparency log (FORMATS.md "Transparency log", c2sp.org/tlog-checkpoint).

A checkpoint is a signed note (`invoicing/note.py`) whose text is the origin, the tree size in decimal
and the root hash in base64, one per line, signed by the log key under the origin as key name. The log
key is an Ed25519 key in a PKCS#8 PEM file, like the invoice signing key but never the same one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from invoicing import keys
from invoicing.merkle import format_hash, parse_hash
from invoicing.note import NoteError, VerifierKey, open_note, parse_verifier_key, sign_note
from invoicing.tiles import MAX_SIZE, LogError

_SIZE = re.compile(r"0|[1-9][0-9]{0,18}", re.ASCII)


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement of the log: its tree of `size` entries has root hash `root`."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()  # tlog-checkpoint extension lines; FORMATS.md uses none


def default_origin(public_base_url: str) -> str:
    """FORMATS.md's default `LOG_ORIGIN`: the host of `PUBLIC_BASE_URL` followed by `/log`."""
    host = urlsplit(public_base_url).hostname
    if not host:
        raise ValueError(f"no host in {public_base_url!r}")
    return f"{host}/log"


def format_checkpoint(checkpoint: Checkpoint) -> str:
    """The checkpoint's note text: origin, size, base64 root, extension lines, each ending in a newline."""
    if not checkpoint.origin or any(ch < " " for ch in checkpoint.origin):
        raise NoteError(f"origin {checkpoint.origin!r} is not one non-empty line")
    if not 0 <= checkpoint.size <= MAX_SIZE or len(checkpoint.root) != 32:
        raise NoteError("checkpoint size or root out of range")
    if any(not line or any(ch < " " for ch in line) for line in checkpoint.extensions):
        raise NoteError("an extension line must be one non-empty line")
    lines = [checkpoint.origin, str(checkpoint.size), format_hash(checkpoint.root), *checkpoint.extensions]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str, *, allow_extensions: bool = False) -> Checkpoint:
    """The checkpoint in a note text (tlog-checkpoint "Note text"); `NoteError` unless it is a
    non-empty origin, a size in decimal without leading zeros, a canonical base64 root of 32 bytes, each
    line ending in a newline, and extension lines only where allowed and then non-empty."""
    if not text.endswith("\n"):
        raise NoteError("checkpoint text must end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("checkpoint text has fewer than three lines")
    origin, size, root, *extensions = lines
    if not origin or not _SIZE.fullmatch(size) or int(size) > MAX_SIZE:
        raise NoteError("malformed checkpoint origin or size")
    if (extensions and not allow_extensions) or any(not line for line in extensions):
        raise NoteError("unexpected checkpoint extension lines")
    try:
        root_hash = parse_hash(root)
    except LogError as e:
        raise NoteError(f"malformed checkpoint root: {e}") from None
    return Checkpoint(origin, int(size), root_hash, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, private_key: Ed25519PrivateKey) -> str:
    """The signed note of `checkpoint`, signed by the log key under the origin as key name (so the
    origin must also be a valid key name: no spaces, no `+`)."""
    return sign_note(format_checkpoint(checkpoint), checkpoint.origin, private_key)


def open_checkpoint(
    note: bytes | str, key: VerifierKey | str, *, origin: str | None = None, allow_extensions: bool = False
) -> Checkpoint:
    """The checkpoint in `note` once `key`'s signature on it checks (`open_note`) and its text parses
    (`parse_checkpoint`), and its origin is `origin` (by default, `key`'s name)."""
    verifier = parse_verifier_key(key) if isinstance(key, str) else key
    checkpoint = parse_checkpoint(open_note(note, verifier), allow_extensions=allow_extensions)
    if checkpoint.origin != (verifier.name if origin is None else origin):
        raise NoteError(f"checkpoint of origin {checkpoint.origin!r}, not of this log")
    return checkpoint


def load_log_key(path: Path) -> Ed25519PrivateKey:
    """The log key in `path` (PKCS#8 PEM), generated with owner-only permissions on first use: the
    same file handling as the invoice signing key (`keys.load_or_create`)."""
    return keys.load_or_create(path).private_key
