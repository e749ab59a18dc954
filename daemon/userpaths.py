"""Paths as the user gives them on the command line and sees them in a terminal.

- ``shown(path)``: a file name made safe to print. Control characters (newline, tab, ESC
  and every other C0/C1 code, DEL), Unicode format and separator characters that reorder
  or break lines, and bytes that are not UTF-8 are written as escapes (``\\n``, ``\\t``,
  ``\\x1b``, ``\\xff``, ``\\u202e``), and a backslash as ``\\\\``, so a name can neither
  break a table row nor drive the terminal (an OSC or cursor sequence), and what is shown
  still says exactly what the name holds (like ``ls -b``). Table rows and messages use it;
  JSON and CSV output stay lossless instead (see ``daemon.cli_catalogue``).
- ``require_existing(paths)``: the one rule for a path argument that does not exist, in
  every command: ``genred: no such file or folder: PATH`` on stderr, one line per path,
  and exit status 2 (``EXIT_USAGE``). No database or model is opened before it.
"""

from __future__ import annotations

import errno
import os
import sys
import unicodedata
from collections.abc import Iterable

EXIT_USAGE = 2
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def _escape(char: str) -> str:
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
    """``path`` as printed in a terminal (see the module); plain names come back as-is."""
    text = os.fspath(path)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escape(c) if _unsafe(c) else c for c in text)


def missing(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """The paths that do not exist (``ENOENT``/``ENOTDIR``; a broken symlink counts as
    missing). A path that exists but cannot be looked at (permissions) is not missing: the
    command reports it itself."""
    gone = []
    for path in paths:
        try:
            os.stat(os.path.expanduser(os.fspath(path)))
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                gone.append(os.fspath(path))
    return gone


def missing_message(path: str | os.PathLike[str]) -> str:
    """The one line for a path that does not exist."""
    return f"no such file or folder: {shown(path)}"


def require_existing(paths: Iterable[str | os.PathLike[str]]) -> bool:
    """True when every path exists; otherwise print ``genred: <missing_message>`` for each
    missing one on stderr and return False: the caller returns ``EXIT_USAGE``."""
    gone = missing(paths)
    for path in gone:
        print(f"genred: {missing_message(path)}", file=sys.stderr)
    return not gone
