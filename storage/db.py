"""Open the catalogue: create its folder, set SQLite up for a daemon and readers at once,
and bring the schema to the current version with Alembic.

Every ``genred`` process calls ``open_catalogue`` at start, so the migrations run where the
catalogue is used — an older catalogue upgrades in place, and no ``alembic.ini`` outside the
installed package is needed. Several processes opening a fresh catalogue at the same moment
take turns (a lock file next to a SQLite catalogue, an advisory lock on PostgreSQL), so only
one of them creates the tables.

Backends: SQLite (the default, one host) and PostgreSQL through psycopg 3 (a
``postgresql://`` URL uses it; several hosts share the queue). Concurrency works the same on
both from the callers' side: a read-then-write transaction opened on ``writing(engine)``
takes SQLite's write lock at BEGIN, and on PostgreSQL locks the track rows it reads
(``track_at`` in such a session is ``SELECT ... FOR UPDATE``) or takes a transaction-scoped
advisory lock (``serialise``) where there is no row to lock yet.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session

from storage.faults import (
    CatalogueError,
    CatalogueFault,  # noqa: F401 - re-exported: callers import the family from here
    CatalogueURLError,
    translate,
)

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 30_000
WRITE = "genred_write"  # execution option: BEGIN IMMEDIATE
HEAD = "h_multi_genres_titles"  # the newest migration in migrations/versions (a test checks)


def alembic_config(engine: Engine) -> AlembicConfig:
    """An Alembic config pointing at the migrations inside the installed package."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's config is a ConfigParser: "%" in a value starts an interpolation, so a
    # catalogue path holding "%" (URL-quoted ":", "#", "(" ... all become "%xx") is escaped.
    url = engine.url.render_as_string(hide_password=False)
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        _set_pragmas(dbapi_conn, busy_timeout_ms)

    return on_connect


def _set_pragmas(dbapi_conn: Any, busy_timeout_ms: int) -> None:
    # WAL lets queries read while the daemon writes; the busy timeout makes a second
    # writer wait instead of failing with "database is locked".
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()
    # The driver must not open transactions on its own: _sqlite_begin does.
    dbapi_conn.isolation_level = None


def _sqlite_begin(conn: Connection) -> None:
    # A deferred transaction that reads and then writes cannot wait for another writer:
    # in WAL mode its upgrade fails at once with "database is locked" (a stale snapshot),
    # whatever the busy timeout. Write transactions opened on ``writing(engine)`` take the
    # write lock up front (IMMEDIATE), so concurrent writers queue on the busy timeout.
    # Everything else stays deferred: reads never wait for a writer, and a session left
    # open for reading cannot block a write elsewhere in the same process.
    if conn.get_execution_options().get(WRITE):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def writing(engine: Engine) -> Engine:
    """``engine`` for a read-then-write transaction: it takes SQLite's write lock at BEGIN
    (``with Session(writing(engine)) as s, s.begin():``). Keep such transactions short."""
    return engine.execution_options(**{WRITE: True})


def locks_rows(s: Session) -> bool:
    """True inside a session opened on ``writing(engine)``: its reads of rows it is about to
    change should lock them (``.with_for_update()``, a no-op on SQLite, whose write lock
    this transaction already holds)."""
    return bool(s.get_bind().get_execution_options().get(WRITE))


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory locks, from a name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big",
                          signed=True)


def serialise(s: Session, name: str) -> None:
    """Inside a write transaction: wait until no other transaction holds ``name``, and hold
    it until this one ends — for a read-then-insert with no existing row to lock (two
    workers registering the same model). SQLite's write lock already does this."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})


class CatalogueLock:
    """A lock held on the catalogue for the life of a process (one daemon per catalogue):
    an advisory lock on PostgreSQL, held by a connection of its own, and an flock on a file
    next to a SQLite catalogue. Either goes away with the process, however it ends (and a
    PostgreSQL one also with the host's connection)."""

    def __init__(self, release: Any) -> None:
        self._release = release

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


def try_lock(engine: Engine, name: str) -> CatalogueLock | None:
    """Take the catalogue-wide lock ``name`` without waiting; None when another process
    holds it. A catalogue that is neither a SQLite file nor PostgreSQL gets a no-op lock."""
    if engine.dialect.name == "postgresql":
        conn = engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"),
                           {"key": lock_key(name)}).scalar()
        conn.commit()
        if not got:
            conn.close()
            return None

        def unlock() -> None:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(name)})
                conn.commit()
            finally:
                conn.close()

        return CatalogueLock(unlock)
    db_file = sqlite_path(engine.url.render_as_string(hide_password=False))
    if db_file is None:
        return CatalogueLock(None)
    fh = (db_file.parent / f"{db_file.name}.{name}-lock").open("a")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return CatalogueLock(fh.close)


def reading(engine: Engine) -> Engine:
    """``engine`` for read-only work (deferred transactions; the default)."""
    return engine.execution_options(**{WRITE: False})


