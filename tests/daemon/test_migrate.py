"""`genred migrate`: a SQLite catalogue copied to PostgreSQL answers the same."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from storage import catalogue, corrections, moves
from storage.db import open_catalogue
from storage.schema import TagBackup, TrainingRun
from tests.audiogen import STYLES, make_track
from tests.daemon.daemon_helpers import GENRED, Library

pytestmark = pytest.mark.slow


def _sqlite_catalogue(library: Library) -> str:
    """A catalogue with every kind of row: scanned tracks (predictions, fingerprints), a
    reclassification (history), corrections and an undone one, an error, a missing file, a
    retrain run, a tag backup, state."""
    for i in range(6):
        make_track(library.music / STYLES[i % 4] / f"{i}.flac", STYLES[i % 4], 8.0, seed=i)
    (library.music / "broken.mp3").write_bytes(b"not audio at all" * 100)
    done = library.genred("scan", str(library.music))
    assert done.returncode == 0, done.stderr
    url = f"sqlite:///{library.db}"
    engine = open_catalogue(url)
    first = library.music / "Drone" / "0.flac"
    corrections.add_label(engine, first, "Jazz")
    corrections.add_label(engine, first, "Blues")
    corrections.add_label(engine, library.music / "Pulse" / "1.flac", "Rock")
    corrections.remove_label(engine, library.music / "Pulse" / "1.flac")
    moves.mark_missing(engine, library.music / "Chirp" / "2.flac")
    with engine.begin() as conn:
        track_id = conn.scalar(text("SELECT id FROM tracks WHERE path = :p"), {"p": str(first)})
        conn.execute(TagBackup.__table__.insert().values(
            track_id=track_id, format="vorbis", original={"genre": ["Pop"]},
            written={"genre": ["Blues"]}, restored=False))
        conn.execute(TrainingRun.__table__.insert().values(
            trigger="cli", n_labels=2, decision="rejected", reason="too few", metrics={}))
    catalogue.set_state(engine, "last_scan", "2026-12-01T10:00:00+00:00")
    engine.dispose()
    return url


def _genred(library: Library, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GENRED), *args], env=library.env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_a_sqlite_catalogue_migrated_to_postgresql_answers_the_same(
        tmp_path: Path, postgres_url: str) -> None:
    library = Library.create(tmp_path)
    source = _sqlite_catalogue(library)
    moved = _genred(library, "migrate", "--from", source, "--to", postgres_url,
                               "--format", "json")
    assert moved.returncode == 0, moved.stderr
    counts = json.loads(moved.stdout)
    assert counts["tracks"] == 7 and counts["corrections"] == 3 and counts["tag_backups"] == 1
    assert counts["predictions"] >= 6 and counts["training_runs"] == 1

    for args in (["query", "--format", "json"], ["query", "--format", "json", "--sort", "genre"],
                 ["query", "--format", "json", "--genre", "blues"],
                 ["query", "--format", "json", "--status", "error"],
                 ["query", "--format", "json", "--path", f"{library.music}/P*"],
                 ["query"], ["stats"]):
        before = _genred(library, "--db", source, *args)
        after = _genred(library, "--db", postgres_url, *args)
        assert before.returncode == after.returncode == 0, (before.stderr, after.stderr)
        if "json" in args:
            assert json.loads(after.stdout) == json.loads(before.stdout), args
        else:
            assert after.stdout == before.stdout, args

    target = open_catalogue(postgres_url)
    catalogue.mark_pending(target, library.music / "new.flac")  # ids continue past the copy
    with target.connect() as conn:
        assert conn.scalar(select(func.max(TrainingRun.id))) == 1
    again = _genred(library, "migrate", "--from", source, "--to", postgres_url)
    assert again.returncode == 1 and "already holds tracks" in again.stderr
