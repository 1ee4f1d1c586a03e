"""The one rule for CSV cells a spreadsheet may open (OWASP "CSV Injection"): a cell that starts with one of
`FORMULA_STARTS` would be run as a formula (`=HYPERLINK(...)`, `@SUM(...)`, `+cmd|...`), so it gets a leading
single quote, which makes the spreadsheet show it as text. Used by the postal manifest CSV (`delivery.manifests`,
and its COPY export) and the bulk verification results (`verification.bulk`)."""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    """The cell's text with a leading single quote when a spreadsheet would run it as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value
