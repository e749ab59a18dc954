"""`genred run` end to end: real processes, a real watchdog observer on temp folders, a
real SQLite catalogue, real audio. Short tracks and one clip per track keep it quick."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.audiogen import STYLES, make_track, synth, write_audio
from tests.daemon.daemon_helpers import Daemon, Library, wait_for

pytestmark = pytest.mark.slow

SECONDS = 35.0


def _start(library: Library, daemons: list[Daemon], *extra: str, settle: float = 1.0,
           new_session: bool = False) -> Daemon:
    daemon = Daemon(library, *extra, settle=settle, new_session=new_session)
    daemons.append(daemon)
    return daemon.ready()


def _after_a_later_file(library: Library, name: str, seed: int) -> None:
    """Drop a new file and wait until it is classified. Events are handled in order and
    every file settles for the same time, so by then the daemon has acted on everything
    that happened before: the positive marker that replaces "sleep, then check nothing
    happened" (which fails on a busy machine, or passes when the daemon is just slow)."""
    marker = make_track(library.music / "zz-markers" / name, "Noise", 8.0, seed=seed)
    wait_for(lambda: library.status_of(marker) == "ok", 90, f"the marker file {name}")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_dropped_file_is_catalogued(library: Library, daemons: list[Daemon]) -> None:
    library.env["WATCHDOG_USEC"] = "2000000"  # as systemd sets it for WatchdogSec=2
    daemon = _start(library, daemons)
    ready = daemon.wait_message("READY=1")
    assert "STATUS=" in ready and "model tiny-v1" in ready
    daemon.wait_message("WATCHDOG=1", timeout=5)
    song = make_track(library.music / "Artist" / "dropped.flac", "Pulse", SECONDS, seed=1)
    wait_for(lambda: library.status_of(song) == "ok", 60, "the dropped file to be classified")
    assert [p[2] for p in library.predictions(song)] == [1]
    assert library.predictions(song)[0][0] == "tiny-v1"
    status = json.loads(library.genred("status", "--format", "json").stdout)
    assert status["daemon"]["running"] and status["daemon"]["pid"] == daemon.proc.pid
    assert status["queue"] == 0 and status["active_model"]["version"] == "tiny-v1"
    assert status["next_retrain"] and status["last_scan"]
    second = library.genred("run", "--watch", str(library.music), timeout=60)
    assert second.returncode == 1 and f"pid {daemon.proc.pid}" in second.stderr
    before = _cpu_seconds(daemon.proc.pid)
    time.sleep(4.0)
    assert _cpu_seconds(daemon.proc.pid) - before < 0.1  # idle: blocked but for queue looks
    code, _ = daemon.terminate()
    assert code == 0
    status = json.loads(library.genred("status", "--format", "json").stdout)
    assert status["daemon"]["running"] is False


