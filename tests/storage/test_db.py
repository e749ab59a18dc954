"""Opening the catalogue: SQLite settings, migrations (on both backends), upgrades in place,
concurrent starts and writers, the catalogue-wide lock."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Text, inspect, text

from storage.db import (
    HEAD,
    PG_KEEPALIVE_SECONDS,
    CatalogueError,
    alembic_config,
    create,
    open_catalogue,
    try_lock,
    upgrade,
)
from storage.paths import PathText
from storage.schema import Base

EXPRESSION_INDEXES = {"ix_predictions_current_genre_lower", "ix_corrections_active_genre_lower"}


def _index_names(conn: Connection) -> set[str]:
    """Every index name, expression indexes included (the inspector skips those)."""
    if conn.dialect.name == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'index'"
    else:
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    return {row[0] for row in conn.execute(text(sql))}


def _compare_type(context: Any, inspected_column: Any, metadata_column: Any,
                  inspected_type: Any, metadata_type: Any) -> bool | None:
    """Alembic compares a TypeDecorator by its ``impl`` and so misses the collation
    ``PathText`` gives its column on PostgreSQL: compare against the dialect's type."""
    if isinstance(metadata_type, PathText):
        wanted = metadata_type.load_dialect_impl(context.dialect)
        return not (isinstance(inspected_type, Text)
                    and getattr(inspected_type, "collation", None)
                    == getattr(wanted, "collation", None))
    return None  # Alembic's own comparison


