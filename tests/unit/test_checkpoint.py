"""Signed notes and checkpoints (invoicing/note.py, invoicing/checkpoint.py): interoperability with the
reference implementation (vectors of golang.org/x/mod/sumdb/note and sumdb/tlog tests, and the example of
c2sp.org/signed-note), round trips, and everything a careful verifier refuses."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invoicing.checkpoint import (
    Checkpoint,
    default_origin,
    format_checkpoint,
    load_log_key,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from invoicing.merkle import format_hash, leaf_hash
from invoicing.note import (
    MAX_NOTE_BYTES,
    NoteError,
    key_id,
    open_note,
    parse_verifier_key,
    public_key,
    sign_note,
    verifier_key,
)
from invoicing.tiles import MAX_SIZE

BOUNDED = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

# golang.org/x/mod/sumdb/note's test vectors.
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
# golang.org/x/mod/sumdb/tlog's tree note vector.
TREE_TEXT = "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n"
# c2sp.org/signed-note's example.
C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n\n"
    "— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)

ORIGIN = "invoices.example.com/log"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"test log key").digest())
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"another key").digest())
LOG_VKEY = verifier_key(ORIGIN, public_key(LOG_KEY))
ROOT = leaf_hash(b"root")


def peter_private_key() -> Ed25519PrivateKey:
    seed = base64.b64decode(PETER_SKEY.split("+", 4)[4])
    assert seed[0] == 0x01
    return Ed25519PrivateKey.from_private_bytes(seed[1:])


def test_go_verifier_key() -> None:
    key = parse_verifier_key(PETER_VKEY)
    assert (key.name, key.key_id.hex()) == ("PeterNeumann", "c74f20a3")
    assert str(key) == PETER_VKEY == verifier_key("PeterNeumann", key.public_key)
    assert key_id("PeterNeumann", key.public_key) == bytes.fromhex("c74f20a3")
    assert verifier_key("PeterNeumann", public_key(peter_private_key())) == PETER_VKEY


def test_mangled_verifier_keys_refused() -> None:
    """As the reference's own test: every proper substring and every one-character change is refused."""
    bad = {PETER_VKEY[i:j] for i in range(len(PETER_VKEY)) for j in range(i + 1, len(PETER_VKEY) + 1)}
    bad |= {PETER_VKEY[:i] + chr(ord(c) + 1) + PETER_VKEY[i + 1 :] for i, c in enumerate(PETER_VKEY)}
    bad -= {PETER_VKEY}
    bad |= {
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",  # wrong key length
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # unknown algorithm
        PETER_VKEY.replace("c74f20a3", "C74F20A3"),
        PETER_VKEY + "+",
        PETER_VKEY + "+A",
        "PeterNeumann+" + PETER_VKEY,
        "Peter Neumann" + PETER_VKEY[12:],
    }
    for text in bad:
        with pytest.raises(NoteError):
            parse_verifier_key(text)


def test_go_signed_note_opens() -> None:
    peter, enoch = parse_verifier_key(PETER_VKEY), parse_verifier_key(ENOCH_VKEY)
    both = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(both, peter) == TEXT
    assert open_note(both.encode(), enoch) == TEXT
    assert open_note(TEXT + "\n" + PETER_SIG + PETER_SIG, peter) == TEXT
    with pytest.raises(NoteError):
        open_note(TEXT + "\n" + ENOCH_SIG, peter)
    with pytest.raises(NoteError):
        open_note(TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:], peter)
    with pytest.raises(NoteError):
        open_note(TEXT + "\n" + PETER_SIG * 101, peter)


@pytest.mark.parametrize(
    "message",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        "\xff" + TEXT + "\n" + PETER_SIG,
        TEXT
        + "\n"
        + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    ],
)
def test_go_malformed_notes_refused(message: str) -> None:
    with pytest.raises(NoteError):
        open_note(message, parse_verifier_key(PETER_VKEY))


def test_we_sign_as_the_reference_does() -> None:
    """Ed25519 is deterministic: signing the reference's text with its key gives its note byte for byte."""
    assert sign_note(TEXT, "PeterNeumann", peter_private_key()) == TEXT + "\n" + PETER_SIG


def test_c2sp_example_note() -> None:
    assert open_note(C2SP_NOTE, parse_verifier_key(C2SP_VKEY)) == "This is an example message.\n"


