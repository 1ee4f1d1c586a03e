"""What text the service stores: NFC-normalised, and free of the characters that make text lie about itself.
Refused: NUL and the other C0 and C1 control characters (a line break only where a field may have several
lines), Unicode format characters (category Cf: bidi overrides such as U+202E, zero-width spaces and joiners,
the byte order mark), and lone surrogates (which are no text at all). Pure."""

from __future__ import annotations

import unicodedata

REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


def refusal(value: str, *, multiline: bool = False) -> str | None:
    """Why `value` may not be stored, or None (the message names the first offending character)."""
    if value.isprintable():  # no character of category C* or Z* but the space: none refused (at C speed)
        return None
    for ch in value:
        if ch == "\n" and multiline:
            continue
        if unicodedata.category(ch) in REFUSED_CATEGORIES:
            name = unicodedata.name(ch, "a control character")
            return f"contains U+{ord(ch):04X} ({name.lower()}), which is not allowed in text"
    return None


def normalised(value: str) -> str:
    """The text in Unicode normalisation form C (what is stored and hashed)."""
    return unicodedata.normalize("NFC", value)
