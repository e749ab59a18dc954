"""The settle tracker (fake clock, real files), the junk filter, and a real observer."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from daemon.watcher import Change, FileStabilityTracker, FolderWatcher, is_junk

T = TypeVar("T")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "path",
    [
        "/m/.DS_Store",
        "/m/Thumbs.db",
        "/m/@eaDir/song.mp3@SynoEAStream",
        "/m/album/._song.mp3",
        "/m/album/song.mp3.part",
        "/m/album/song.flac.crdownload",
        "/m/.Trash-1000/files/a.mp3",
        "/m/album/.song.mp3.genred-tmp",
        "/m/album/song.mp3~",
    ],
)
def test_junk_names_are_filtered(path: str) -> None:
    assert is_junk(path)


@pytest.mark.parametrize(
    "path", ["/m/Artist/Album/01 Song.mp3", "/m/a.b/c.flac", "/m/part/track.ogg", "/m/x.opus"]
)
def test_music_names_are_not_junk(path: str) -> None:
    assert not is_junk(path)


def test_file_settles_only_after_quiet_period(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = FileStabilityTracker(5.0, clock=clock)
    song = tmp_path / "song.flac"
    song.write_bytes(b"x" * 100)
    tracker.touch(str(song))
    assert tracker.next_due() == 1005.0
    clock.now += 4.9
    assert tracker.settled() == []
    clock.now += 0.2
    assert tracker.settled() == [str(song)]
    assert len(tracker) == 0 and tracker.next_due() is None


def test_growing_file_restarts_its_timer(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = FileStabilityTracker(5.0, clock=clock)
    song = tmp_path / "song.flac"
    song.write_bytes(b"x" * 100)
    tracker.touch(str(song))
    clock.now += 6
    with song.open("ab") as fh:  # still being copied, but no event reached us
        fh.write(b"y" * 100)
    assert tracker.settled() == []  # size changed: not settled, timer restarted
    assert tracker.next_due() == clock.now + 5
    clock.now += 5
    assert tracker.settled() == [str(song)]


def test_new_event_restarts_the_timer(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = FileStabilityTracker(2.0, clock=clock)
    song = tmp_path / "a.mp3"
    song.write_bytes(b"1")
    tracker.touch(str(song))
    clock.now += 1.5
    tracker.touch(str(song))
    clock.now += 1.5
    assert tracker.settled() == []
    clock.now += 0.5
    assert tracker.settled() == [str(song)]


def test_vanished_file_is_dropped(tmp_path: Path) -> None:
    clock = FakeClock()
    tracker = FileStabilityTracker(1.0, clock=clock)
    song = tmp_path / "a.mp3"
    song.write_bytes(b"1")
    tracker.touch(str(song))
    song.unlink()
    clock.now += 2
    assert tracker.settled() == []
    assert len(tracker) == 0
    tracker.touch(str(tmp_path / "never-existed.mp3"))
    assert len(tracker) == 0


WRITER = """
import sys
out = open(sys.argv[1], "ab")
out.write(b"more")
out.flush()
print("open", flush=True)
sys.stdin.readline()
out.close()
"""


def test_a_quiet_file_another_program_has_open_for_writing_is_not_settled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """A copy that stalls longer than the settle time: size and mtime stay the same, but
    the copying process still holds the file open for writing (issue 14 item 1)."""
    import logging
    import subprocess
    import sys

    caplog.set_level(logging.INFO, logger="daemon.watcher")
    clock = FakeClock()
    tracker = FileStabilityTracker(5.0, clock=clock)
    song, read_only = tmp_path / "copying.flac", tmp_path / "being-read.flac"
    song.write_bytes(b"x" * 100)
    read_only.write_bytes(b"y" * 100)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(song)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert writer.stdin is not None and writer.stdout is not None
    try:
        assert writer.stdout.readline().strip() == "open"
        with read_only.open("rb"):  # a reader (a player, genred decoding) holds nothing up
            tracker.touch(str(song))
            tracker.touch(str(read_only))
            for check in range(3):  # quiet far longer than settle_seconds, still open
                clock.now += 60
                assert tracker.settled() == ([str(read_only)] if check == 0 else [])
                assert str(song) in tracker and tracker.next_due() == clock.now + 5
        assert caplog.text.count("another program has it open for writing") == 1
        writer.stdin.write("done\n")
        writer.stdin.flush()
        assert writer.wait(timeout=120) == 0  # closed: nothing holds it now
    finally:
        writer.kill()
        writer.wait(timeout=60)
    clock.now += 5
    assert tracker.settled() == [str(song)]
    assert len(tracker) == 0


def test_discard_under_forgets_a_folder(tmp_path: Path) -> None:
    tracker = FileStabilityTracker(1.0, clock=FakeClock())
    (tmp_path / "a").mkdir()
    for name in ("a/1.mp3", "a/2.mp3", "b.mp3"):
        (tmp_path / name).write_bytes(b"1")
        tracker.touch(str(tmp_path / name))
    tracker.discard_under(str(tmp_path / "a"))
    assert str(tmp_path / "b.mp3") in tracker and len(tracker) == 1


def _collect(watcher: FolderWatcher, want: Change, deadline: float = 120.0) -> list[Change]:
    """Changes up to and including ``want`` (inotify reports a folder's events in order, so
    what ``want`` follows arrived before it); the deadline is a hang guard only."""
    seen: list[Change] = []
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        change = watcher.get(timeout=0.2)
        if change is not None:
            seen.append(change)
            if change == want:
                return seen
    raise AssertionError(f"{want} not seen; got {seen}")


def test_observer_reports_create_move_delete_recursively(tmp_path: Path) -> None:
    album = tmp_path / "Artist" / "Album"
    album.mkdir(parents=True)
    watcher = FolderWatcher([tmp_path])
    watcher.start()
    try:
        song = album / "01.flac"
        song.write_bytes(b"audio")
        _collect(watcher, Change("changed", str(song)))
        moved = album / "02.flac"
        os.rename(song, moved)
        _collect(watcher, Change("moved", str(song), str(moved)))
        moved.unlink()
        _collect(watcher, Change("deleted", str(moved)))
        (tmp_path / "Artist").rename(tmp_path / "Artist2")
        _collect(watcher, Change("dir_moved", str(tmp_path / "Artist"), str(tmp_path / "Artist2")))
    finally:
        watcher.stop()


def test_reading_a_file_does_not_wake_the_watcher(tmp_path: Path) -> None:
    song = tmp_path / "a.flac"
    song.write_bytes(b"audio" * 100)
    watcher = FolderWatcher([tmp_path])
    watcher.start()
    try:
        song.read_bytes()  # the daemon decoding a file: open + close-no-write
        marker = tmp_path / "marker.flac"
        marker.write_bytes(b"x")  # an event after the read's: the read's would come first
        seen = _collect(watcher, Change("changed", str(marker)))
        assert all(change.path != str(song) for change in seen), seen
        watcher.wake()  # the marker's other events (modified, closed) may come first
        assert {c.path for c in _collect(watcher, Change("wake", ""))} <= {"", str(marker)}
    finally:
        watcher.stop()


def test_junk_is_judged_below_the_watched_root() -> None:
    assert not is_junk("/home/u/.music/Album/a.mp3", root="/home/u/.music")
    assert is_junk("/home/u/.music/Album/.a.mp3", root="/home/u/.music")


def test_control_dir_wakes_only_on_finished_files(tmp_path: Path) -> None:
    music, store = tmp_path / "music", tmp_path / "models"
    music.mkdir()
    watcher = FolderWatcher([music], control_dirs=[store])
    watcher.start()
    try:
        tmp = store / ".ACTIVE.1234"
        tmp.write_text("v2\n")
        os.replace(tmp, store / "ACTIVE")  # the temp file's events come before the rename's
        assert _collect(watcher, Change("wake", str(store / "ACTIVE"))) == [
            Change("wake", str(store / "ACTIVE"))]
    finally:
        watcher.stop()


def _until(condition: Callable[[], T], what: str, deadline: float = 120.0) -> T:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_deleted_and_recreated_root_is_noticed_and_watched_again(tmp_path: Path) -> None:
    music = tmp_path / "music"
    music.mkdir()
    watcher = FolderWatcher([music])
    watcher.start()
    try:
        assert watcher.check_roots() == ([], [])
        music.rmdir()
        gone = _until(lambda: watcher.check_roots()[0], "the deleted root to be noticed")
        assert gone == [str(music)] and watcher.attached() == []
        assert watcher.check_roots() == ([], [])  # once
        music.mkdir()
        assert watcher.check_roots() == ([], [str(music)])
        song = music / "new.flac"
        song.write_bytes(b"audio")
        _collect(watcher, Change("changed", str(song)))
    finally:
        watcher.stop()


def test_a_renamed_root_is_dropped_not_followed_under_its_old_name(tmp_path: Path) -> None:
    music, away = tmp_path / "music", tmp_path / "away"
    music.mkdir()
    watcher = FolderWatcher([music])
    watcher.start()
    try:
        music.rename(away)  # inotify follows the inode and would report music/… paths
        assert watcher.check_roots() == ([str(music)], [])
        away.rename(music)
        assert watcher.check_roots() == ([], [str(music)])
        song = music / "back.flac"
        song.write_bytes(b"audio")
        _collect(watcher, Change("changed", str(song)))
    finally:
        watcher.stop()


def test_set_roots_adds_and_drops_watched_folders(tmp_path: Path) -> None:
    one, two, later = tmp_path / "one", tmp_path / "two", tmp_path / "later"
    one.mkdir()
    two.mkdir()
    watcher = FolderWatcher([one])
    watcher.start()
    try:
        added, removed = watcher.set_roots([str(two), str(later)])
        assert added == [str(two), str(later)] and removed == [str(one)]
        assert watcher.attached() == [str(two)]  # `later` is watched once it exists
        later.mkdir()
        assert watcher.check_roots() == ([], [str(later)])
        song = two / "a.flac"
        song.write_bytes(b"audio")
        _collect(watcher, Change("changed", str(song)))
    finally:
        watcher.stop()