def test_open_makes_the_folder_and_sets_wal_and_busy_timeout(tmp_path: Path) -> None:
    engine = open_catalogue(f"sqlite:///{tmp_path / 'deep' / 'er' / 'catalogue.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 10_000
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD


def test_head_constant_is_the_newest_migration(tmp_path: Path) -> None:
    engine = create(f"sqlite:///{tmp_path / 'c.db'}")
    assert ScriptDirectory.from_config(alembic_config(engine)).get_current_head() == HEAD


@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_migrations_build_exactly_the_models_schema(blank_catalogue_url: str) -> None:
    engine = open_catalogue(blank_catalogue_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": _compare_type})
        diff = compare_metadata(context, Base.metadata)
        names = _index_names(conn)
    # Alembic cannot compare expression indexes (lower(genre)): check those by name.
    assert [d for d in diff if d[1].name not in EXPRESSION_INDEXES] == []
    assert names >= EXPRESSION_INDEXES
    assert "ix_predictions_current_genre_nocase" not in names


def test_catalogue_from_the_first_migration_upgrades_without_losing_a_row(
    blank_catalogue_url: str,
) -> None:
    url = blank_catalogue_url
    old = create(url)
    upgrade(old, "0001")  # what the first genred release created
    rows = {
        "tracks": "INSERT INTO tracks (id, path, size, mtime, fingerprint, duration, format, "
                  "status, error, first_seen, last_seen, updated_at) VALUES (1, '/m/a.mp3', 10, "
                  "1.5, 'ab', 30.0, 'mp3', 'ok', NULL, '2026-01-01', '2026-01-01', '2026-01-01')",
        "predictions": "INSERT INTO predictions (track_id, model_version, genre, confidence, "
                       "probabilities, current, created_at) VALUES (1, 'v0', 'Jazz', 0.9, "
                       "'{\"Jazz\": 0.9, \"Rock\": 0.1}', TRUE, '2026-01-01')",
        "corrections": "INSERT INTO corrections (track_id, genre, source, active, created_at) "
                       "VALUES (1, 'Blues', 'user', TRUE, '2026-01-02')",
        "model_versions": "INSERT INTO model_versions (version, path, labels, metrics, active, "
                          "created_at) VALUES ('v0', '/x', '[\"Jazz\"]', '{}', TRUE, '2026-01-01')",
        "tag_backups": "INSERT INTO tag_backups (track_id, format, original, written, restored, "
                       "created_at, updated_at) VALUES (1, 'id3', '{\"TCON\": [\"Pop\"]}', '{}', "
                       "FALSE, '2026-01-01', '2026-01-01')",
        "training_runs": "INSERT INTO training_runs (started_at, \"trigger\", n_labels, "
                         "decision, metrics) VALUES ('2026-01-01', 'cli', 3, 'promoted', '{}')",
        "state": "INSERT INTO state (key, value, updated_at) VALUES ('k', 'v', '2026-01-01')",
    }
    with old.begin() as conn:
        for sql in rows.values():
            conn.execute(text(sql))
        columns = {t: ", ".join(f'"{c["name"]}"' for c in inspect(conn).get_columns(t))
                   for t in rows}
        before = {t: conn.execute(text(f"SELECT {columns[t]} FROM {t}")).all() for t in rows}
        if conn.dialect.name == "postgresql":  # not 64-bit before the upgrade
            assert inspect(conn).get_columns("tracks")[2]["type"].python_type is int
    old.dispose()

    engine = open_catalogue(url)

    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        for table, old_rows in before.items():
            after = conn.execute(text(f"SELECT {columns[table]} FROM {table}")).all()
            assert after == old_rows, table
        assert _index_names(conn) >= EXPRESSION_INDEXES
        conn.execute(text("UPDATE tracks SET size = 5000000000 WHERE id = 1"))  # > 2**32
        assert conn.execute(text("SELECT size FROM tracks")).scalar() == 5_000_000_000
    from storage.query import TrackFilter, query_tracks

    (row,) = query_tracks(engine, TrackFilter(genre="blues"))
    assert (row["path"], row["predicted_genre"], row["corrected_genre"]) == (
        "/m/a.mp3", "Jazz", "Blues")


def test_processes_opening_a_fresh_catalogue_at_once_all_succeed(
        blank_catalogue_url: str) -> None:
    url = blank_catalogue_url
    code = ("import sys; from storage.db import open_catalogue; from storage import catalogue; "
            "e = open_catalogue(sys.argv[1]); catalogue.mark_pending(e, sys.argv[2])")
    procs = [subprocess.Popen([sys.executable, "-c", code, url, f"/m/{i}.mp3"],
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert [rc for rc, _ in results] == [0, 0, 0, 0], results
    from storage import catalogue

    assert catalogue.count_tracks(open_catalogue(url)) == 4


def test_unusable_locations_give_a_catalogue_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CatalogueError, match="cannot create"):
        open_catalogue(f"sqlite:///{blocker / 'sub' / 'catalogue.db'}")
    with pytest.raises(CatalogueError):
        open_catalogue("nosuchdb://x/y")


def test_a_catalogue_from_a_newer_genred_is_refused(catalogue_url: str) -> None:
    url = catalogue_url
    engine = open_catalogue(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(CatalogueError, match="newer genred"):
        open_catalogue(url)


WRITER = """
import sys
import time
from storage.db import open_catalogue
from storage import catalogue, corrections
engine = open_catalogue(sys.argv[1])
for i in range(150):  # read-then-write transactions, interleaved with the other processes
    corrections.add_label(engine, f"/m/{i % 20}.mp3", f"Genre {sys.argv[2]} {i}")
    catalogue.mark_pending(engine, f"/m/{sys.argv[2]}/{i}.mp3", 1, 1.0)
"""


def test_several_processes_writing_at_once_all_succeed(catalogue_url: str) -> None:
    url = catalogue_url
    open_catalogue(url)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, name],
                              stderr=subprocess.PIPE, text=True) for name in "abc"]
    results = [(p.wait(timeout=240), p.stderr.read() if p.stderr else "") for p in procs]
    assert [rc for rc, _ in results] == [0, 0, 0], [err[-300:] for _, err in results]
    from storage import catalogue

    assert catalogue.count_tracks(open_catalogue(url)) == 20 + 3 * 150


def test_the_catalogue_lock_is_held_by_one_process_until_it_lets_go(catalogue_url: str) -> None:
    engine = open_catalogue(catalogue_url)
    held = try_lock(engine, "daemon")
    assert held is not None
    code = ("import sys; from storage.db import open_catalogue, try_lock; "
            "print(try_lock(open_catalogue(sys.argv[1]), 'daemon') is None)")
    other = subprocess.run([sys.executable, "-c", code, catalogue_url], capture_output=True,
                           text=True, timeout=120, check=True)
    assert other.stdout.strip() == "True"  # another process cannot take it
    held.release()
    other = subprocess.run([sys.executable, "-c", code, catalogue_url], capture_output=True,
                           text=True, timeout=120, check=True)
    assert other.stdout.strip() == "False"


def test_a_killed_holder_loses_the_catalogue_lock(catalogue_url: str) -> None:
    engine = open_catalogue(catalogue_url)
    code = ("import sys, time; from storage.db import open_catalogue, try_lock; "
            "lock = try_lock(open_catalogue(sys.argv[1]), 'daemon'); "
            "print('held' if lock else 'busy', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, catalogue_url],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        assert try_lock(engine, "daemon") is None
    finally:
        proc.kill()
        proc.wait(timeout=30)
    deadline = time.monotonic() + 60  # the server notices the closed socket
    while (lock := try_lock(engine, "daemon")) is None:
        assert time.monotonic() < deadline, "the lock outlived its holder"
        time.sleep(0.2)
    lock.release()


def test_postgresql_connections_ask_the_server_to_notice_a_vanished_host(
    postgres_url: str,
) -> None:
    """A worker that vanishes mid-transaction must not hold its row locks for hours: the
    server's side of each connection probes a silent peer (storage/db.py)."""
    engine = create(postgres_url)
    try:
        with engine.connect() as conn:
            settings = {name: conn.execute(text(f"SHOW {name}")).scalar_one()
                        for name in ("tcp_keepalives_idle", "tcp_keepalives_interval",
                                     "tcp_keepalives_count")}
    finally:
        engine.dispose()
    idle, interval, count = PG_KEEPALIVE_SECONDS
    assert settings == {"tcp_keepalives_idle": str(idle),
                        "tcp_keepalives_interval": str(interval),
                        "tcp_keepalives_count": str(count)}