def sqlite_path(url: str) -> Path | None:
    """The database file a SQLite URL names, or None (in-memory or another database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


@contextmanager
def _migration_lock(db_file: Path | None) -> Iterator[None]:
    if db_file is None:
        yield
        return
    lock_path = db_file.with_name(db_file.name + ".migrate-lock")
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _driver_url(url: str) -> str | URL:
    """``url`` with psycopg 3 as the driver of a plain ``postgresql://`` URL (SQLAlchemy's
    default there is psycopg2, which genred does not install)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def create(url: str, busy_timeout: float | None = None) -> Engine:
    """An engine for ``url`` with the SQLite pragmas set on every connection, no migration.
    Its driver errors that are faults of the catalogue (locked, full, read-only, damaged,
    I/O) are raised as :class:`CatalogueFault` types. Raises CatalogueURLError.
    ``busy_timeout``: seconds a write waits for another process's write transaction before
    failing with "database is locked" (default ``BUSY_TIMEOUT_MS``).
    On PostgreSQL, connections are checked before use, so a server restart or a network
    cut costs a reconnect instead of an error."""
    timeout_ms = BUSY_TIMEOUT_MS if busy_timeout is None else max(1, round(busy_timeout * 1000))
    try:
        extra: dict[str, Any] = {}
        if make_url(url).get_backend_name() == "postgresql":
            extra["pool_pre_ping"] = True
        engine = create_engine(_driver_url(url), connect_args=_connect_args(url, timeout_ms),
                               **extra)
    except (ArgumentError, ValueError) as e:
        raise CatalogueURLError(f"catalogue URL {url!r} is not valid: {_first_line(e)}") from e
    except ImportError as e:
        raise CatalogueURLError(f"catalogue URL {url!r} needs a database driver that is not "
                                f"installed: {_first_line(e)}") from e
    if engine.dialect.name == "sqlite":
        db_file = sqlite_path(url)
        event.listen(engine, "connect", _sqlite_pragmas(timeout_ms))
        event.listen(engine, "begin", _sqlite_begin)
        event.listen(engine, "handle_error",
                     lambda ctx: translate(ctx, db_file, timeout_ms / 1000))
    return engine


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


# A host that vanishes in the middle of a transaction (a laptop put to sleep, a network
# cut) keeps its row locks until the server notices that the connection is dead: with the
# operating system's defaults, about two hours, during which the other workers skip the
# tracks it had claimed whatever their lease says. TCP keepalives on both ends make the
# server drop such a connection after ~1 minute of silence (30 s + 3 probes 10 s apart);
# a live but idle connection is not affected.
PG_KEEPALIVE_SECONDS = (30, 10, 3)  # idle before the first probe, between probes, probes


def _connect_args(url: str, timeout_ms: int) -> dict[str, Any]:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return {"timeout": timeout_ms / 1000}
    if parsed.get_backend_name() != "postgresql":
        return {}
    idle, interval, count = PG_KEEPALIVE_SECONDS
    args: dict[str, Any] = {"keepalives": 1, "keepalives_idle": idle,
                            "keepalives_interval": interval, "keepalives_count": count}
    if "options" not in parsed.query:  # the user's own server options win
        args["options"] = (f"-c tcp_keepalives_idle={idle} "
                           f"-c tcp_keepalives_interval={interval} "
                           f"-c tcp_keepalives_count={count}")
    return args


def open_catalogue(url: str, busy_timeout: float | None = None) -> Engine:
    """The catalogue at ``url``, created or upgraded to the current schema (``busy_timeout``:
    see :func:`create`).

    Raises CatalogueURLError for a URL that cannot be used, CatalogueFault when the database
    cannot be read or written, CatalogueError when its folder cannot be made."""
    engine = create(url, busy_timeout)
    db_file = sqlite_path(url)
    if db_file is not None:
        _check_location(db_file)
    try:
        with _migration_lock(db_file):
            upgrade(engine)
    except CatalogueError:
        engine.dispose()
        raise
    except OSError as e:
        engine.dispose()
        raise CatalogueError(_os_problem(db_file or url, e)) from e
    except OperationalError as e:
        engine.dispose()
        raise CatalogueError(f"cannot open the catalogue {db_file or url}: {e.orig}") from e
    return engine


def _os_problem(where: Path | str, e: OSError) -> str:
    """The one-line message for an OSError on the catalogue's folder (its lock file)."""
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (f"the catalogue {where} is read-only for this user ({e.strerror}); make the "
                "file and its folder writable, or use another --db")
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"the disk holding the catalogue {where} is full ({e.strerror}); free some "
                "space on it (or use another --db) and run again")
    return f"cannot open the catalogue {where}: {e.strerror or e}"


def _check_location(db_file: Path) -> None:
    """The folder exists (made if need be) and the catalogue path is not a folder."""
    if db_file.is_dir():
        raise CatalogueError(f"the catalogue {db_file} is a folder; --db names the "
                             f"catalogue file (e.g. {db_file / 'catalogue.db'})")
    try:
        db_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CatalogueError(f"cannot create the catalogue's folder {db_file.parent}: "
                             f"{e.strerror}") from e


def current_revision(engine: Engine) -> str | None:
    """The catalogue's schema revision, or None for an empty database."""
    with reading(engine).connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations up to ``revision`` (no-op when already there). A catalogue
    already at ``HEAD`` is not handed to Alembic at all: every command starts faster."""
    current = current_revision(engine)
    if revision == "head" and current == HEAD:
        return
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines are noise here
    from alembic import command

    if current is None:
        log.info("creating the catalogue %s", engine.url)
    else:
        log.info("upgrading the catalogue %s from schema %s", engine.url, current)
    cfg = alembic_config(engine)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # Processes opening a fresh catalogue at once take turns (DDL is transactional
            # there: the second sees the tables the first committed).
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": lock_key("genred-migrate")})
        cfg.attributes["connection"] = connection
        try:
            command.upgrade(cfg, revision)
        except Exception as e:
            if "Can't locate revision" in str(e):
                raise CatalogueError(
                    f"the catalogue {engine.url} was made by a newer genred ({e}); "
                    "upgrade genred or use another --db"
                ) from e
            raise
    log.debug("catalogue %s at revision %s", engine.url, revision)
