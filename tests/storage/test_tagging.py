"""The tag policy: thresholds, existing genres, corrections, pretend, backup and restore."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from storage import catalogue, corrections, tags
from storage.schema import TagBackup
from storage.tagging import (
    FAILED,
    RESTORED,
    SKIPPED,
    WOULD_RESTORE,
    WOULD_WRITE,
    WRITTEN,
    TagPolicy,
    backed_up_paths,
    restore_track,
    write_track,
)
from tests.audiogen import make_track
from tests.storage.test_catalogue import guess


def classified(engine: Engine, path: Path, genre: str = "Jazz", confidence: float = 0.8,
               existing: str | None = None) -> Path:
    make_track(path, "Drone", 3.0)
    if existing is not None:
        kind, _ = tags.read_values(path)
        tags.update(path, {tags.genre_key(kind): [existing]})
    size, mtime = catalogue.file_stat(path)
    catalogue.record_prediction(engine, path, guess(genre, "v1", confidence),
                                fingerprint=None, size=size, mtime=mtime)
    return path


def test_a_confident_prediction_is_written_with_provenance(engine: Engine,
                                                           tmp_path: Path) -> None:
    song = classified(engine, tmp_path / "a.flac")
    outcome = write_track(engine, song, TagPolicy(threshold=0.5))
    assert (outcome.action, outcome.detail) == (WRITTEN, "(none) -> Jazz")
    assert tags.read_values(song)[1] == {
        "genre": ["Jazz"], "genred_model": ["v1"], "genred_confidence": ["0.800"]}


def test_after_writing_the_track_knows_the_files_new_size_and_mtime(
    engine: Engine, tmp_path: Path
) -> None:
    song = classified(engine, tmp_path / "a.mp3")
    write_track(engine, song, TagPolicy(threshold=0.0))
    size, mtime = catalogue.file_stat(song)
    assert catalogue.is_unchanged(engine, song, size, mtime, "v1")


def test_below_the_threshold_nothing_is_written(engine: Engine, tmp_path: Path) -> None:
    song = classified(engine, tmp_path / "a.ogg", confidence=0.3)
    before = song.read_bytes()
    assert write_track(engine, song, TagPolicy(threshold=0.5)).action == SKIPPED
    assert song.read_bytes() == before


def test_an_existing_genre_is_kept_unless_overwrite_existing(engine: Engine,
                                                            tmp_path: Path) -> None:
    song = classified(engine, tmp_path / "a.m4a", existing="Bossa Nova")
    outcome = write_track(engine, song, TagPolicy(threshold=0.0))
    assert outcome.action == SKIPPED and "overwrite_existing" in outcome.detail
    assert tags.read_genres(song) == ["Bossa Nova"]
    assert write_track(engine, song, TagPolicy(0.0, overwrite_existing=True)).action == WRITTEN
    assert tags.read_genres(song) == ["Jazz"]


def test_a_correction_is_always_written(engine: Engine, tmp_path: Path) -> None:
    song = classified(engine, tmp_path / "a.wv", confidence=0.1, existing="Pop")
    corrections.add_label(engine, song, "Blues")
    assert write_track(engine, song, TagPolicy(threshold=0.9)).action == WRITTEN
    kind, values = tags.read_values(song)
    assert tags.genre_of(kind, values) == ["Blues"]
    assert tags.provenance(kind, values) == tags.USER_PROVENANCE


def test_genred_may_update_a_genre_it_wrote_itself(engine: Engine, tmp_path: Path) -> None:
    song = classified(engine, tmp_path / "a.flac")
    write_track(engine, song, TagPolicy(threshold=0.0))
    catalogue.record_prediction(engine, song, guess("Rock", "v2", 0.9), fingerprint=None,
                                size=1, mtime=1.0)
    assert write_track(engine, song, TagPolicy(threshold=0.0)).action == WRITTEN
    assert tags.read_genres(song) == ["Rock"]


def test_pretend_decides_but_touches_nothing(engine: Engine, tmp_path: Path) -> None:
    song = classified(engine, tmp_path / "a.mp3")
    before = song.read_bytes()
    outcome = write_track(engine, song, TagPolicy(threshold=0.0, pretend=True))
    assert outcome.action == WOULD_WRITE
    assert song.read_bytes() == before
    assert backed_up_paths(engine) == []


def test_restore_puts_the_original_values_back_exactly(engine: Engine, tmp_path: Path) -> None:
    song = classified(engine, tmp_path / "a.mp3", existing="Bossa Nova")
    kind, original = tags.read_values(song)
    write_track(engine, song, TagPolicy(0.0, overwrite_existing=True))
    corrections.add_label(engine, song, "Blues")
    write_track(engine, song, TagPolicy(0.0))  # a second write keeps the first backup
    with Session(engine) as s:
        backups = s.scalars(select(TagBackup)).all()
        assert [b.original for b in backups] == [original]

    assert restore_track(engine, song, pretend=True).action == WOULD_RESTORE
    assert tags.read_genres(song) == ["Blues"]
    assert restore_track(engine, song).action == RESTORED

    assert tags.read_values(song) == (kind, original)
    assert backed_up_paths(engine) == []
    assert restore_track(engine, song).action == SKIPPED  # nothing left to restore


def test_a_genre_changed_by_hand_is_not_restored_over(engine: Engine, tmp_path: Path) -> None:
    song = classified(engine, tmp_path / "a.opus", existing="Bossa Nova")
    write_track(engine, song, TagPolicy(0.0, overwrite_existing=True))
    tags.update(song, {"genre": ["Samba"]})  # the user retagged it since

    outcome = restore_track(engine, song)

    assert outcome.action == SKIPPED and "changed since" in outcome.detail
    assert tags.read_genres(song) == ["Samba"]


def test_a_read_only_file_is_reported_not_fatal_and_untouched(
    engine: Engine, tmp_path: Path
) -> None:
    song = classified(engine, tmp_path / "a.flac")
    before = song.read_bytes()
    song.chmod(0o444)
    outcome = write_track(engine, song, TagPolicy(threshold=0.0))
    assert outcome.action == FAILED and "read-only" in outcome.detail
    assert song.read_bytes() == before


def test_a_vanished_file_is_reported_not_fatal(engine: Engine, tmp_path: Path) -> None:
    song = classified(engine, tmp_path / "a.flac")
    song.unlink()
    assert write_track(engine, song, TagPolicy(threshold=0.0)).action == FAILED
