"""Opening the catalogue: SQLite settings, migrations, upgrades in place, concurrent starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from storage.db import HEAD, CatalogueError, alembic_config, create, open_catalogue, upgrade
from storage.schema import Base


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


def test_migrations_build_exactly_the_models_schema(tmp_path: Path) -> None:
    engine = open_catalogue(f"sqlite:///{tmp_path / 'c.db'}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        names = {i["name"] for t in ("predictions", "corrections")
                 for i in inspect(conn).get_indexes(t)}
    # Alembic cannot compare expression indexes (genre COLLATE NOCASE): check those by name.
    assert [d for d in diff if "nocase" not in str(d[1].name)] == []
    assert {"ix_predictions_current_genre_nocase", "ix_corrections_active_genre_nocase"} <= names


def test_catalogue_from_the_first_migration_upgrades_without_losing_a_row(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = create(url)
    upgrade(old, "0001")  # what the first genred release created
    rows = {
        "tracks": "INSERT INTO tracks (id, path, size, mtime, fingerprint, duration, format, "
                  "status, error, first_seen, last_seen, updated_at) VALUES (1, '/m/a.mp3', 10, "
                  "1.5, 'ab', 30.0, 'mp3', 'ok', NULL, '2026-01-01', '2026-01-01', '2026-01-01')",
        "predictions": "INSERT INTO predictions (track_id, model_version, genre, confidence, "
                       "probabilities, current, created_at) VALUES (1, 'v0', 'Jazz', 0.9, "
                       "'{\"Jazz\": 0.9, \"Rock\": 0.1}', 1, '2026-01-01')",
        "corrections": "INSERT INTO corrections (track_id, genre, source, active, created_at) "
                       "VALUES (1, 'Blues', 'user', 1, '2026-01-02')",
        "model_versions": "INSERT INTO model_versions (version, path, labels, metrics, active, "
                          "created_at) VALUES ('v0', '/x', '[\"Jazz\"]', '{}', 1, '2026-01-01')",
        "tag_backups": "INSERT INTO tag_backups (track_id, format, original, written, restored, "
                       "created_at, updated_at) VALUES (1, 'id3', '{\"TCON\": [\"Pop\"]}', '{}', "
                       "0, '2026-01-01', '2026-01-01')",
        "training_runs": "INSERT INTO training_runs (started_at, \"trigger\", n_labels, "
                         "decision, metrics) VALUES ('2026-01-01', 'cli', 3, 'promoted', '{}')",
        "state": "INSERT INTO state (key, value, updated_at) VALUES ('k', 'v', '2026-01-01')",
    }
    with old.begin() as conn:
        for sql in rows.values():
            conn.execute(text(sql))
        results = {t: conn.execute(text(f"SELECT * FROM {t}")) for t in rows}
        columns = {t: ", ".join(map('"{}"'.format, r.keys())) for t, r in results.items()}
        before = {t: r.all() for t, r in results.items()}
    old.dispose()

    engine = open_catalogue(url)

    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        for table, old_rows in before.items():
            # columns added since keep their defaults; the old ones keep every value
            query = f"SELECT {columns[table]} FROM {table}"
            assert conn.execute(text(query)).all() == old_rows, table
        indexes = {i["name"] for i in inspect(conn).get_indexes("predictions")}
    assert "ix_predictions_current_genre_nocase" in indexes
    from storage.query import TrackFilter, query_tracks

    (row,) = query_tracks(engine, TrackFilter(genre="blues"))
    assert (row["path"], row["predicted_genre"], row["corrected_genre"]) == (
        "/m/a.mp3", "Jazz", "Blues")


def test_processes_opening_a_fresh_catalogue_at_once_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'catalogue.db'}"
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


def test_a_catalogue_from_a_newer_genred_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = open_catalogue(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(CatalogueError, match="newer genred"):
        open_catalogue(url)


WRITER = """
import sys
from storage.db import open_catalogue
from storage import catalogue, corrections
engine = open_catalogue(sys.argv[1])
for i in range(150):  # read-then-write transactions, interleaved with the other processes
    corrections.add_label(engine, f"/m/{i % 20}.mp3", f"Genre {sys.argv[2]} {i}")
    catalogue.mark_pending(engine, f"/m/{sys.argv[2]}/{i}.mp3", 1, 1.0)
"""


def test_several_processes_writing_at_once_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    open_catalogue(url)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, name],
                              stderr=subprocess.PIPE, text=True) for name in "abc"]
    results = [(p.wait(timeout=240), p.stderr.read() if p.stderr else "") for p in procs]
    assert [rc for rc, _ in results] == [0, 0, 0], [err[-300:] for _, err in results]
    from storage import catalogue

    assert catalogue.count_tracks(open_catalogue(url)) == 20 + 3 * 150
