"""File names shown to people: ``shown(path)``, for terminals and log lines. No SQLAlchemy
here: the CLI imports it at start (``genred --help`` must stay fast)."""

from __future__ import annotations

import os
import re
import unicodedata

# a byte that is not UTF-8 (a lone surrogate) or U+FFFF (storage/paths.py's MARK): text
# that needs escaping before a text column takes it
NEEDS_ESCAPE = re.compile("[\udc80-\udcff\uffff]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def _shown_char(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (os.fsdecode's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _unsafe(char: str) -> bool:
    # Cc control, Cf format (bidi overrides, zero-width), Cs surrogates, Zl/Zp separators
    return char in _NAMED or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp")


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` made safe to print in a terminal or a log line. Control characters
    (newline, tab, ESC and every other C0/C1 code, DEL), Unicode format and separator
    characters that reorder or break lines, and bytes that are not UTF-8 are written as
    escapes (``\\n``, ``\\t``, ``\\x1b``, ``\\xff``, ``\\u202e``), and a backslash as ``\\\\``:
    a name can neither break a table row nor drive the terminal (an OSC or cursor
    sequence), and what is shown still says exactly what the name holds (like ``ls -b``).
    Plain names come back as they are."""
    text = os.fspath(path)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_shown_char(c) if _unsafe(c) else c for c in text)


def safe_text(text: str) -> str:
    """Free text (an error reason naming a path) made storable in a text column: a byte
    that is not UTF-8 is written ``\\xff``, as ``shown`` writes it."""
    if not NEEDS_ESCAPE.search(text):
        return text
    return os.fsencode(text).decode("utf-8", "backslashreplace")
