"""The classify-and-record pipeline shared by `genred scan` and the daemon."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from classifier.audio import UnreadableAudio, probe
from classifier.predict import Classifier
from daemon.config import Config
from daemon.walk import gather
from daemon.worker import Worker
from storage import catalogue, corrections
from storage.db import open_catalogue
from storage.schema import ERROR, MISSING, OK
from storage.tagging import TagPolicy
from tests.audiogen import make_track
from tests.storage.modelkit import tiny_bundle

FORMATS = ["wav", "flac", "ogg", "aiff", "mp3", "m4a", "alac.m4a", "opus", "wv"]
ODD_FILES = Path(__file__).parents[2] / ".." / "shared" / "corpus" / "odd-files"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("models") / "tiny-v1")


@pytest.fixture
def classifier(model_dir: Path) -> Classifier:
    return Classifier.load(model_dir, clips_per_track=1)


@pytest.fixture
def engine(catalogue_url: str) -> Iterator[Engine]:
    """A catalogue on each backend (tests/conftest.py)."""
    engine = open_catalogue(catalogue_url)
    yield engine
    engine.dispose()


def worker(engine: Engine, classifier: Classifier, **kw: object) -> Worker:
    return Worker(engine, classifier, Config(workers=1), **kw)  # type: ignore[arg-type]


def test_scan_classifies_every_format_and_records_what_fails(
    engine: Engine, classifier: Classifier, tmp_path: Path
) -> None:
    lib = tmp_path / "lib"
    for i, ext in enumerate(FORMATS):
        make_track(lib / "album" / f"{i}.{ext}", "Pulse", 3.0, seed=i)
    (lib / "bad.mp3").write_text("not music")
    (lib / "empty.flac").write_bytes(b"")
    shutil.copy(lib / "album" / "4.mp3", lib / "track05")  # no extension: found by content
    (lib / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    (lib / "notes").write_text("just text")
    shutil.copy(lib / "album" / "1.flac", lib / ".hidden.flac")
    shutil.copy(lib / "album" / "1.flac", lib / "download.flac.part")

    with worker(engine, classifier) as w:
        summary = w.scan([lib])

    assert summary.line() == "scanned 12: 10 classified, 0 unchanged, 2 errors"
    rows = {Path(t.path).name: t for t in catalogue.tracks_under(engine, lib)}
    assert set(rows) == {*(f"{i}.{e}" for i, e in enumerate(FORMATS)), "bad.mp3",
                         "empty.flac", "track05"}
    assert rows["bad.mp3"].status == ERROR and rows["bad.mp3"].error
    assert "\n" not in (rows["empty.flac"].error or "\n")
    assert all(rows[f"{i}.{e}"].status == OK and rows[f"{i}.{e}"].genre in classifier.labels
               for i, e in enumerate(FORMATS))
    assert catalogue.active_model(engine) == classifier.version


def test_rescan_skips_unchanged_files_until_the_model_changes(
    engine: Engine, classifier: Classifier, model_dir: Path, tmp_path: Path
) -> None:
    lib = tmp_path / "lib"
    make_track(lib / "a.flac", "Drone", 3.0)
    make_track(lib / "b.ogg", "Chirp", 3.0)
    with worker(engine, classifier) as w:
        assert w.scan([lib]).classified == 2
        assert w.scan([lib]).line() == "scanned 2: 0 classified, 2 unchanged, 0 errors"
    make_track(lib / "b.ogg", "Noise", 4.0)  # the file changed
    with worker(engine, classifier) as w:
        assert (w.scan([lib]).classified, w.scan([lib]).classified) == (1, 0)
    newer = Classifier.load(tiny_bundle(tmp_path / "v2", version="tiny-v2", seed=1),
                            clips_per_track=1)
    with worker(engine, newer) as w:
        assert w.scan([lib]).classified == 2
    info = catalogue.get_track(engine, lib / "a.flac")
    assert info is not None and info.model == "tiny-v2"


def test_a_moved_file_keeps_its_correction_and_a_deleted_one_goes_missing(
    engine: Engine, classifier: Classifier, tmp_path: Path
) -> None:
    lib = tmp_path / "lib"
    make_track(lib / "a.mp3", "Drone", 3.0, seed=1)
    make_track(lib / "b.flac", "Pulse", 3.0, seed=2)
    with worker(engine, classifier) as w:
        w.scan([lib])
    corrections.add_label(engine, lib / "a.mp3", "Jazz")
    (lib / "renamed").mkdir()
    (lib / "a.mp3").rename(lib / "renamed" / "a (1).mp3")
    (lib / "b.flac").unlink()

    with worker(engine, classifier) as w:
        summary = w.scan([lib])

    assert (summary.moved, summary.missing) == (1, 1)
    assert catalogue.get_track(engine, lib / "a.mp3") is None
    assert corrections.corrected_genre(engine, lib / "renamed" / "a (1).mp3") == "Jazz"
    gone = catalogue.get_track(engine, lib / "b.flac")
    assert gone is not None and gone.status == MISSING


def test_process_pending_classifies_a_corrected_file_not_scanned_yet(
    engine: Engine, classifier: Classifier, tmp_path: Path
) -> None:
    song = make_track(tmp_path / "a.wv", "Noise", 3.0)
    corrections.add_label(engine, song, "Blues")
    with worker(engine, classifier) as w:
        assert w.process_pending().classified == 1
    info = catalogue.get_track(engine, song)
    assert info is not None and info.status == OK
    assert corrections.corrected_genre(engine, song) == "Blues"
    assert catalogue.pending_paths(engine) == []


def test_decoding_in_worker_processes_gives_the_same_answers(
    engine: Engine, classifier: Classifier, tmp_path: Path
) -> None:
    songs = [make_track(tmp_path / f"{i}.flac", style, 3.0, seed=i)
             for i, style in enumerate(["Drone", "Pulse", "Chirp", "Noise"])]
    (tmp_path / "bad.mp3").write_text("not music")
    import os

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with Worker(engine, classifier, Config(workers=2)) as w:
            w.pool_min_files = 0
            summary = w.process([*songs, tmp_path / "bad.mp3"])
        # the decoders hold the cores: inference here on one thread (unless told otherwise)
        if not os.environ.get("GENRED_TORCH_THREADS"):
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert (summary.classified, summary.errors) == (4, 1)
    for song in songs:
        info = catalogue.get_track(engine, song)
        assert info is not None and info.genre == classifier.classify(song).genre


def test_scan_with_tag_writing_writes_confident_genres(
    engine: Engine, classifier: Classifier, tmp_path: Path
) -> None:
    from storage import tags

    song = make_track(tmp_path / "lib" / "a.mp3", "Drone", 3.0)
    seen = []
    with worker(engine, classifier, tag_policy=TagPolicy(threshold=0.0),
                on_tag=seen.append) as w:
        summary = w.scan([tmp_path / "lib"])
    assert summary.tags == {"written": 1}
    assert [o.action for o in seen] == ["written"]
    info = catalogue.get_track(engine, song)
    assert info is not None and tags.read_genres(song) == [info.genre]
    with worker(engine, classifier) as w:  # our own write is not a change
        assert w.scan([tmp_path / "lib"]).unchanged == 1


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.corpus
@pytest.mark.skipif(not ODD_FILES.is_dir(), reason=f"{ODD_FILES} is absent")
def test_odd_files_with_tag_writing_on_leave_undecodable_files_byte_for_byte_unchanged(
    engine: Engine, classifier: Classifier, tmp_path: Path
) -> None:
    lib = tmp_path / "odd"
    shutil.copytree(ODD_FILES, lib)
    for f in lib.iterdir():
        f.chmod(0o644)
    before = {f.name: md5(f) for f in lib.iterdir()}

    with worker(engine, classifier,
                tag_policy=TagPolicy(threshold=0.0, overwrite_existing=True)) as w:
        summary = w.scan([lib])

    rows = {Path(t.path).name: t for t in catalogue.tracks_under(engine, lib)}
    assert summary.scanned == len(rows) >= len(before) - 2  # README.md, the empty non-audio
    assert summary.classified + summary.errors == summary.scanned
    for name, track in rows.items():
        if track.status == ERROR:
            assert track.error and "\n" not in track.error
            assert md5(lib / name) == before[name], f"{name} could not be read but changed"
        else:
            assert track.status == OK
            try:
                probe(lib / name)  # a file genred tagged still decodes
            except UnreadableAudio as e:
                pytest.fail(f"{name} no longer decodes after the tag write: {e}")
    assert sorted(p.name for p in lib.iterdir()) == sorted(before)  # no temp files left


def test_gather_finds_audio_by_extension_and_content(tmp_path: Path) -> None:
    import av
    import numpy as np

    make_track(tmp_path / "a" / "x.FLAC", "Drone", 1.0)
    shutil.copy(tmp_path / "a" / "x.FLAC", tmp_path / "a" / "y.bin")
    with av.open(str(tmp_path / "a" / "raw-aac"), "w", format="adts") as out:
        stream = out.add_stream("aac", rate=22050)  # no tags at all: only FFmpeg knows it
        stream.layout = "mono"
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = 22050, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
    (tmp_path / "a" / "z.txt").write_text("hello")
    (tmp_path / "a" / "notes").write_text("no extension, not audio")
    (tmp_path / "@eaDir").mkdir()
    shutil.copy(tmp_path / "a" / "x.FLAC", tmp_path / "@eaDir" / "thumb.flac")
    assert [p.name for p in gather([tmp_path])] == ["raw-aac", "x.FLAC", "y.bin"]


def test_a_file_name_that_is_not_utf8_is_classified_and_stored_losslessly(
    engine: Engine, classifier: Classifier, tmp_path: Path
) -> None:
    good = make_track(tmp_path / "lib" / "good.flac", "Drone", 3.0)
    bad = Path(os.fsdecode(bytes(tmp_path / "lib") + b"/\xff\xfe.flac"))
    shutil.copy(good, bad)
    with worker(engine, classifier) as w:
        assert w.scan([tmp_path / "lib"]).classified == 2
    paths = [t.path for t in catalogue.tracks_under(engine, tmp_path)]
    assert sorted(paths) == sorted([str(good), str(bad)])
    assert os.fsencode(next(p for p in paths if p != str(good))) == bytes(bad)
    assert catalogue.get_track(engine, bad).status == "ok"  # type: ignore[union-attr]


def test_a_decode_process_that_dies_costs_no_file(
    engine: Engine, classifier: Classifier, tmp_path: Path
) -> None:
    import threading

    songs = [make_track(tmp_path / f"{i}.ogg", "Chirp", 3.0, seed=i) for i in range(6)]
    killed: list[int] = []

    def kill_a_decoder(w: Worker) -> None:  # as the OOM killer would
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pool = w._pool
            pids = list(getattr(pool, "_processes", None) or {})
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            time.sleep(0.01)

    with Worker(engine, classifier, Config(workers=2)) as w:
        w.pool_min_files = 0
        killer = threading.Thread(target=kill_a_decoder, args=(w,))
        killer.start()
        summary = w.process(songs)
        killer.join()

    assert killed, "no decode process was started"
    assert summary.retried >= 1 and "retried after a decoder crash" in summary.line()
    assert (summary.classified, summary.errors) == (6, 0)


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _forkserver_pid() -> int | None:
    from multiprocessing import forkserver

    return forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]


def test_a_sigterm_to_the_process_group_does_not_break_the_decode_pool(
    engine: Engine, classifier: Classifier, tmp_path: Path
) -> None:
    # systemd (KillMode=control-group) or `kill -TERM -PGID` signals every process of the
    # daemon, the decode pool's server among them; the daemon then finishes or requeues its
    # work, and its decode processes must still be there to do it.
    songs = [make_track(tmp_path / f"{i}.ogg", "Chirp", 3.0, seed=i) for i in range(8)]
    with Worker(engine, classifier, Config(workers=2)) as w:
        w.pool_min_files = 0
        assert w.process(songs[:4]).classified == 4  # the pool and its server are up
        server = _forkserver_pid()
        assert server is not None
        # Ignored signals are discarded when sent, so this is settled once kill() returns:
        # no "wait a bit and see that it is still alive" needed.
        status = Path(f"/proc/{server}/status").read_text()
        ignored = int(next(line for line in status.splitlines()
                           if line.startswith("SigIgn:")).split()[1], 16)
        assert ignored & (1 << (signal.SIGTERM - 1)), "the pool's server would die of SIGTERM"
        os.kill(server, signal.SIGTERM)
        assert _alive(server), "the pool's server died of SIGTERM"
        summary = w.process(songs[4:])
    assert (summary.classified, summary.errors, summary.retried) == (4, 0, 0)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # this process is untouched


def _worker_script(tmp_path: Path, model_dir: Path, n_files: int, body: str) -> str:
    """A script (for a subprocess) that makes ``w``, a Worker with a 2-process decode pool
    over ``n_files`` generated tracks in tmp_path/lib (as ``files``), then runs ``body``."""
    for i in range(n_files):
        make_track(tmp_path / "lib" / f"{i}.ogg", "Chirp", 3.0, seed=i)
    prelude = f"""