def test_tree_text_of_the_reference() -> None:
    checkpoint = Checkpoint("go.sum database tree", 123456789012, leaf_hash(b"hello world"))
    assert format_checkpoint(checkpoint) == TREE_TEXT
    assert parse_checkpoint(TREE_TEXT) == checkpoint


origins = st.text("abcdefghijklmnopqrstuvwxyz0123456789.-_:/é", min_size=1, max_size=40)


@BOUNDED
@given(origins, st.integers(0, MAX_SIZE), st.binary(min_size=32, max_size=32))
def test_checkpoint_round_trip(origin: str, size: int, root: bytes) -> None:
    checkpoint = Checkpoint(origin, size, root)
    note = sign_checkpoint(checkpoint, LOG_KEY)
    assert note == f"{origin}\n{size}\n{format_hash(root)}\n\n— {origin} " + note.split(" ")[-1]
    assert open_checkpoint(note, verifier_key(origin, public_key(LOG_KEY))) == checkpoint
    assert open_checkpoint(note.encode(), parse_verifier_key(verifier_key(origin, public_key(LOG_KEY)))) == checkpoint


def signed(text: str, name: str = ORIGIN, key: Ed25519PrivateKey = LOG_KEY) -> str:
    return sign_note(text, name, key)


GOOD = sign_checkpoint(Checkpoint(ORIGIN, 5, ROOT), LOG_KEY)
BODY, SIGNATURE = GOOD.split("\n\n")
R = format_hash(ROOT)


@pytest.mark.parametrize(
    "note",
    [
        pytest.param(sign_checkpoint(Checkpoint(ORIGIN, 5, ROOT), OTHER_KEY), id="other key, same name"),
        pytest.param(signed(f"{ORIGIN}\n5\n{R}\n", "other.example/log"), id="our key, other name"),
        pytest.param(GOOD.replace("\n5\n", "\n6\n"), id="body altered"),
        pytest.param(GOOD[:-10] + ("A" if GOOD[-10] != "A" else "B") + GOOD[-9:], id="signature altered"),
        pytest.param(BODY + "\n", id="no signature"),
        pytest.param(BODY + "\n\n", id="empty signature block"),
        pytest.param(GOOD[:-1], id="signature line without newline"),
        pytest.param(GOOD + "Unexpected line.\n", id="line after signatures"),
        pytest.param(GOOD.replace("\n", "\r\n"), id="CRLF"),
        pytest.param(GOOD.replace("invoices", "invo\x00ices"), id="control character"),
        pytest.param(GOOD.encode()[:-3] + b"\xff\n", id="not UTF-8"),
        pytest.param(GOOD + "— other.example/log AAAAAAAA=\n", id="malformed unknown signature"),
        pytest.param(GOOD + "— other+log " + SIGNATURE.split(" ")[-1], id="plus in a key name"),
        pytest.param(GOOD + "— other.example/log AAAA\n", id="unknown signature too short"),
        pytest.param(GOOD + "— other.example/log x" * 20_000 + "\n", id="too large"),
        pytest.param(GOOD + ("— o.example " + base64.b64encode(b"x" * 68).decode() + "\n") * 100, id="too many"),
        pytest.param(GOOD + signed(f"{ORIGIN}\n6\n{R}\n").split("\n\n")[1], id="second signature by our key fails"),
        pytest.param(signed(f"{ORIGIN}\n5\n"), id="two lines"),
        pytest.param(signed(f"{ORIGIN}\n5\n{R}\nextension\n"), id="extension line"),
        pytest.param(signed(f"{ORIGIN}\n05\n{R}\n"), id="size with leading zero"),
        pytest.param(signed(f"{ORIGIN}\n+5\n{R}\n"), id="size with sign"),
        pytest.param(signed(f"{ORIGIN}\n-1\n{R}\n"), id="negative size"),
        pytest.param(signed(f"{ORIGIN}\n 5\n{R}\n"), id="size with space"),
        pytest.param(signed(f"{ORIGIN}\n٥\n{R}\n"), id="size in other digits"),
        pytest.param(signed(f"{ORIGIN}\n{1 << 63}\n{R}\n"), id="size too large"),
        pytest.param(signed(f"{ORIGIN}\n5\n{R[:-2]}Z=\n"), id="root not canonical base64"),
        pytest.param(signed(f"{ORIGIN}\n5\n{format_hash(ROOT[:31])}\n"), id="root too short"),
        pytest.param(signed(f"{ORIGIN}\n5\n{R.replace('+', '-').replace('/', '_')}\n"), id="root in base64url"),
        pytest.param(signed(f"{ORIGIN}\n5\n{R} \n"), id="root with space"),
        pytest.param(signed(f"other.example/log\n5\n{R}\n"), id="origin of another log"),
        pytest.param(signed(f"\n5\n{R}\n"), id="empty origin"),
    ],
)
def test_checkpoint_refusals(note: str | bytes) -> None:
    with pytest.raises(NoteError):
        open_checkpoint(note, LOG_VKEY)


