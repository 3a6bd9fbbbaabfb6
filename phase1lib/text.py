"""The rule for free text the library accepts (titles, reasons, descriptions): printable, one line, storable.

Text is data everywhere: it goes into JSON, HTML, an Excel workbook (XML 1.0), log lines and the audit log.
So a free-text field refuses what would break one of them or hide what it says: lone surrogates (not
encodable as UTF-8: a widget, an xlsx or a log line fails on them), control characters (C0 including tab,
newline and carriage return, since every field is one line; DEL; C1): NUL and vertical tab are not even
legal in XML 1.0, and a newline forges a log line, the noncharacters U+FFFE / U+FFFF (illegal in XML) and the
bidirectional embedding / override / isolate controls (U+202A-U+202E, U+2066-U+2069), which make a title
display in another order than it is stored.
"""

from __future__ import annotations

import unicodedata

#: Bidirectional formatting controls that reorder how text is displayed.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
TEXT_RULE = ("printable one-line text: no control characters (tab, newline, NUL, ...), lone surrogates, "
             "noncharacters U+FFFE / U+FFFF or bidirectional overrides")


_NAMES = {"\t": "tab", "\n": "newline", "\r": "carriage return", "\x00": "NUL", "\x0b": "vertical tab",
          "\x7f": "DEL", "\ufffe": "noncharacter", "\uffff": "noncharacter"}


def _describe(ch: str) -> str:
    if 0xD800 <= ord(ch) <= 0xDFFF:
        name = "lone surrogate"
    else:
        name = _NAMES.get(ch) or unicodedata.name(ch, "control character").lower()
    return f"U+{ord(ch):04X} ({name})"


def bad_character(text: str) -> tuple[int, str] | None:
    """The first character ``text`` may not hold, as (0-based position, description), or None when it is clean."""
    for i, ch in enumerate(text):
        code = ord(ch)
        if (code < 0x20 or 0x7F <= code <= 0x9F or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF)
                or ch in BIDI_CONTROLS):
            return i, _describe(ch)
    return None


def text_problem(value: object, *, max_len: int, min_len: int = 1) -> str | None:
    """Why ``value`` is not an acceptable free text (a message stating the rule), or None.

    Length is counted in characters; a text of only spaces is blank and refused when ``min_len`` >= 1.
    """
    if not isinstance(value, str):
        return f"must be text (got {type(value).__name__})"
    if not min_len <= len(value) <= max_len or (min_len and not value.strip()):
        return f"must be {min_len}..{max_len} characters, not blank (got {len(value)})"
    bad = bad_character(value)
    if bad is not None:
        position, what = bad
        return f"must be {TEXT_RULE} (got {what} at position {position + 1})"
    return None


def safe_display(value: object) -> str:
    """Any value as text that can be shown and encoded: bad characters replaced by their U+XXXX escape.

    For naming a stored record that breaks the text rule (an old run), never for accepting input.
    """
    text = value if isinstance(value, str) else str(value)
    if bad_character(text) is None:
        return text
    return "".join(f"\\u{ord(ch):04x}" if bad_character(ch) else ch for ch in text)
