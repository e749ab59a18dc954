"""What can go wrong with the catalogue, as exceptions a user can act on.

Every engine made by :func:`storage.db.create` turns the SQLite driver's errors into one
of the :class:`CatalogueFault` types below (SQLAlchemy's ``handle_error`` hook), each with
a one-line message that says what happened, to which file, and what to do. So every
command, job and the daemon see the same types and the same words, and the CLI needs one
place that maps them to an exit status (``daemon/cli.py``).

Why a full disk is found by asking the file system: in WAL mode SQLite often reports
ENOSPC as a plain "disk I/O error" (the write of the -wal or -shm file fails), which tells
a user nothing; the free space of the catalogue's folder says what it is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, OperationalError

# Less free space than this on the catalogue's file system, at an I/O error, is "full".
FULL_BELOW_BYTES = 1 << 20


class CatalogueError(Exception):
    """The catalogue cannot be opened, read or written; the message is one line that says
    what happened, where, and what to do. The CLI turns it into that line and exit status
    1 (2 for :class:`CatalogueURLError`); the daemon logs it. A driver's text folded in
    (PostgreSQL's "connection refused" comes with a tab-indented hint line) is made one
    line too."""

    def __str__(self) -> str:
        return " ".join(super().__str__().split())


class CatalogueURLError(CatalogueError):
    """The catalogue URL cannot be parsed or names a database this genred cannot use."""


class CatalogueFault(CatalogueError, OperationalError):
    """A fault of the database while it is used: locked past the busy timeout, the disk
    full, read-only, not a database, damaged, an I/O error. Raised by the engine in place
    of the driver's error. It is also an ``OperationalError``, so code that retries on
    SQLAlchemy's own type keeps working; ``orig`` is the driver's exception."""

    def __init__(self, message: str, cause: DBAPIError) -> None:
        OperationalError.__init__(self, cause.statement, cause.params,
                                  cause.orig or Exception(message), hide_parameters=True)
        self.message = " ".join(message.split())

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Any:  # picklable across processes, like the driver's errors
        return (_rebuild, (type(self), self.message, str(self.orig)))


def _rebuild(cls: type[CatalogueFault], message: str, orig: str) -> CatalogueFault:
    return cls(message, DBAPIError(None, None, Exception(orig)))


class CatalogueBusy(CatalogueFault):
    """Another program held the catalogue's lock longer than the busy timeout."""


class CatalogueFull(CatalogueFault):
    """The file system holding the catalogue is full."""


class CatalogueReadOnly(CatalogueFault):
    """The catalogue (or its folder) cannot be written by this user."""


class CatalogueDamaged(CatalogueFault):
    """The file is not an SQLite database, or its pages are damaged."""


class CatalogueIOError(CatalogueFault):
    """The operating system reported an I/O error, or the file cannot be opened."""


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _kind(error: BaseException) -> str:
    """SQLite's primary result code name, e.g. ``SQLITE_BUSY`` (from ``SQLITE_BUSY_TIMEOUT``)."""
    name = str(getattr(error, "sqlite_errorname", "") or "")
    if name:
        return "_".join(name.split("_")[:2])
    text = str(error).lower()  # an older driver: fall back on SQLite's fixed messages
    for words, kind in (("locked", "SQLITE_BUSY"), ("disk is full", "SQLITE_FULL"),
                        ("readonly", "SQLITE_READONLY"), ("not a database", "SQLITE_NOTADB"),
                        ("malformed", "SQLITE_CORRUPT"), ("disk i/o", "SQLITE_IOERR"),
                        ("unable to open", "SQLITE_CANTOPEN")):
        if words in text:
            return kind
    return ""


def describe(error: BaseException, db_file: Path | None, busy_seconds: float) -> tuple[
        type[CatalogueFault], str] | None:
    """The fault type and one-line message for an SQLite driver error on ``db_file``, or
    None when it is not a fault of the catalogue itself (a constraint, a bug)."""
    kind = _kind(error)
    where = str(db_file) if db_file is not None else "(in memory)"
    orig = " ".join(str(error).split())
    if kind in ("SQLITE_FULL", "SQLITE_IOERR") and db_file is not None:
        free = _free_bytes(db_file.parent)
        if kind == "SQLITE_FULL" or (free is not None and free < FULL_BELOW_BYTES):
            return CatalogueFull, (
                f"the disk holding the catalogue {where} is full (SQLite: {orig}); free some "
                f"space on it (or use another --db) and run again: nothing recorded before "
                f"is lost")
    if kind == "SQLITE_BUSY":
        return CatalogueBusy, (
            f"the catalogue {where} is locked: another program held it for more than "
            f"{busy_seconds:g} s ({orig}); try again when that program is done")
    if kind == "SQLITE_READONLY":
        return CatalogueReadOnly, (
            f"the catalogue {where} is read-only for this user ({orig}); make the file, its "
            f"-wal and -shm files and its folder writable, or use another --db")
    if kind == "SQLITE_NOTADB":
        return CatalogueDamaged, (
            f"{where} is not a genred catalogue (not an SQLite database); point --db at the "
            f"catalogue, or move that file away and genred starts a new one there")
    if kind == "SQLITE_CORRUPT":
        return CatalogueDamaged, (
            f"the catalogue {where} is damaged ({orig}); restore it from a backup, or try "
            f"`sqlite3 {where} .recover`, or move it away and genred starts a new one")
    if kind == "SQLITE_IOERR":
        return CatalogueIOError, (
            f"I/O error on the catalogue {where} ({orig}); check the disk (dmesg) and run "
            f"again")
    if kind == "SQLITE_CANTOPEN":
        return CatalogueIOError, (
            f"cannot open the catalogue {where} ({orig}); check that its folder exists and "
            f"that this user may read and write there")
    return None


def translate(ctx: ExceptionContext, db_file: Path | None, busy_seconds: float) -> None:
    """``handle_error`` hook body: raise the CatalogueFault for a driver error on SQLite."""
    cause = ctx.sqlalchemy_exception
    if ctx.dialect.name != "sqlite" or not isinstance(cause, DBAPIError):
        return
    if isinstance(cause, CatalogueFault):
        return
    found = describe(ctx.original_exception, db_file, busy_seconds)
    if found is not None:
        fault, message = found
        raise fault(message, cause) from ctx.original_exception
