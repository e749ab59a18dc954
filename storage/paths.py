"""How file paths are stored and how a folder selects its tracks, on any SQL database.

Paths are bytes on Linux; Python hands them around as ``str`` decoded with
``surrogateescape`` (``os.fsdecode``), so a name holding bytes that are not UTF-8
(``bad\\xffname.ogg``) becomes a string with lone surrogates (``'bad\\udcffname.ogg'``),
which no UTF-8 text column (SQLite, PostgreSQL) will take. ``PathText`` is the column type
that stores such strings losslessly:

- every valid UTF-8 path is stored unchanged, character for character;
- each byte that is not UTF-8 (lone surrogate U+DC80..U+DCFF) is stored as ``MARK``
  followed by two lowercase hex digits (``bad\\uffffffname.ogg`` for ``bad\\xffname.ogg``);
- ``MARK`` itself (U+FFFF, a Unicode *noncharacter*: reserved for exactly this kind of
  internal use, never assigned, and in practice absent from file names) is stored as the
  escapes of its own three UTF-8 bytes, so decoding is unambiguous.

Decoding turns the escapes back into their bytes and the result into a ``str`` with
``os.fsdecode``: ``os.fsencode`` of what comes back is the file's name, byte for byte.
The encoding works character by character and never produces ``/``, so it keeps prefixes:
``encode(folder + "/" + rest) == encode(folder) + "/" + encode(rest)``. That is what lets
the folder rule below work on the stored text.

The folder rule (``in_folder``): the tracks of folder ``F`` are ``path == F`` or
``F + "/" <= path < F + "0"`` (``"0"`` is the character after ``"/"``). In a binary
(code point / byte) order every string in that range starts with ``F/`` and every string
that starts with ``F/`` is in it, so the selection is exact: case-sensitive, with ``%``,
``_``, ``[``, ``*`` and ``\\`` in names taken literally (no ``LIKE`` or ``GLOB``), and it is
a range on the unique index of ``tracks.path``. It needs the column compared in binary
order: SQLite's default collation ``BINARY`` is; on PostgreSQL ``PathText`` declares the
column ``COLLATE "C"`` and on MySQL/MariaDB ``utf8mb4_bin`` (a locale collation would
order ``Jazz/x`` between ``jazz`` and ``jazz0``, or ignore the ``/`` altogether).
"""

from __future__ import annotations

import errno
import os
import re
from typing import Any

from sqlalchemy import ColumnElement, Dialect, Text, and_, or_
from sqlalchemy.types import TypeDecorator, TypeEngine

from storage.names import NEEDS_ESCAPE

MARK = "\uffff"
_ESCAPED = re.compile(f"{MARK}([0-9a-f]{{2}})")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    raw = os.fsencode(char) if char != MARK else MARK.encode("utf-8")
    return "".join(f"{MARK}{b:02x}" for b in raw)


def to_db(path: str) -> str:
    """``path`` (a str as ``os.fsdecode`` makes it) as stored: valid UTF-8 unchanged."""
    if path.isascii() or not NEEDS_ESCAPE.search(path):
        return path
    return NEEDS_ESCAPE.sub(_escape, path)


def from_db(stored: str) -> str:
    """The inverse of ``to_db``."""
    if MARK not in stored:
        return stored
    out = bytearray()
    pos = 0
    for m in _ESCAPED.finditer(stored):
        out += stored[pos:m.start()].encode("utf-8", "surrogatepass")
        out.append(int(m.group(1), 16))
        pos = m.end()
    out += stored[pos:].encode("utf-8", "surrogatepass")
    return os.fsdecode(bytes(out))


class PathText(TypeDecorator[str]):
    """A file path column: ``to_db`` on the way in (values and comparisons alike),
    ``from_db`` on the way out; binary collation on every database (see the module)."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Text(collation="C"))
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(Text(collation="utf8mb4_bin"))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else to_db(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else from_db(value)


def folder_key(folder: str) -> str:
    """``folder`` without trailing slashes (``"/"`` becomes ``""``): what ``in_folder``
    compares against. ``folder`` must already be canonical (absolute, normalised)."""
    return folder.rstrip("/")


def in_folder(column: Any, folder: str) -> ColumnElement[bool]:
    """SQL condition: ``column`` (a ``PathText`` path) is ``folder`` itself or a path
    inside it — the one folder rule every command and job uses (see the module)."""
    base = folder_key(folder)
    inside = and_(column >= base + "/", column < base + "0")
    return or_(column == folder, inside) if base else inside


def is_inside(path: str, folder: str) -> bool:
    """``in_folder`` for two Python strings (e.g. a watcher event against a root)."""
    base = folder_key(folder)
    return path == folder or path.startswith(base + "/")


def is_gone(path: str | os.PathLike[str]) -> bool:
    """True only when ``path`` certainly does not exist (``ENOENT``, or a component is not
    a folder). A path that cannot be looked at — a folder without read or execute
    permission, an I/O error — is *not* gone: its track must not be marked missing."""
    try:
        os.stat(path)  # follows links: a link whose file is gone is gone
    except OSError as e:
        return e.errno in (errno.ENOENT, errno.ENOTDIR)
    return False
