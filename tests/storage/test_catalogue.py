"""The work queue, predictions with history, errors, missing files, moves, model versions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from storage import catalogue, corrections, moves, requeue
from storage.schema import ERROR, MISSING, OK, PENDING, Prediction


@dataclass(frozen=True)
class Guess:
    genre: str = "Jazz"
    confidence: float = 0.8
    probabilities: dict[str, float] | None = None
    model: str = "v1"
    duration: float = 30.0
    format: str = "flac"


def guess(genre: str = "Jazz", model: str = "v1", confidence: float = 0.8) -> Guess:
    return Guess(genre, confidence, {genre: confidence, "Other": 1 - confidence}, model)


def test_a_queued_track_is_pending_until_its_prediction_is_recorded(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "a.flac"
    catalogue.mark_pending(engine, path, 10, 1.5)
    assert catalogue.pending_paths(engine) == [str(path)]

    catalogue.record_prediction(engine, path, guess(), fingerprint="fp", size=10, mtime=1.5)

    info = catalogue.get_track(engine, path)
    assert info is not None
    assert (info.status, info.genre, info.model, info.fingerprint) == (OK, "Jazz", "v1", "fp")
    assert catalogue.pending_paths(engine) == []


def test_a_new_prediction_keeps_the_old_ones_as_history(engine: Engine) -> None:
    catalogue.record_prediction(engine, "/m/a.mp3", guess("Jazz", "v1"), fingerprint=None,
                                size=1, mtime=1.0)
    catalogue.record_prediction(engine, "/m/a.mp3", guess("Blues", "v2"), fingerprint=None,
                                size=1, mtime=1.0)
    with Session(engine) as s:
        rows = s.execute(select(Prediction.genre, Prediction.current)
                         .order_by(Prediction.id)).all()
    assert [tuple(r) for r in rows] == [("Jazz", False), ("Blues", True)]
    info = catalogue.get_track(engine, "/m/a.mp3")
    assert info is not None and info.genre == "Blues"


def test_unchanged_means_same_size_mtime_and_model(engine: Engine) -> None:
    catalogue.record_prediction(engine, "/m/a.mp3", guess(model="v1"), fingerprint=None,
                                size=100, mtime=5.0)
    assert catalogue.is_unchanged(engine, "/m/a.mp3", 100, 5.0, "v1")
    assert not catalogue.is_unchanged(engine, "/m/a.mp3", 101, 5.0, "v1")
    assert not catalogue.is_unchanged(engine, "/m/a.mp3", 100, 6.0, "v1")
    assert not catalogue.is_unchanged(engine, "/m/a.mp3", 100, 5.0, "v2")
    assert not catalogue.is_unchanged(engine, "/m/new.mp3", 100, 5.0, "v1")


def test_an_error_is_one_line_and_keeps_the_history(engine: Engine) -> None:
    catalogue.record_prediction(engine, "/m/a.mp3", guess(), fingerprint=None, size=1,
                                mtime=1.0)
    catalogue.record_error(engine, "/m/a.mp3", "corrupt\nframe   header", 2, 2.0)
    info = catalogue.get_track(engine, "/m/a.mp3")
    assert info is not None
    assert (info.status, info.error, info.genre) == (ERROR, "corrupt frame header", "Jazz")


def test_tracks_whose_files_are_gone_become_missing(engine: Engine, tmp_path: Path) -> None:
    kept = tmp_path / "lib" / "kept.mp3"
    kept.parent.mkdir()
    kept.write_bytes(b"x")
    for path in (kept, tmp_path / "lib" / "gone.mp3", tmp_path / "elsewhere" / "gone.mp3"):
        catalogue.record_prediction(engine, path, guess(), fingerprint=None, size=1,
                                    mtime=1.0)

    assert moves.mark_missing_under(engine, tmp_path / "lib") == 1

    statuses = {t.path: t.status for t in catalogue.tracks_under(engine, tmp_path)}
    assert statuses == {str(kept): OK, str(tmp_path / "lib" / "gone.mp3"): MISSING,
                        str(tmp_path / "elsewhere" / "gone.mp3"): OK}


def test_a_moved_file_takes_over_its_track_with_the_correction(
    engine: Engine, tmp_path: Path
) -> None:
    old, new = tmp_path / "old.mp3", tmp_path / "new.mp3"
    catalogue.record_prediction(engine, old, guess(), fingerprint="same-audio", size=1,
                                mtime=1.0)
    corrections.add_label(engine, old, "Blues")
    moves.mark_missing(engine, old)
    catalogue.mark_pending(engine, new, 1, 2.0)  # the scanner found the file at its new path

    assert moves.adopt_moved(engine, new, "same-audio") == str(old)

    assert catalogue.get_track(engine, old) is None
    moved = catalogue.get_track(engine, new)
    assert moved is not None and moved.genre == "Jazz" and moved.status == PENDING
    assert corrections.corrected_genre(engine, new) == "Blues"
    assert catalogue.count_tracks(engine) == 1


def test_a_fingerprint_of_a_track_still_present_is_not_taken_over(
    engine: Engine, tmp_path: Path
) -> None:
    first = tmp_path / "a.mp3"
    first.write_bytes(b"x")
    catalogue.record_prediction(engine, first, guess(), fingerprint="dup", size=1, mtime=1.0)
    assert moves.adopt_moved(engine, tmp_path / "copy.mp3", "dup") is None
    assert len(moves.find_by_fingerprint(engine, "dup")) == 1


def test_move_path_merges_a_placeholder_at_the_destination(engine: Engine) -> None:
    catalogue.record_prediction(engine, "/m/a.mp3", guess(), fingerprint=None, size=1,
                                mtime=1.0)
    catalogue.mark_pending(engine, "/m/b.mp3")
    corrections.add_label(engine, "/m/b.mp3", "Rock")

    assert moves.move_path(engine, "/m/a.mp3", "/m/b.mp3")

    assert catalogue.count_tracks(engine) == 1
    assert corrections.corrected_genre(engine, "/m/b.mp3") == "Rock"
    assert not moves.move_path(engine, "/m/nothing.mp3", "/m/c.mp3")


def test_one_model_version_is_active(engine: Engine) -> None:
    catalogue.register_model(engine, "v1", "/models/v1", ["Jazz"])
    catalogue.register_model(engine, "v2", "/models/v2", ["Jazz", "Rock"])
    catalogue.register_model(engine, "v3", "/models/v3", ["Jazz"], active=False)
    catalogue.register_model(engine, "v2", "/models/v2", ["Jazz", "Rock"])  # idempotent
    assert catalogue.active_model(engine) == "v2"
    with Session(engine) as s:
        from storage.schema import ModelVersion

        assert s.scalar(select(func.count()).select_from(ModelVersion)) == 3


def test_paths_are_stored_absolute_and_normalised(engine: Engine, tmp_path: Path,
                                                  monkeypatch: object) -> None:
    catalogue.mark_pending(engine, f"{tmp_path}/x/../a.mp3")
    assert catalogue.pending_paths(engine) == [str(tmp_path / "a.mp3")]


def test_state_values_round_trip(engine: Engine) -> None:
    assert catalogue.get_state(engine, "last_scan") is None
    catalogue.set_state(engine, "last_scan", "1")
    catalogue.set_state(engine, "last_scan", "2")
    assert catalogue.get_state(engine, "last_scan") == "2"


def _file(path: Path, data: bytes = b"audio") -> tuple[Path, int, float]:
    path.write_bytes(data)
    return (path, *catalogue.file_stat(path))


def test_switching_models_queues_other_models_tracks_and_unqueues_its_own(
    engine: Engine, tmp_path: Path
) -> None:
    same, size, mtime = _file(tmp_path / "same.flac")
    catalogue.record_prediction(engine, same, guess(model="v1"), fingerprint=None, size=size,
                                mtime=mtime)
    corrected, size2, mtime2 = _file(tmp_path / "corrected.flac")
    catalogue.record_prediction(engine, corrected, guess(model="v1"), fingerprint=None,
                                size=size2, mtime=mtime2)
    corrections.add_label(engine, corrected, "Polka")

    assert requeue.requeue_for_model(engine, "v2") == requeue.Requeue(queued=1, unqueued=0)
    assert catalogue.pending_paths(engine) == [str(same)]  # the corrected track is left alone
    assert catalogue.has_pending(engine)

    # Back to v1 before v2 classified anything: v1's answer still stands.
    assert requeue.requeue_for_model(engine, "v1") == requeue.Requeue(queued=0, unqueued=1)
    assert catalogue.pending_paths(engine) == [] and not catalogue.has_pending(engine)
    info = catalogue.get_track(engine, same)
    assert info is not None and (info.status, info.model) == (OK, "v1")


def test_a_queued_track_whose_file_changed_stays_queued_on_a_switch_back(
    engine: Engine, tmp_path: Path
) -> None:
    edited, size, mtime = _file(tmp_path / "edited.flac")
    catalogue.record_prediction(engine, edited, guess(model="v1"), fingerprint=None,
                                size=size, mtime=mtime)
    rewritten, size2, mtime2 = _file(tmp_path / "rewritten.flac")
    catalogue.record_prediction(engine, rewritten, guess(model="v1"), fingerprint=None,
                                size=size2, mtime=mtime2)
    assert requeue.requeue_for_model(engine, "v2").queued == 2
    # Changed on disk while queued, nobody looked (e.g. the daemon was down).
    edited.write_bytes(b"new audio, longer")
    # Changed and already queued for it by the watcher/scan, which records the new stat.
    rewritten.write_bytes(b"other audio, longer")
    catalogue.mark_pending(engine, rewritten, *catalogue.file_stat(rewritten))

    assert requeue.requeue_for_model(engine, "v1") == requeue.Requeue(queued=0, unqueued=0)
    assert sorted(catalogue.pending_paths(engine)) == sorted([str(edited), str(rewritten)])


def test_a_track_queued_by_a_file_change_is_not_unqueued_by_its_own_model(
    engine: Engine, tmp_path: Path
) -> None:
    song, size, mtime = _file(tmp_path / "song.flac")
    catalogue.record_prediction(engine, song, guess(model="v1"), fingerprint=None, size=size,
                                mtime=mtime)
    catalogue.mark_pending(engine, song, size, mtime)  # e.g. `scan --force`, or a move back
    assert requeue.requeue_for_model(engine, "v1") == requeue.Requeue(queued=0, unqueued=0)
    assert catalogue.pending_paths(engine) == [str(song)]
