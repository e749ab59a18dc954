"""Reconciling the catalogue with the folders: what changed while the daemon was down,
and what each watcher change does. Real files, real SQLite, a fake clock for settling."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from daemon.reconcile import Reconciler
from daemon.watcher import Change, FileStabilityTracker
from storage.catalogue import file_stat, get_track, mark_pending, record_prediction
from storage.corrections import add_label, history
from storage.db import open_catalogue
from tests.audiogen import make_track


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakePrediction:
    genre, confidence, model, duration, format = "Drone", 0.9, "m1", 35.0, "flac"
    probabilities = {"Drone": 0.9, "Pulse": 0.1}  # noqa: RUF012


@pytest.fixture
def engine(catalogue_url: str) -> Iterator[Engine]:
    """A catalogue on each backend (tests/conftest.py)."""
    engine = open_catalogue(catalogue_url)
    yield engine
    engine.dispose()


def _classified(engine: Engine, path: Path) -> None:
    size, mtime = file_stat(path)
    record_prediction(engine, path, FakePrediction(), fingerprint=f"fp-{path.name}",
                      size=size, mtime=mtime)


def _reconciler(engine: Engine, music: Path, clock: Clock) -> Reconciler:
    return Reconciler(engine, [str(music)], FileStabilityTracker(2.0, clock=clock),
                      wall_clock=lambda: 10**10)


def _age(path: Path, seconds: float = 3600) -> None:
    st = path.stat()
    os.utime(path, (st.st_atime - seconds, st.st_mtime - seconds))


def test_rescan_finds_what_changed_while_the_daemon_was_down(
    engine: Engine, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    kept = make_track(music / "kept.flac", "Drone", 3)
    edited = make_track(music / "edited.flac", "Pulse", 3)
    gone = make_track(music / "gone.flac", "Chirp", 3)
    for path in (kept, edited, gone):
        _age(path)
        _classified(engine, path)
    new = make_track(music / "sub" / "new.flac", "Noise", 3)
    (music / "cover.jpg").write_bytes(b"\xff\xd8 not music")
    (music / ".hidden.flac").write_bytes(b"junk")
    with edited.open("ab") as fh:
        fh.write(b"\0" * 10)
    gone.unlink()
    for path in (new, edited):
        _age(path)

    counts = _reconciler(engine, music, Clock()).rescan(settle_seconds=2.0)
    assert counts == {"queued": 2, "settling": 0, "unchanged": 1, "missing": 1}
    assert get_track(engine, new).status == "pending"  # type: ignore[union-attr]
    assert get_track(engine, edited).status == "pending"  # type: ignore[union-attr]
    assert get_track(engine, kept).status == "ok"  # type: ignore[union-attr]
    assert get_track(engine, gone).status == "missing"  # type: ignore[union-attr]
    assert get_track(engine, music / "cover.jpg") is None
    assert get_track(engine, music / ".hidden.flac") is None


def test_rescan_lets_a_file_being_written_settle_first(engine: Engine, tmp_path: Path) -> None:
    music = tmp_path / "music"
    fresh = make_track(music / "fresh.flac", "Drone", 3)  # mtime: just now
    reconciler = Reconciler(engine, [str(music)], FileStabilityTracker(2.0, clock=Clock()))
    counts = reconciler.rescan(settle_seconds=60.0)
    assert counts["settling"] == 1 and get_track(engine, fresh) is None
    assert str(fresh) in reconciler.tracker


def test_settled_file_is_queued_once_and_own_writes_are_ignored(
    engine: Engine, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    clock = Clock()
    reconciler = _reconciler(engine, music, clock)
    song = make_track(music / "a.flac", "Drone", 3)
    reconciler.apply(Change("changed", str(song)))
    assert reconciler.tracker.settled() == []
    clock.now += 2.5
    assert reconciler.tracker.settled() == [str(song)]
    assert reconciler.enqueue_if_changed(str(song))
    _classified(engine, song)  # the worker did its job (and wrote tags, storing the stat)
    reconciler.apply(Change("moved", str(music / ".a.genred-tmp-x.flac"), str(song)))
    clock.now += 2.5
    assert reconciler.tracker.settled() == [str(song)]
    assert not reconciler.enqueue_if_changed(str(song))  # same size+mtime: our own write
    assert get_track(engine, song).status == "ok"  # type: ignore[union-attr]


def test_junk_and_non_audio_changes_are_ignored(engine: Engine, tmp_path: Path) -> None:
    music = tmp_path / "music"
    music.mkdir()
    reconciler = _reconciler(engine, music, Clock())
    for name in ("song.mp3.part", "Thumbs.db", "folder.jpg", ".DS_Store"):
        (music / name).write_bytes(b"x")
        reconciler.apply(Change("changed", str(music / name)))
    reconciler.apply(Change("changed", "/somewhere/else.mp3"))
    assert len(reconciler.tracker) == 0


def test_moves_carry_the_track_and_deletes_mark_it_missing(
    engine: Engine, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    song = make_track(music / "a.flac", "Drone", 3)
    _classified(engine, song)
    add_label(engine, song, "Polka")
    reconciler = _reconciler(engine, music, Clock())
    dest = music / "b.flac"
    os.rename(song, dest)
    reconciler.apply(Change("moved", str(song), str(dest)))
    assert get_track(engine, song) is None
    assert get_track(engine, dest).status == "ok"  # type: ignore[union-attr]
    assert history(engine, dest) == [("Polka", "user", True)]

    folder = music / "album"
    other = make_track(folder / "c.flac", "Pulse", 3)
    _classified(engine, other)
    for path in (dest, other):
        path.unlink()
    reconciler.apply(Change("deleted", str(dest)))
    folder.rmdir()
    reconciler.apply(Change("dir_deleted", str(folder)))
    assert get_track(engine, dest).status == "missing"  # type: ignore[union-attr]
    assert get_track(engine, other).status == "missing"  # type: ignore[union-attr]
    assert history(engine, dest) == [("Polka", "user", True)]


def test_rename_to_a_non_audio_name_marks_missing(engine: Engine, tmp_path: Path) -> None:
    music = tmp_path / "music"
    song = make_track(music / "a.flac", "Drone", 3)
    _classified(engine, song)
    reconciler = _reconciler(engine, music, Clock())
    backup = music / "a.flac.part"
    os.rename(song, backup)
    reconciler.apply(Change("moved", str(song), str(backup)))
    assert get_track(engine, song).status == "missing"  # type: ignore[union-attr]


def test_pending_track_stays_queued_on_rescan(engine: Engine, tmp_path: Path) -> None:
    music = tmp_path / "music"
    song = make_track(music / "a.flac", "Drone", 3)
    _age(song)
    size, mtime = file_stat(song)
    mark_pending(engine, song, size, mtime)  # left by a kill
    counts = _reconciler(engine, music, Clock()).rescan(settle_seconds=2.0)
    assert counts["queued"] == 1 and get_track(engine, song).status == "pending"  # type: ignore[union-attr]


def test_an_interrupted_walk_marks_nothing_missing(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import daemon.reconcile

    monkeypatch.setattr(daemon.reconcile, "WALK_CHECK_EVERY", 1)
    music = tmp_path / "music"
    gone = make_track(music / "gone.flac", "Drone", 3)
    _classified(engine, gone)
    gone.unlink()
    for i in range(3):
        _age(make_track(music / f"n{i}.flac", "Pulse", 3, seed=i))
    calls: list[int] = []

    def stop_after_two() -> bool:
        calls.append(1)
        return len(calls) < 2

    counts = _reconciler(engine, music, Clock()).rescan(2.0, stop_after_two)
    assert counts["queued"] == 1 and counts["missing"] == 0
    assert get_track(engine, gone).status == "ok"  # type: ignore[union-attr]
