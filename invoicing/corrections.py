"""How an issued invoice is corrected: voiding it (this month, unverified, not yet posted) or crediting it
with red-letter credit notes that can never take back more than it holds. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import msgspec

from invoicing.errors import Conflict, FieldErrors
from invoicing.model import Invoice, Line, LineInput, Status, compute_line, local_date, plain_str, round_half_up


def void_refusal(
    invoice: Invoice, now: datetime, *, times_verified: int, has_credits: bool, dispatched: bool
) -> str | None:
    """Why this record may not be voided, or None when it may (API.md: this calendar month only,
    never verified, never dispatched by post)."""
    if invoice.status == "voided":
        return "the invoice is already voided"
    if invoice.kind != "invoice":
        return "a credit note cannot be voided; it is final once issued"
    if has_credits or invoice.status in ("partially_credited", "reversed"):
        return "the invoice has credit notes; issue another credit note instead"
    issued, today = local_date(invoice.issued_at), local_date(now)
    if (issued.year, issued.month) != (today.year, today.month):
        return "only invoices issued this calendar month can be voided; issue a credit note instead"
    if times_verified > 0:
        return "the invoice has already been verified by someone; issue a credit note instead"
    if dispatched:
        return "the paper invoice has already been handed to the post; issue a credit note instead"
    return None


@dataclass(frozen=True)
class CreditRequestLine:
    """One line of a credit request: which line of the original, and how much (None: all that is left)."""

    line_no: int  # 1-based number of the original's line
    quantity: Decimal | None  # None: all that is left of the line


def credit_lines(original: Invoice, credited: list[Line], wanted: list[CreditRequestLine] | None) -> list[Line]:
    """The negative lines of a credit note against `original`, given what earlier credit notes
    (`credited`, negative lines aligned by index with the original's lines) already took back.

    Never credits more than the original: per line, the quantity, amount and tax left are the
    limits, and crediting all that is left of a line takes exactly its remaining figures (so
    half-up rounding of partial credits can never sum past the original).
    """
    if original.kind != "invoice":
        raise Conflict("only an invoice can be credited, not a credit note")
    if original.status == "voided":
        raise Conflict("a voided invoice cannot be credited")
    if original.status == "reversed":
        raise Conflict("the invoice is already fully credited")
    if wanted is None:
        wanted = [CreditRequestLine(i + 1, None) for i in range(len(original.lines))]
    errors = FieldErrors()
    taken: dict[int, Line] = {}
    for i, want in enumerate(wanted):
        if not 1 <= want.line_no <= len(original.lines):
            errors.add(f"lines[{i}].line_no", f"the original has lines 1 to {len(original.lines)}")
        elif want.line_no in taken:
            errors.add(f"lines[{i}].line_no", "each original line may appear once")
        else:
            line = _credit_one(original.lines[want.line_no - 1], credited[want.line_no - 1], want, i, errors)
            if line is not None:
                taken[want.line_no] = line
    errors.raise_if_any()
    result = [taken[n] for n in sorted(taken)]
    if not result:
        raise Conflict("nothing is left to credit on this invoice")
    return result


def _credit_one(orig: Line, done: Line, want: CreditRequestLine, i: int, errors: FieldErrors) -> Line | None:
    left_qty = orig.quantity + done.quantity
    left_amount = orig.amount + done.amount
    left_tax = orig.tax_amount + done.tax_amount
    if left_qty <= 0:
        if want.quantity is not None:
            errors.add(f"lines[{i}].quantity", f"line {want.line_no} is already fully credited")
        return None
    qty = left_qty if want.quantity is None else want.quantity
    if qty > left_qty:
        errors.add(f"lines[{i}].quantity", f"at most {plain_str(left_qty)} of line {want.line_no} is left to credit")
        return None
    if qty == left_qty:
        return Line(
            orig.description,
            orig.unit,
            -qty,
            orig.unit_price,
            orig.tax_rate,
            round_half_up(-left_amount),
            round_half_up(-left_tax),
            want.line_no,
        )
    line = msgspec.structs.replace(
        compute_line(LineInput(orig.description, orig.unit, qty, orig.unit_price, orig.tax_rate), sign=-1),
        original_line=want.line_no,
    )
    if -line.amount > left_amount or -line.tax_amount > left_tax:
        errors.add(
            f"lines[{i}].quantity", f"crediting {plain_str(qty)} would exceed what is left of line {want.line_no}"
        )
        return None
    return line


def sum_credited(original: Sequence[Line], credit_notes: Iterable[Sequence[Line]]) -> list[Line]:
    """Per line of the original, the sum of what its credit notes (their lines) took back (negative figures).
    A credit note cannot be voided, so every one counts."""
    zero = Decimal("0.00")
    sums = [Line(x.description, x.unit, Decimal(0), x.unit_price, x.tax_rate, zero, zero) for x in original]
    for lines in credit_notes:
        for line in lines:
            index = (line.original_line or 1) - 1
            s = sums[index]
            sums[index] = msgspec.structs.replace(
                s,
                quantity=s.quantity + line.quantity,
                amount=s.amount + line.amount,
                tax_amount=s.tax_amount + line.tax_amount,
            )
    return sums


def status_after_credit(original: Sequence[Line], credited: Sequence[Line]) -> Status:
    """`reversed` when every figure of every line of the original is credited back, else `partially_credited`."""
    for orig, done in zip(original, credited, strict=True):
        if (
            orig.amount + done.amount != 0
            or orig.tax_amount + done.tax_amount != 0
            or orig.quantity + done.quantity != 0
        ):
            return "partially_credited"
    return "reversed"


def status_from_chain(original: Sequence[Line], voided: bool, credit_notes: Iterable[Sequence[Line]]) -> Status:
    """An invoice's status as its chained records say it: `voided` when a void record names it, else what its
    credit notes took back (`issued` when none). A status column that says otherwise has been tampered with."""
    if voided:
        return "voided"
    notes = list(credit_notes)
    return status_after_credit(original, sum_credited(original, notes)) if notes else "issued"