def test_good_checkpoint_and_what_it_tolerates() -> None:
    assert "+" in LOG_VKEY.split("+", 2)[2]  # the key's base64 holds a "+": split at the first two only
    assert open_checkpoint(GOOD, LOG_VKEY) == Checkpoint(ORIGIN, 5, ROOT)
    assert open_checkpoint(signed(f"{ORIGIN}\n0\n{R}\n"), LOG_VKEY).size == 0


def test_unknown_signatures_ignored() -> None:
    """Signatures by other keys, even sharing our name or our id (but not both), are ignored."""
    others = signed(BODY + "\n", "witness.example/w1", OTHER_KEY).split("\n\n")[1]
    same_name = signed(BODY + "\n", ORIGIN, OTHER_KEY).split("\n\n")[1]
    raw = base64.b64decode(SIGNATURE.split(" ")[-1])
    same_id = f"— other.example/log {base64.b64encode(raw).decode()}\n"
    assert open_checkpoint(GOOD + others + same_name + same_id, LOG_VKEY) == Checkpoint(ORIGIN, 5, ROOT)
    assert open_checkpoint(BODY + "\n\n" + others + SIGNATURE, LOG_VKEY) == Checkpoint(ORIGIN, 5, ROOT)


def test_extensions_and_other_origins_when_asked() -> None:
    with_extension = signed(f"{ORIGIN}\n5\n{R}\nextension\n")
    assert open_checkpoint(with_extension, LOG_VKEY, allow_extensions=True).extensions == ("extension",)
    with pytest.raises(NoteError):
        open_checkpoint(signed(f"{ORIGIN}\n5\n{R}\n\nextension\n"), LOG_VKEY, allow_extensions=True)
    other = signed(f"other.example/log\n5\n{R}\n")
    assert open_checkpoint(other, LOG_VKEY, origin="other.example/log").origin == "other.example/log"
    with pytest.raises(NoteError):
        open_checkpoint(GOOD, LOG_VKEY, origin="other.example/log")


def test_parse_and_format_refusals() -> None:
    for text in [f"{ORIGIN}\n5\n{R}", f"{ORIGIN}\n5\n{R}\n\n", "", "\n"]:
        with pytest.raises(NoteError):
            parse_checkpoint(text)
    for checkpoint in [
        Checkpoint("", 5, ROOT),
        Checkpoint("a\nb", 5, ROOT),
        Checkpoint(ORIGIN, -1, ROOT),
        Checkpoint(ORIGIN, MAX_SIZE + 1, ROOT),
        Checkpoint(ORIGIN, 5, ROOT[:31]),
        Checkpoint(ORIGIN, 5, ROOT, ("",)),
        Checkpoint(ORIGIN, 5, ROOT, ("a\nb",)),
    ]:
        with pytest.raises(NoteError):
            format_checkpoint(checkpoint)
    for name in ["", "a b", "a+b", "a\u2003b", "a\nb", "a\x01b"]:
        with pytest.raises(NoteError):
            signed("x\n", name)
    for text in ["no newline", "a\x01\n"]:
        with pytest.raises(NoteError):
            signed(text)
    with pytest.raises(NoteError):
        sign_checkpoint(Checkpoint("a b", 5, ROOT), LOG_KEY)
    with pytest.raises(NoteError):
        open_note("\ud800\n\n" + SIGNATURE, parse_verifier_key(LOG_VKEY))
    assert len(GOOD) < MAX_NOTE_BYTES


def test_log_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "log.pem"
    key = load_log_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_key(load_log_key(path)) == public_key(key)
    other = tmp_path / "ec.pem"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(ValueError):
        load_log_key(other)


def test_default_origin() -> None:
    assert default_origin("https://invoices.example.com") == "invoices.example.com/log"
    assert default_origin("https://Invoices.Example.com:8443/base/") == "invoices.example.com/log"
    assert default_origin("http://127.0.0.1:8000") == "127.0.0.1/log"
    with pytest.raises(ValueError):
        default_origin("not a url")
