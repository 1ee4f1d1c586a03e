"""Whether a stored chain record can be trusted, for verification and the audit alike: its content hashes to
its record hash, its key is in the keyring and was not revoked when it signed, its signature checks, and an
invoice's status is the one its chained voids and credit notes give it. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from invoicing import formats
from invoicing.corrections import status_from_chain
from invoicing.keyring import Keyring
from invoicing.keys import verify_signature
from invoicing.model import Line


@dataclass(frozen=True)
class StoredRecord:
    """A chain record as stored: its canonical content (a dict), record hash, signature and key id."""

    content: Mapping[str, Any]
    record_hash: str
    signature: str
    key_id: str

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> StoredRecord:
        """From a row or a JSON object with `content`, `record_hash`, `signature` and `key_id`."""
        return cls(row["content"], row["record_hash"], row["signature"], row["key_id"])

    @property
    def signed_at(self) -> datetime:
        """When the record says it was signed: an invoice's `issued_at`, a void's `voided_at`."""
        return formats.parse_rfc3339(self.content["voided_at" if self.content["kind"] == "void" else "issued_at"])


def record_problem(
    ring: Keyring, record: StoredRecord, good: MutableMapping[tuple[str, str, str], bool] | None = None
) -> str | None:
    """Why `record` cannot be trusted, or None. `good` remembers signatures that checked, by (key id, record
    hash, signature): once the content hashes to the record hash it is the content that was signed, so the
    same triple checks for good (the keyring is still asked every time: a key may be revoked since)."""
    content = record.content
    try:
        if formats.record_hash(content) != record.record_hash:
            return "the stored record does not match its record hash (edited?)"
        key = ring.keys.get(record.key_id)
        if key is None:
            return f"signed by key {record.key_id}, which is not in the keyring"
        distrust = key.distrust(record.signed_at) if key.revoked_since is not None else None
        if distrust:
            return distrust
        triple = (record.key_id, record.record_hash, record.signature)
        if good is not None and good.get(triple):
            return None
        core = (
            formats.void_signing_core(content, record.record_hash)
            if content["kind"] == "void"
            else formats.content_signing_core(content, record.record_hash)
        )
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return "the stored record cannot be read (edited?)"
    if not verify_signature(key.public_raw, core, record.signature):
        return "the signature does not verify against the keyring's key"
    if good is not None:
        good[triple] = True
    return None


def _lines(content: Mapping[str, Any]) -> tuple[Line, ...]:
    return tuple(
        Line(
            item["description"],
            item["unit"],
            Decimal(item["quantity"]),
            Decimal(item["unit_price"]),
            Decimal(item["tax_rate"]),
            Decimal(item["amount"]),
            Decimal(item["tax_amount"]),
            item.get("original_line"),
        )
        for item in content["lines"]
    )


def status_problem(
    ring: Keyring,
    invoice: StoredRecord,
    status: str,
    void: StoredRecord | None,
    credit_notes: Iterable[StoredRecord],
    good: MutableMapping[tuple[str, str, str], bool] | None = None,
) -> str | None:
    """Why an invoice's `status` column cannot be trusted, or None: it must be what its chained records say.
    Only a void and credit notes that are themselves sound and name this invoice count."""
    if invoice.content.get("kind") != "invoice":
        return None if status == "issued" else f"a credit note's status says {status}; a credit note stays issued"
    code, number = invoice.content["invoice_code"], invoice.content["invoice_number"]
    voided = (
        void is not None
        and void.content.get("voided_record_hash") == invoice.record_hash
        and record_problem(ring, void, good) is None
    )
    notes = [
        _lines(note.content)
        for note in credit_notes
        if note.content.get("original_invoice_code") == code
        and note.content.get("original_invoice_number") == number
        and record_problem(ring, note, good) is None
    ]
    try:
        chained = status_from_chain(_lines(invoice.content), voided, notes)
    except (KeyError, TypeError, ValueError, ArithmeticError, IndexError):
        return "the stored records cannot be read (edited?)"
    if chained != status:
        return f"the status says {status}, the chained records say {chained}"
    return None