import os, signal, sys, threading, time
from multiprocessing import forkserver
from classifier.predict import Classifier
from daemon.config import Config
from daemon.walk import gather
from daemon.worker import Worker
from storage.db import open_catalogue
if __name__ == "__main__":
    engine = open_catalogue({f"sqlite:///{tmp_path / 'c.db'}"!r})
    w = Worker(engine, Classifier.load({str(model_dir)!r}, clips_per_track=1),
               Config(workers=2))
    w.pool_min_files = 0
    files = list(gather([{str(tmp_path / "lib")!r}]))
"""
    return prelude + "".join(f"    {line}\n" for line in body.strip("\n").splitlines())


def test_decode_processes_do_not_outlive_a_killed_owner(tmp_path: Path, model_dir: Path) -> None:
    # kill -9 (or the OOM killer) ends the scan or daemon at once; its decode pool must
    # not linger, waiting for work that will never come.
    import subprocess
    import sys

    script = _worker_script(tmp_path, model_dir, 4, """
w.process(files)
pids = list(w._pool._processes) + [forkserver._forkserver._forkserver_pid]
print(*pids, flush=True)
time.sleep(120)
""")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parents[2])
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 3 and all(_alive(p) for p in pids), pids
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], "decode processes outlived their owner"


def test_a_process_that_lost_a_decode_process_can_still_exit(
    tmp_path: Path, model_dir: Path
) -> None:
    # A survivor of a broken pool can be stuck on a half-read message and ignores SIGTERM;
    # unless genred kills it, the interpreter's exit waits for it forever. The kill lands
    # mid-read only sometimes, so this catches the hang when the race hits (as the suite's
    # exit did once).
    import subprocess
    import sys

    script = _worker_script(tmp_path, model_dir, 8, """
def kill_one_of_two():
    while len(getattr(w._pool, "_processes", None) or {}) < 2:
        time.sleep(0.005)
    os.kill(next(iter(w._pool._processes)), signal.SIGKILL)
threading.Thread(target=kill_one_of_two, daemon=True).start()
print(w.process(files).line(), flush=True)
w.close()
""")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).parents[2], check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "8 classified" in proc.stdout