def test_slow_copy_is_classified_once_after_it_completes(
    library: Library, daemons: list[Daemon], tmp_path: Path
) -> None:
    _start(library, daemons, settle=6.0)  # far above the 0.2 s gaps, even on a busy machine
    source = write_audio(tmp_path / "source.wav", synth("Chirp", SECONDS, seed=3))
    data = source.read_bytes()
    target = library.music / "slow.wav"
    chunks = 8
    with target.open("wb") as out:  # a copy written in chunks, pausing between them
        for i in range(chunks):
            out.write(data[i * len(data) // chunks:(i + 1) * len(data) // chunks])
            out.flush()
            time.sleep(0.2)
            assert library.track(target) is None, "the daemon touched a file mid-copy"
    wait_for(lambda: library.status_of(target) == "ok", 60, "the copied file")
    track = library.track(target)
    assert track is not None and track[2] == len(data)  # the whole file was read
    _after_a_later_file(library, "after-copy.wav", seed=903)
    assert len(library.predictions(target)) == 1  # no second classification


def test_move_keeps_the_correction_and_delete_marks_missing(
    library: Library, daemons: list[Daemon]
) -> None:
    from storage.corrections import add_label, history
    from storage.db import open_catalogue

    _start(library, daemons)
    song = make_track(library.music / "in" / "song.ogg", "Drone", SECONDS, seed=4)
    wait_for(lambda: library.status_of(song) == "ok", 60, "the new file")
    engine = open_catalogue(f"sqlite:///{library.db}")
    add_label(engine, song, "Polka")

    renamed = song.with_name("renamed.ogg")  # a rename inside a watched folder
    os.rename(song, renamed)
    wait_for(lambda: library.track(renamed) is not None, 30, "the track to follow the rename")
    assert library.track(song) is None
    assert history(engine, renamed) == [("Polka", "user", True)]
    _after_a_later_file(library, "after-rename.wav", seed=904)
    assert len(library.predictions(renamed)) == 1  # same bytes: not reclassified
    assert library.status_of(renamed) == "ok"

    # Into a folder made a moment before: inotify reports it as a delete plus a new file
    # (the new folder is not watched yet); the audio fingerprint matches them up.
    moved = library.music / "sorted" / "Polka" / "moved.ogg"
    moved.parent.mkdir(parents=True)
    os.rename(renamed, moved)
    wait_for(lambda: library.track(renamed) is None and library.status_of(moved) == "ok", 60,
             "the moved track to be matched by fingerprint")
    assert history(engine, moved) == [("Polka", "user", True)]
    assert library.rows("SELECT count(*) FROM tracks WHERE path NOT LIKE '%zz-markers%'")[
        0][0] == 1

    kept = library.root / "restore-me.ogg"
    shutil.copy2(moved, kept)
    moved.unlink()
    wait_for(lambda: library.status_of(moved) == "missing", 30, "the delete to be seen")
    predictions = library.predictions(moved)  # history kept while missing
    assert predictions and [p[2] for p in predictions].count(1) == 1
    assert history(engine, moved) == [("Polka", "user", True)]

    back = library.music / "restored.ogg"  # the same audio reappears elsewhere
    shutil.copy2(kept, back)
    wait_for(lambda: library.status_of(back) == "ok" and library.track(moved) is None, 60,
             "the reappeared file to be matched back")
    assert history(engine, back) == [("Polka", "user", True)]
    assert library.rows("SELECT count(*) FROM tracks WHERE path NOT LIKE '%zz-markers%'")[
        0][0] == 1
    engine.dispose()


def test_work_queued_by_another_command_is_classified_within_seconds(
    library: Library, daemons: list[Daemon], tmp_path: Path
) -> None:
    # Outside the watched folder: no file event will wake the daemon, only the queue.
    song = make_track(tmp_path / "elsewhere" / "never-scanned.flac", "Chirp", SECONDS, seed=11)
    daemon = _start(library, daemons, settle=0.5)
    wait_for(lambda: library.rows("SELECT value FROM state WHERE key = 'last_scan'"), 30,
             "the start-up scan")
    assert library.genred("correct", str(song), "Jazz").returncode == 0
    # Queued by `correct` (the daemon may already have taken it: no state is assumed to
    # last). Without the queue poll nothing would wake the daemon before its heartbeat
    # (300 s) or the rescan (6 h): 60 s is generous for a busy machine and still proves it.
    assert library.status_of(song) in ("pending", "ok")
    wait_for(lambda: library.status_of(song) == "ok", 60,
             "the daemon to classify a track another process queued")
    assert [p[0] for p in library.predictions(song)] == ["tiny-v1"]
    listed = json.loads(library.genred("query", "--corrected", "--format", "json").stdout)
    assert [(r["path"], r["genre"]) for r in listed] == [(str(song), "Jazz")]
    assert daemon.terminate()[0] == 0


def test_kill9_mid_backlog_then_restart_processes_each_file_once(
    library: Library, daemons: list[Daemon]
) -> None:
    files = [make_track(library.music / f"{i // 10}" / f"t{i:02}.wav", STYLES[i % 4], SECONDS,
                        seed=i) for i in range(40)]
    # The killed daemon's claims are taken over once their lease runs out: a short lease
    # (as in test_shared_queue.py) instead of the default 60 s the restart would sit out.
    # A lease that ran out under a worker still busy on its track cannot record it twice:
    # a result is recorded only while the track is pending and still that worker's.
    library.env["GENRED_LEASE_SECONDS"] = "4"
    daemon = _start(library, daemons)
    done = lambda: library.rows("SELECT count(*) FROM tracks WHERE status = 'ok'")[0][0]  # noqa: E731
    wait_for(lambda: done() >= 4, 60, "part of the backlog")
    daemon.kill9()
    assert done() < 40, "the backlog finished before the kill; the test proves nothing"
    _start(library, daemons)
    wait_for(lambda: done() == 40, 120, "the whole backlog after the restart")
    assert library.rows("SELECT count(*) FROM tracks")[0][0] == 40
    for path in files:
        predictions = library.predictions(path)
        assert [p[2] for p in predictions] == [1], f"{path}: {predictions}"


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the decode pool sits under a forkserver child)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return kids


def _tree_cpu_seconds(pid: int) -> tuple[float, float]:
    """(CPU seconds of ``pid`` itself, of all its descendants still running)."""
    helpers = 0.0
    for child in _descendants(pid):
        try:
            helpers += _cpu_seconds(child)
        except OSError:  # ended meanwhile
            continue
    return _cpu_seconds(pid), helpers


def _ok_count(library: Library) -> int:
    return int(library.rows("SELECT count(*) FROM tracks WHERE status = 'ok'")[0][0])


def test_a_backlog_is_decoded_in_parallel_and_the_idle_daemon_stays_idle(
    library: Library, daemons: list[Daemon]
) -> None:
    for i in range(8):
        make_track(library.music / f"p{i:02}.wav", STYLES[i % 4], SECONDS, seed=200 + i)
    daemon = _start(library, daemons)  # --workers 2
    wait_for(lambda: _ok_count(library) == 8, 90, "the backlog")
    # The pool stays up for the next batch: its decode processes sit under the forkserver
    # (grandchildren of the daemon), and both must have done real work.
    direct = set(_children(daemon.proc.pid))
    decoders = [pid for pid in _descendants(daemon.proc.pid) if pid not in direct]
    busy = [pid for pid in decoders if _cpu_seconds(pid) >= 0.05]
    assert len(busy) >= 2, f"decode processes {decoders}: {len(busy)} did any work"
    def quiet_second() -> bool:  # the last batch's bookkeeping is over (however slow)
        before = sum(_tree_cpu_seconds(daemon.proc.pid))
        time.sleep(1.0)
        return sum(_tree_cpu_seconds(daemon.proc.pid)) - before < 0.05

    wait_for(quiet_second, 60, "the daemon to go idle after the backlog")
    before = sum(_tree_cpu_seconds(daemon.proc.pid))
    time.sleep(3.0)  # a measurement window, not a wait: idle means (almost) no CPU in it
    assert sum(_tree_cpu_seconds(daemon.proc.pid)) - before < 0.15  # pool idle: blocked
    assert daemon.terminate()[0] == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_whole_process_group_mid_backlog_loses_nothing(
    library: Library, daemons: list[Daemon], signum: signal.Signals
) -> None:
    n = 32  # decoding is fast: enough files that the signal lands mid-backlog
    for i in range(n):
        make_track(library.music / f"g{i:02}.wav", STYLES[i % 4], SECONDS, seed=300 + i)
    daemon = _start(library, daemons, new_session=True)  # Ctrl-C / systemd: every process
    wait_for(lambda: _ok_count(library) >= 1, 60, "the first classified file")
    start = time.monotonic()
    os.killpg(daemon.proc.pid, signum)
    code = daemon.proc.wait(timeout=15)
    took = time.monotonic() - start
    assert code == 0, daemon.output()
    assert took < 5, f"{signum.name} took {took:.1f} s"
    assert "crashed" not in daemon.output()
    statuses = {s for (s,) in library.rows("SELECT status FROM tracks")}
    assert statuses <= {"ok", "pending"}, library.rows("SELECT path, error FROM tracks")
    assert _ok_count(library) < n, "the backlog finished before the signal; proves nothing"


def test_sigterm_mid_backlog_exits_zero_quickly_and_loses_nothing(
    library: Library, daemons: list[Daemon]
) -> None:
    for i in range(12):
        make_track(library.music / f"b{i:02}.wav", STYLES[i % 4], SECONDS, seed=100 + i)
    daemon = _start(library, daemons)
    wait_for(lambda: library.rows("SELECT count(*) FROM tracks WHERE status = 'ok'")[0][0],
             60, "the first classified file")
    code, took = daemon.terminate()
    assert code == 0, daemon.output()
    assert took < 5, f"SIGTERM took {took:.1f} s"
    statuses = {s for (s,) in library.rows("SELECT status FROM tracks")}
    assert statuses <= {"ok", "pending"}  # in-flight work finished or left queued


def test_own_tag_writes_do_not_trigger_reclassification(
    library: Library, daemons: list[Daemon]
) -> None:
    library.env["GENRED_TAG_THRESHOLD"] = "0"  # the tiny model is never confident
    _start(library, daemons, "--write-tags", settle=1.0)
    song = make_track(library.music / "tagme.flac", "Noise", SECONDS, seed=7)
    wait_for(lambda: library.status_of(song) == "ok", 60, "the file to be classified")
    wait_for(lambda: library.rows("SELECT count(*) FROM tag_backups WHERE written != '{}'")[
        0][0], 20, "the genre tag to be written")  # the backup row is made before the write
    size_after_write = song.stat().st_size
    _after_a_later_file(library, "after-tag-write.wav", seed=905)  # our events are handled
    assert len(library.predictions(song)) == 1
    assert library.track(song)[2] == size_after_write  # type: ignore[index]


def test_activating_another_model_reclassifies_uncorrected_tracks(
    library: Library, daemons: list[Daemon]
) -> None:
    from tests.storage.modelkit import tiny_bundle

    tiny_bundle(library.store / "tiny-v2", version="tiny-v2", seed=5)
    songs = [make_track(library.music / f"s{i}.flac", STYLES[i], SECONDS, seed=30 + i)
             for i in range(3)]
    daemon = _start(library, daemons)
    wait_for(lambda: all(library.status_of(s) == "ok" for s in songs), 60, "the first pass")
    assert library.genred("correct", str(songs[0]), "Polka", "--new-genre").returncode == 0
    result = library.genred("models", "activate", "tiny-v2")
    assert result.returncode == 0, result.stderr
    assert "2 track(s) queued" in result.stdout  # the corrected one is left alone

    def current_models() -> list[str]:
        return [next(p[0] for p in library.predictions(s) if p[2]) for s in songs]

    wait_for(lambda: current_models()[1:] == ["tiny-v2", "tiny-v2"], 60,
             "the daemon to reclassify with the new model")
    assert current_models()[0] == "tiny-v1"
    assert [len(library.predictions(s)) for s in songs] == [1, 2, 2]  # history kept
    assert daemon.terminate()[0] == 0


def _make_retrain_overdue(library: Library) -> None:
    """A job store whose retrain fell due two days ago (the machine was off at 03:00)."""
    import sqlite3
    from datetime import UTC, datetime, timedelta

    from daemon import scheduler
    from storage.db import open_catalogue

    url = f"sqlite:///{library.db}"
    open_catalogue(url).dispose()
    scheduler.start_scheduler(url, "0 3 * * *").shutdown()
    past = datetime.now(UTC) - timedelta(days=2)
    state = json.loads(library.rows("SELECT job_state FROM apscheduler_jobs")[0][0])
    state["next_run_time"] = past.isoformat()
    with sqlite3.connect(library.db) as conn:
        conn.execute("UPDATE apscheduler_jobs SET next_run_time = ?, job_state = ?",
                     (past.timestamp(), json.dumps(state).encode()))


def test_retrain_missed_while_down_is_caught_up_once_at_start(
    library: Library, daemons: list[Daemon]
) -> None:
    from datetime import UTC, datetime

    _make_retrain_overdue(library)
    daemon = _start(library, daemons)
    wait_for(lambda: library.rows("SELECT 1 FROM training_runs WHERE decision != 'running'"),
             60, "the missed retrain")

    def next_retrain() -> datetime:
        status = json.loads(library.genred("status", "--format", "json").stdout)
        return datetime.fromisoformat(status["next_retrain"])

    # Once the stored next run is in the future, the missed nights have been handled.
    wait_for(lambda: next_retrain() > datetime.now(UTC), 60, "the next run to move on")
    assert library.rows("SELECT trigger, decision FROM training_runs") == [
        ("schedule", "skipped")]  # once, and skipped: nobody corrected anything
    assert daemon.terminate()[0] == 0


def test_sigterm_during_a_retrain_exits_quickly_and_records_it(
    library: Library, daemons: list[Daemon]
) -> None:
    from classifier.predict import Classifier
    from classifier.store import ModelStore
    from daemon.config import Config
    from daemon.worker import Worker
    from storage.corrections import add_label
    from storage.db import open_catalogue

    for k, style in enumerate(STYLES):
        for i in range(6):
            make_track(library.music / style / f"{i}.wav", style, 8.0, seed=10 * k + i)
    cfg = Config(db=f"sqlite:///{library.db}", model_store=str(library.store), workers=1,
                 clips_per_track=1)
    engine = open_catalogue(cfg.db_url)
    with Worker(engine, Classifier.load(None, ModelStore(library.store), 1), cfg) as worker:
        worker.scan([library.music])
    for style in STYLES:
        for i in range(6):
            add_label(engine, library.music / style / f"{i}.wav", style)
    engine.dispose()
    _make_retrain_overdue(library)
    library.env["GENRED_RETRAIN_EPOCHS"] = "200"
    daemon = _start(library, daemons)
    wait_for(lambda: library.rows("SELECT 1 FROM training_runs WHERE decision = 'running'"),
             30, "the retrain to start")
    code, took = daemon.terminate()
    assert code == 0 and took < 8, (took, daemon.output())
    decision, reason = library.rows("SELECT decision, reason FROM training_runs")[0]
    assert decision == "failed" and "interrupted" in reason
    assert (library.store / "ACTIVE").read_text().strip() == "tiny-v1"


def test_a_copy_cut_short_is_recorded_incomplete_and_classified_once_whole(
    library: Library, daemons: list[Daemon], tmp_path: Path
) -> None:
    """A file whose audio stops well before what its header says (a copy that stalled, then
    was closed; a download cut short) is not classified from its part: it is recorded with
    the reason, and classified when the rest arrives (issue 14)."""
    _start(library, daemons)
    whole = write_audio(tmp_path / "whole.wav", synth("Chirp", SECONDS, seed=5)).read_bytes()
    target = library.music / "stalled.wav"
    target.write_bytes(whole[: len(whole) // 2])
    wait_for(lambda: library.status_of(target) == "error", 90, "the cut copy to be recorded")
    (error,) = library.rows("SELECT error FROM tracks WHERE status = 'error'")[0]
    assert "incomplete" in error and "header" in error
    assert library.predictions(target) == []
    with target.open("ab") as out:  # the copy resumes and completes
        out.write(whole[len(whole) // 2:])
    wait_for(lambda: library.status_of(target) == "ok", 90, "the completed copy")
    assert len(library.predictions(target)) == 1
