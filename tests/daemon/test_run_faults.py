"""`genred run` outlives its faults: a real lock on the catalogue held past the busy
timeout, a real full file system (a small tmpfs), real I/O errors (a FUSE file system,
tests/faultfs.py, that fails reads and writes on demand), a row the catalogue refuses, a model
that vanished, watched folders deleted or renamed. Each is logged once, the daemon keeps
running, and the work is done exactly once when the fault clears."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.audiogen import make_track
from tests.daemon.daemon_helpers import Daemon, Library, wait_for

pytestmark = pytest.mark.slow

SECONDS = 20.0


@pytest.fixture
def library(tmp_path: Path) -> Library:
    lib = Library.create(tmp_path)
    lib.env["GENRED_BUSY_TIMEOUT_SECONDS"] = "0.5"  # a lock "held too long" quickly
    return lib


def _start(library: Library, daemons: list[Daemon], *extra: str) -> Daemon:
    daemon = Daemon(library, *extra)
    daemons.append(daemon)
    daemon.ready()
    daemon.wait_log("start scan:")
    return daemon


def _ok_with_one_prediction(library: Library, song: Path) -> bool:
    return library.status_of(song) == "ok" and len(library.predictions(song)) == 1


def test_a_lock_held_past_the_busy_timeout_is_waited_out_and_nothing_is_lost(
    library: Library, daemons: list[Daemon]
) -> None:
    daemon = _start(library, daemons)
    holder = sqlite3.connect(library.db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program's write transaction, held
    try:
        song = make_track(library.music / "while-locked.flac", "Pulse", SECONDS, seed=1)
        daemon.wait_log("is locked by another program for longer than "
                        "busy_timeout_seconds (0.5 s)")
        daemon.wait_log("Retrying with back-off")
        assert daemon.alive()
        assert library.track(song) is None or library.status_of(song) == "pending"
    finally:
        holder.rollback()
        holder.close()
    daemon.wait_log("resumed: catalogue locked cleared")
    wait_for(lambda: _ok_with_one_prediction(library, song), 60,
             "the file dropped while the catalogue was locked")
    assert daemon.output().count("is locked by another program") == 1  # logged once
    assert "Traceback" not in daemon.output()
    assert daemon.terminate()[0] == 0


@contextlib.contextmanager
def _mounted(mount: Path, mount_it: Callable[[], str | None]) -> Iterator[None]:
    """While ``mount_it()`` (None once ``mount`` is mounted, else why not: the test is
    skipped) holds: ``mount`` is unmounted (lazily) on the way out either way."""
    try:
        why_not = mount_it()
        if why_not is not None:
            pytest.skip(why_not)
        yield
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


@contextlib.contextmanager
def _small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()

    def mount_it() -> str | None:
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                   str(where)], capture_output=True, text=True, check=False)
        except FileNotFoundError:
            return "no mount command: cannot make a small full file system"
        if done.returncode != 0:
            return f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}"
        return None

    with _mounted(where, mount_it):
        yield where


def _fill(folder: Path) -> Path:
    """Write a file until the file system is full; returns it."""
    filler = folder / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


def test_a_full_catalogue_disk_is_waited_out_and_nothing_is_lost(
    library: Library, daemons: list[Daemon], tmp_path: Path
) -> None:
    with _small_tmpfs(tmp_path / "small", "8m") as small:
        library = dataclasses.replace(library, db=small / "catalogue.db")
        daemon = _start(library, daemons)
        with sqlite3.connect(library.db) as conn:  # the WAL starts empty: writes need room
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        filler = _fill(small)
        song = make_track(library.music / "while-full.flac", "Drone", SECONDS, seed=2)
        daemon.wait_log("is full")
        assert daemon.alive()
        filler.unlink()
        daemon.wait_log("resumed: disk full cleared")
        wait_for(lambda: _ok_with_one_prediction(library, song), 60,
                 "the file dropped while the disk was full")
        assert daemon.output().count("free some space there") == 1  # logged once
        assert daemon.terminate()[0] == 0


FAULTFS = Path(__file__).parents[1] / "faultfs.py"


@contextlib.contextmanager
def _failing_disk(where: Path) -> Iterator[tuple[Path, Path]]:
    """(a folder on a FUSE file system mirroring ``where``/root, the switch file: while it
    exists, reads and writes there fail with EIO). Skips where FUSE cannot be mounted."""
    root, mount, switch = where / "root", where / "mount", where / "failing"
    root.mkdir(parents=True)
    mount.mkdir()
    proc = subprocess.Popen([sys.executable, str(FAULTFS), str(root), str(mount), str(switch)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def mount_it() -> str | None:
        wait_for(lambda: os.path.ismount(mount) or proc.poll() is not None, 60,
                 "the FUSE file system to mount (or fail)")
        if os.path.ismount(mount):
            return None
        error = (proc.stderr.read().strip() if proc.stderr else "") or "no message"
        return (f"cannot mount a FUSE file system here (needs /dev/fuse, root and "
                f"Debian's libfuse2): {error.splitlines()[-1]}")

    try:
        with _mounted(mount, mount_it):
            yield mount, switch
    finally:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_io_errors_on_the_catalogue_disk_are_waited_out_and_nothing_is_lost(
    library: Library, daemons: list[Daemon], tmp_path: Path
) -> None:
    with _failing_disk(tmp_path / "disk") as (disk, failing):
        library = dataclasses.replace(library, db=disk / "catalogue.db")
        daemon = _start(library, daemons)
        failing.touch()  # the disk starts failing: every read and write is EIO
        song = make_track(library.music / "while-failing.flac", "Pulse", SECONDS, seed=3)
        daemon.wait_log("disk I/O error")
        daemon.wait_log("Retrying with back-off")
        assert daemon.alive()
        failing.unlink()  # the disk heals
        daemon.wait_log("resumed: i/o error cleared")
        wait_for(lambda: _ok_with_one_prediction(library, song), 60,
                 "the file dropped while the catalogue's disk failed")
        assert daemon.output().count("check the disk (dmesg, smartctl)") == 1  # logged once
        assert "Traceback" not in daemon.output()
        assert daemon.terminate()[0] == 0


def test_a_row_the_catalogue_refuses_holds_up_nothing_and_records_once_allowed(
    library: Library, daemons: list[Daemon]
) -> None:
    daemon = _start(library, daemons)
    with sqlite3.connect(library.db) as conn:  # a constraint of someone else's making
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON predictions WHEN "
                     "(SELECT path FROM tracks WHERE id = NEW.track_id) LIKE '%refused%' "
                     "BEGIN SELECT RAISE(ABORT, 'not this one'); END")
    refused = make_track(library.music / "refused.flac", "Chirp", SECONDS, seed=3)
    fine = make_track(library.music / "fine.flac", "Noise", SECONDS, seed=4)
    wait_for(lambda: _ok_with_one_prediction(library, fine), 60, "the other file")
    daemon.wait_log("the catalogue refused to record")
    assert library.status_of(refused) == "pending" and not library.predictions(refused)
    with sqlite3.connect(library.db) as conn:
        conn.execute("DROP TRIGGER refuse")
    wait_for(lambda: _ok_with_one_prediction(library, refused), 90,
             "the refused file, once the catalogue takes it")
    assert daemon.output().count("the catalogue refused to record") == 1
    daemon.wait_log("after all: the catalogue accepts it again")
    assert daemon.terminate()[0] == 0


def test_a_model_that_vanished_keeps_the_daemon_on_the_one_it_has(
    library: Library, daemons: list[Daemon]
) -> None:
    daemon = _start(library, daemons)
    shutil.rmtree(library.store / "tiny-v1")  # e.g. a clean-up script, a full reinstall
    song = make_track(library.music / "after.flac", "Pulse", SECONDS, seed=5)
    wait_for(lambda: _ok_with_one_prediction(library, song), 60, "the next file")
    assert library.predictions(song)[0][0] == "tiny-v1"
    daemon.wait_log("keeping the model in use")
    assert daemon.output().count("keeping the model in use") == 1  # logged once
    assert daemon.alive() and daemon.terminate()[0] == 0


def test_a_watched_folder_deleted_and_recreated_is_watched_again(
    library: Library, daemons: list[Daemon]
) -> None:
    daemon = _start(library, daemons)
    shutil.rmtree(library.music)
    daemon.wait_log("was deleted, renamed or unmounted")
    (library.music / "new").mkdir(parents=True)
    daemon.wait_log("is back: watching it again")
    song = make_track(library.music / "new" / "after.flac", "Chirp", SECONDS, seed=6)
    wait_for(lambda: _ok_with_one_prediction(library, song), 60,
             "a file dropped into the re-created folder")
    assert daemon.terminate()[0] == 0


def test_a_watched_folder_renamed_away_and_back_loses_nothing(
    library: Library, daemons: list[Daemon], tmp_path: Path
) -> None:
    before = make_track(library.music / "before.flac", "Drone", SECONDS, seed=7)
    daemon = _start(library, daemons)
    wait_for(lambda: _ok_with_one_prediction(library, before), 60, "the first file")
    away = tmp_path / "music-away"
    library.music.rename(away)
    daemon.wait_log("was deleted, renamed or unmounted")
    meanwhile = make_track(away / "meanwhile.flac", "Noise", SECONDS, seed=8)
    assert library.status_of(before) == "ok"  # a folder away is not a deleted library
    away.rename(library.music)
    at = daemon.wait_log("is back: watching it again")
    daemon.wait_log("returned folder scan:", after=at)
    song = library.music / meanwhile.name
    wait_for(lambda: _ok_with_one_prediction(library, song), 60,
             "the file added while the folder was away")
    assert library.track(meanwhile) is None  # never catalogued at the path it was away at
    assert len(library.predictions(before)) == 1  # unchanged: not classified again
    assert daemon.terminate()[0] == 0


def test_a_full_music_disk_fails_the_tag_and_the_daemon_goes_on(
    library: Library, daemons: list[Daemon], tmp_path: Path
) -> None:
    """With write_tags on, a tag write needs room for a copy of the file; on a full music
    disk it fails for that file alone (issue 14 item 8, in the daemon)."""
    from storage import tags

    library.env["GENRED_TAG_THRESHOLD"] = "0"  # the tiny model is never confident
    with _small_tmpfs(tmp_path / "music-disk", "2m") as disk:
        library = dataclasses.replace(library, music=disk)
        first = disk / "first.wav"
        first.write_bytes(make_track(tmp_path / "first.wav", "Pulse", 14.0, seed=9)
                          .read_bytes())  # ~620 kB: no room left for its tagged copy
        before = first.read_bytes()
        filler = _fill(disk)
        filler.rename(disk / ".filler")  # a dotfile: never taken for music
        daemon = _start(library, daemons, "--write-tags")
        daemon.wait_log(f"tags not written: {first}: no space left on device")
        wait_for(lambda: _ok_with_one_prediction(library, first), 60, "the first file")
        assert first.read_bytes() == before
        assert sorted(p.name for p in disk.iterdir()) == [".filler", "first.wav"]
        assert daemon.alive()
        (disk / ".filler").unlink()
        second = make_track(disk / "second.flac", "Drone", SECONDS, seed=10)
        wait_for(lambda: library.rows(
            "SELECT count(*) FROM tag_backups WHERE written != '{}'")[0][0], 90,
            "the next file's tag, once there is room")
        assert _ok_with_one_prediction(library, second) and len(tags.read_genres(second)) == 1
        assert daemon.terminate()[0] == 0
