"""The tag policy: thresholds, existing genres, corrections, pretend, backup and restore."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from storage import catalogue, corrections, tags
from storage.schema import TagBackup
from storage.tagging import (
    FAILED,
    REFUSED,
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
    return classified_at(engine, path, genre, confidence)


def classified_at(engine: Engine, path: Path, genre: str = "Jazz",
                  confidence: float = 0.8) -> Path:
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


# --- refusals, links and durability ------------------------------------------------------

def backups(engine: Engine) -> list[TagBackup]:
    with Session(engine) as s:
        return list(s.scalars(select(TagBackup)))


def test_a_truncated_wav_is_refused_every_run_with_its_reason_and_no_backup(
    engine: Engine, tmp_path: Path
) -> None:
    song = classified(engine, tmp_path / "cut.wav")
    data = song.read_bytes()
    song.write_bytes(data[: len(data) * 2 // 3])  # an interrupted copy
    before = song.read_bytes()
    for _ in range(2):
        outcome = write_track(engine, song, TagPolicy(threshold=0.0))
        assert outcome.action == REFUSED
        assert "would change the decoded audio" in outcome.detail
        assert song.read_bytes() == before
    assert backups(engine) == [] and backed_up_paths(engine) == []


def test_a_genre_with_control_characters_is_refused(engine: Engine, tmp_path: Path) -> None:
    song = classified(engine, tmp_path / "a.flac", genre="Rock\nPop")
    before = song.read_bytes()
    outcome = write_track(engine, song, TagPolicy(threshold=0.0))
    assert outcome.action == REFUSED and "not printable" in outcome.detail
    assert "\n" not in outcome.line()
    assert song.read_bytes() == before


def test_symlinked_track_written_and_restored_through_the_link(engine: Engine,
                                                                tmp_path: Path) -> None:
    real = make_track(tmp_path / "store" / "a.mp3", "Drone", 3.0)
    kind, _ = tags.read_values(real)
    tags.update(real, {tags.genre_key(kind): ["Bossa Nova"]})
    link = tmp_path / "lib" / "a.mp3"
    link.parent.mkdir()
    link.symlink_to(real)
    classified_at(engine, link)
    _, original = tags.read_values(real)

    assert write_track(engine, link, TagPolicy(0.0, overwrite_existing=True)).action == WRITTEN
    assert link.is_symlink() and tags.read_genres(real) == ["Jazz"]
    assert restore_track(engine, link).action == RESTORED
    assert link.is_symlink() and tags.read_values(real) == (kind, original)


def test_hard_linked_track_refused_then_split_only_when_allowed(engine: Engine,
                                                                 tmp_path: Path) -> None:
    song = classified(engine, tmp_path / "a.ogg")
    os.link(song, tmp_path / "same.ogg")
    outcome = write_track(engine, song, TagPolicy(threshold=0.0))
    assert outcome.action == REFUSED and "2 hard links" in outcome.detail
    assert backups(engine) == []

    pretend = write_track(engine, song, TagPolicy(threshold=0.0, pretend=True))
    assert pretend.action == REFUSED and "2 hard links" in pretend.detail
    allowed = TagPolicy(threshold=0.0, split_hard_links=True)
    assert write_track(engine, song, allowed).action == WRITTEN
    os.link(song, tmp_path / "again.ogg")  # linked again before the restore
    assert restore_track(engine, song).action == REFUSED
    assert restore_track(engine, song, split_hard_links=True).action == RESTORED
    assert tags.read_genres(song) == [] and tags.read_genres(tmp_path / "again.ogg") == ["Jazz"]


def test_the_original_is_committed_before_the_rename(engine: Engine, tmp_path: Path) -> None:
    song = classified(engine, tmp_path / "a.flac", existing="Bossa Nova")
    _, original = tags.read_values(song)
    seen: list[tuple[dict[str, list[str]], dict[str, list[str]] | None, bool]] = []

    def at_the_rename(*args: object, **kwargs: object) -> None:  # a second connection looks
        with Session(engine) as s:
            (b,) = s.scalars(select(TagBackup))
            seen.append((dict(b.original), b.pending, tags.read_genres(song) == ["Bossa Nova"]))
        real_replace(*args, **kwargs)

    real_replace = os.replace
    os.replace = at_the_rename  # type: ignore[assignment]
    try:
        write_track(engine, song, TagPolicy(0.0, overwrite_existing=True))
    finally:
        os.replace = real_replace
    assert seen[0][0] == original and seen[0][2]  # committed while the file was still old
    assert seen[0][1] is not None and seen[0][1]["genre"] == ["Jazz"]
    (b,) = backups(engine)
    assert b.pending is None and b.written["genre"] == ["Jazz"]


def test_a_write_stopped_after_the_backup_commit_leaves_no_backup(
    engine: Engine, tmp_path: Path
) -> None:
    from sqlalchemy import event

    from tests.storage.test_tag_safety import Holder

    song = classified(engine, tmp_path / "a.mp3")
    before = song.read_bytes()
    holders: list[Holder] = []

    def a_writer_opens_it(session: Session) -> None:  # right after the backup's commit
        if not holders and any(isinstance(o, TagBackup) for o in session.identity_map.values()):
            holders.append(Holder(song, "ab"))

    event.listen(Session, "after_commit", a_writer_opens_it)
    try:
        outcome = write_track(engine, song, TagPolicy(threshold=0.0))
    finally:
        event.remove(Session, "after_commit", a_writer_opens_it)
        for holder in holders:
            holder.close()
    assert holders, "the backup was never committed"
    assert outcome.action == REFUSED and "open for writing" in outcome.detail
    assert song.read_bytes() == before
    assert backups(engine) == []


def test_a_kill_after_the_rename_still_restores(engine: Engine, tmp_path: Path) -> None:
    """What the catalogue holds when a write was killed between rename and bookkeeping: the
    backup's ``pending`` is what the file says, and restore recognises it."""
    song = classified(engine, tmp_path / "a.flac", existing="Bossa Nova")
    kind, original = tags.read_values(song)
    after = tags.update(song, tags.genre_values(kind, "Jazz", "v1", 0.8))
    with Session(engine) as s, s.begin():
        track = catalogue.track_at(s, str(song))
        assert track is not None
        s.add(TagBackup(track_id=track.id, format=kind, original=original, written={},
                        pending=after))
    assert write_track(engine, song, TagPolicy(threshold=0.0)).action == SKIPPED  # already
    assert restore_track(engine, song).action == RESTORED
    assert tags.read_values(song) == (kind, original)
