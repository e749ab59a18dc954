"""Several `genred worker` processes sharing one PostgreSQL catalogue's queue: real
processes, a real server (a database per test), real audio, kill -9."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from storage import catalogue
from storage.db import open_catalogue
from tests.audiogen import STYLES, make_track
from tests.daemon.daemon_helpers import GENRED, Library, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


class Workers:
    """`genred worker` subprocesses on one catalogue, logs in tmp_path."""

    def __init__(self, library: Library, url: str, lease: float, name: str = "worker") -> None:
        self.library, self.url, self.name = library, url, name
        self.env = {**library.env, "GENRED_LEASE_SECONDS": str(lease)}
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.library.root / f"{self.name}-{len(self.procs)}.log").open("w")
        proc = subprocess.Popen(
            [str(GENRED), "--db", self.url, "worker", "--workers", "1",
             "--clips-per-track", "1", *extra],
            env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(p.read_text()
                         for p in sorted(self.library.root.glob(f"{self.name}-*.log")))

    def stop_all(self) -> list[int]:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        return [proc.wait(timeout=60) for proc in self.procs]

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


class Proxy:
    """A TCP relay to the PostgreSQL server, standing in for the network between a worker
    host and the catalogue: ``cut()`` drops every connection and refuses new ones,
    ``restore()`` lets them through again (on the same port)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._open: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def url(self, url: str) -> str:
        return url.replace(f"{self.target[0]}:{self.target[1]}", f"127.0.0.1:{self.port}")

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port, self._listener = listener.getsockname()[1], listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            server = socket.create_connection(self.target)
            self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self._listener is not None:  # shut down first: that wakes the accept() and
            with contextlib.suppress(OSError):  # stops listening (close alone does not)
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._open = []


@pytest.fixture
def engine(postgres_catalogue_url: str) -> Iterator[Engine]:
    engine = open_catalogue(postgres_catalogue_url)
    yield engine
    engine.dispose()


@pytest.fixture
def workers(library: Library, postgres_catalogue_url: str) -> Iterator[Workers]:
    started = Workers(library, postgres_catalogue_url, lease=4.0)
    yield started
    started.cleanup()


def _rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def _queue_files(library: Library, engine: Engine, n: int, seconds: float = 20.0) -> list[Path]:
    files = []
    for i in range(n):
        path = make_track(library.music / f"{i:02}.flac", STYLES[i % len(STYLES)], seconds,
                          seed=i)
        size, mtime = catalogue.file_stat(path)
        catalogue.mark_pending(engine, path, size, mtime)
        files.append(path)
    return files


def _activate(library: Library, url: str, version: str) -> None:
    done = subprocess.run([str(GENRED), "--db", url, "models", "activate", version],
                          env=library.env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr


def _held_by(engine: Engine, pid: int) -> list[str]:
    return [r[0] for r in _rows(
        engine, "SELECT t.path FROM tracks t JOIN workers w ON w.id = t.claimed_by "
        "WHERE w.pid = :pid AND t.status = 'pending'", pid=pid)]


def test_three_workers_drain_the_queue_once_each_even_when_one_is_killed(
        library: Library, engine: Engine, workers: Workers, postgres_catalogue_url: str,
) -> None:
    _activate(library, postgres_catalogue_url, "tiny-v1")
    files = _queue_files(library, engine, 60)
    victim = workers.start()
    wait_for(lambda: _held_by(engine, victim.pid), 120, "the first worker to claim a file")
    victim.send_signal(signal.SIGKILL)  # mid-file: it holds claims it never finishes
    victim.wait(timeout=30)
    orphaned = _held_by(engine, victim.pid)
    assert orphaned, "the killed worker held no claim (it finished its batch first)"
    workers.start()
    workers.start()

    def all_recorded() -> bool:
        return _rows(engine, "SELECT count(*) FROM tracks WHERE status = 'ok'")[0][0] == 60

    wait_for(all_recorded, 600, "60 files recorded", every=0.5)
    per_track = _rows(engine, "SELECT t.path, count(p.id), sum(CASE WHEN p.current THEN 1 "
                      "ELSE 0 END) FROM tracks t JOIN predictions p ON p.track_id = t.id "
                      "GROUP BY t.path")
    assert sorted(r[0] for r in per_track) == sorted(str(f) for f in files)
    assert {(r[1], r[2]) for r in per_track} == {(1, 1)}  # recorded exactly once each
    done = dict(_rows(engine, "SELECT pid, tracks_done FROM workers"))
    assert sum(done.values()) == 60
    assert set(orphaned) <= {r[0] for r in per_track}  # finished by the others
    # ... and only once its lease had run out: each was recorded later than the killed
    # worker's last heartbeat plus the lease (database times, not the test's clock).
    early = _rows(engine, "SELECT t.path FROM predictions p JOIN tracks t ON t.id = p.track_id "
                  "WHERE t.path = ANY(:paths) AND p.created_at < (SELECT heartbeat_at FROM "
                  "workers WHERE pid = :pid) + make_interval(secs => :lease)",
                  paths=orphaned, pid=victim.pid,
                  lease=float(workers.env["GENRED_LEASE_SECONDS"]))
    assert early == []
    assert _rows(engine, "SELECT count(*) FROM tracks WHERE claimed_by IS NOT NULL")[0][0] == 0
    assert workers.stop_all()[1:] == [0, 0]
    # With the workers' lease: its track was taken over only after its lease ran out, so
    # its last heartbeat is older than the lease by now, however fast the others were.
    status = subprocess.run([str(GENRED), "--db", postgres_catalogue_url, "status"],
                            env=workers.env, capture_output=True, text=True, timeout=120,
                            check=True).stdout
    assert f" {victim.pid} " in status and "lost" in status  # killed: listed, no heartbeat


def test_a_worker_cut_off_from_the_network_loses_its_tracks_and_records_none_twice(
        library: Library, engine: Engine, workers: Workers, postgres_catalogue_url: str,
) -> None:
    from urllib.parse import urlsplit

    url = postgres_catalogue_url
    _activate(library, url, "tiny-v1")
    files = _queue_files(library, engine, 8)
    where = urlsplit(url)
    proxy = Proxy((str(where.hostname), int(where.port or 5432)))
    remote = Workers(library, proxy.url(url), lease=4.0, name="remote")
    try:
        far = remote.start()
        wait_for(lambda: _held_by(engine, far.pid), 120, "the remote worker to claim a file")
        proxy.cut()  # mid-file: it holds claims it cannot renew or finish
        orphaned = _held_by(engine, far.pid)
        assert orphaned, "the remote worker held no claim (it finished its batch first)"
        workers.start()  # a worker with its network intact takes them once the lease is out
        wait_for(lambda: _rows(engine, "SELECT count(*) FROM tracks WHERE status = 'ok'")
                 == [(len(files),)], 600, f"every file recorded:\n{workers.logs()}")
        assert far.poll() is None  # the cut-off worker waits for its catalogue, alive
        back = _rows(engine, "SELECT now()")[0][0]
        proxy.restore()
        wait_for(lambda: _rows(engine, "SELECT heartbeat_at FROM workers WHERE pid = :pid",
                               pid=far.pid)[0][0] > back, 180,
                 f"the remote worker back on the catalogue:\n{remote.logs()}")
        per_track = _rows(engine, "SELECT t.path, count(p.id), sum(CASE WHEN p.current "
                          "THEN 1 ELSE 0 END) FROM tracks t JOIN predictions p ON "
                          "p.track_id = t.id GROUP BY t.path")
        assert sorted(r[0] for r in per_track) == sorted(str(f) for f in files)
        assert {(r[1], r[2]) for r in per_track} == {(1, 1)}  # none recorded twice
        assert _rows(engine, "SELECT count(*) FROM tracks WHERE claimed_by IS NOT NULL "
                     "OR status <> 'ok'") == [(0,)]
        assert remote.stop_all() == [0] and workers.stop_all() == [0]
    finally:
        remote.cleanup()
        proxy.cut()


def test_a_worker_follows_the_active_model_without_the_model_store(
        library: Library, engine: Engine, workers: Workers, postgres_catalogue_url: str,
        tmp_path: Path,
) -> None:
    from tests.storage.modelkit import tiny_bundle

    _activate(library, postgres_catalogue_url, "tiny-v1")
    elsewhere = tmp_path / "other-host"  # a host that shares no model store: the path the
    # catalogue records for the bundles maps to nothing there
    config = tmp_path / "worker.toml"
    config.write_text(f'[paths]\n"{library.store}" = "{elsewhere / "no-store"}"\n')
    env = {"XDG_DATA_HOME": str(elsewhere / "data"), "XDG_CACHE_HOME": str(elsewhere / "cache"),
           "GENRED_CONFIG": str(config)}
    workers.start(env=env)
    first = _queue_files(library, engine, 2, seconds=8.0)
    wait_for(lambda: all(catalogue.get_track(engine, f).model == "tiny-v1"  # type: ignore[union-attr]
                         for f in first), 180, f"tiny-v1 predictions:\n{workers.logs()}")
    tiny_bundle(library.store / "tiny-v2", version="tiny-v2", seed=1)
    _activate(library, postgres_catalogue_url, "tiny-v2")  # requeues the two tracks
    wait_for(lambda: all(catalogue.get_track(engine, f).model == "tiny-v2"  # type: ignore[union-attr]
                         for f in first), 180, f"tiny-v2 predictions:\n{workers.logs()}")
    for version in ("tiny-v1", "tiny-v2"):  # both came from the catalogue
        assert (elsewhere / "cache" / "genred" / "models" / version / "model.json").is_file()
    assert workers.stop_all() == [0]


def test_a_batch_recorded_with_the_old_model_after_a_switch_is_classified_again(
        library: Library, engine: Engine, postgres_catalogue_url: str, tmp_path: Path,
) -> None:
    """The switch lands between a worker's model check and its claim: that batch is
    classified with the old model and recorded after `models activate` requeued the
    catalogue. Once the worker has the new model, those tracks are queued and done again."""
    from daemon.config import Config
    from daemon.worker_host import SharedQueueRunner
    from tests.storage.modelkit import tiny_bundle

    url = postgres_catalogue_url
    _activate(library, url, "tiny-v1")
    files = _queue_files(library, engine, 2, seconds=8.0)
    cfg = Config(db=url, model_store=str(library.store), cache=str(tmp_path / "cache"),
                 clips_per_track=1, workers=1)
    runner = SharedQueueRunner(cfg, engine)
    try:
        worker = runner.worker()  # process_batch's model check: tiny-v1 is active
        tiny_bundle(library.store / "tiny-v2", version="tiny-v2", seed=1)
        _activate(library, url, "tiny-v2")  # ... and then the switch
        worker.process_pending()  # the batch that passed the check
        models = {catalogue.get_track(engine, f).model for f in files}  # type: ignore[union-attr]
        assert models == {"tiny-v1"}
        while runner.process_batch():
            pass
        assert {catalogue.get_track(engine, f).model  # type: ignore[union-attr]
                for f in files} == {"tiny-v2"}
        assert _rows(engine, "SELECT count(*) FROM tracks WHERE status = 'pending'") == [(0,)]
    finally:
        runner.close()


def test_a_worker_that_cannot_read_a_file_puts_it_back(
        library: Library, engine: Engine, workers: Workers, postgres_catalogue_url: str,
) -> None:
    _activate(library, postgres_catalogue_url, "tiny-v1")
    ghost = library.music / "not-here.flac"
    catalogue.mark_pending(engine, ghost, 1, 1.0)  # in the catalogue, absent on this host
    real = _queue_files(library, engine, 1, seconds=8.0)[0]
    workers.start()
    wait_for(lambda: catalogue.get_track(engine, real).status == "ok",  # type: ignore[union-attr]
             180, f"the readable file recorded:\n{workers.logs()}")
    track = wait_for(lambda: (t := catalogue.get_track(engine, ghost)) and t.error and t,
                     60, "the unreadable file put back")
    assert track.status == "pending" and "not readable on" in track.error
    assert workers.stop_all() == [0]
    assert os.path.exists(real)


def test_a_worker_reads_the_library_where_its_host_mounts_it(
        library: Library, engine: Engine, workers: Workers, postgres_catalogue_url: str,
        tmp_path: Path,
) -> None:
    """The catalogue names the files as the daemon host sees them (a prefix that does not
    exist here); the worker's [paths] maps it to where this host mounts the library."""
    _activate(library, postgres_catalogue_url, "tiny-v1")
    served = "/srv/genred-test-nas/music"  # the daemon host's mount point: absent here
    assert not os.path.exists(served)
    names = []
    for i in range(2):
        local = make_track(library.music / "Album" / f"{i}.flac", STYLES[i], 8.0, seed=i)
        size, mtime = catalogue.file_stat(local)
        name = f"{served}/Album/{i}.flac"
        catalogue.mark_pending(engine, name, size, mtime)
        names.append(name)
    config = tmp_path / "worker.toml"
    config.write_text(f'[paths]\n"{served}" = "{library.music}"\n')
    workers.start(env={"GENRED_CONFIG": str(config)})
    for name in names:
        track = wait_for(lambda n=name: (t := catalogue.get_track(engine, n))  # type: ignore[misc]
                         and t.status == "ok" and t, 180, f"{name} recorded:\n{workers.logs()}")
        assert track.model == "tiny-v1" and not track.error
    # recorded under the catalogue's names: no row for this host's paths
    assert sorted(r[0] for r in _rows(engine, "SELECT path FROM tracks")) == names
    assert workers.stop_all() == [0]


def test_status_on_a_worker_host_does_not_say_the_queue_waits_while_workers_live(
        library: Library, engine: Engine, postgres_catalogue_url: str) -> None:
    from storage import workqueue

    def status() -> tuple[dict[str, Any], str]:
        args = [str(GENRED), "--db", postgres_catalogue_url, "status"]
        text = subprocess.run(args, env=library.env, capture_output=True, text=True,
                              timeout=120, check=True).stdout
        data = subprocess.run([*args, "--format", "json"], env=library.env,
                              capture_output=True, text=True, timeout=120, check=True).stdout
        return json.loads(data), text

    catalogue.mark_pending(engine, "/srv/music/a.flac", 1, 1.0)
    data, text = status()  # no daemon here, no worker anywhere: it waits
    assert data["queue_waits_for_daemon"] and "waiting for a daemon" in text
    # A worker on another host, heartbeat just now (a daemon on the NAS is one too)
    workqueue.register_worker(engine, "worker", host="nas", pid=4242)
    data, text = status()
    assert not data["queue_waits_for_daemon"] and "waiting for a daemon" not in text
    assert "1 pending (worked by 1 live worker(s); no daemon runs on this host)" in text
    assert [(w["host"], w["pid"], w["alive"]) for w in data["workers"]] == [("nas", 4242, True)]


def test_a_daemon_on_postgresql_classifies_follows_moves_and_keeps_labels(
        library: Library, engine: Engine, postgres_catalogue_url: str) -> None:
    """`genred run` (classifying itself, the default) on a PostgreSQL catalogue, as on
    SQLite: a new file is classified, a rename and a move into a new folder keep the track
    and its label, a delete marks it missing."""
    from storage.corrections import add_label, history
    from tests.daemon.daemon_helpers import Daemon

    def status(path: Path) -> str | None:
        track = catalogue.get_track(engine, path)
        return track.status if track else None

    daemon = Daemon(library, db=postgres_catalogue_url)
    try:
        daemon.ready()
        song = make_track(library.music / "in" / "song.ogg", "Drone", 8.0, seed=4)
        wait_for(lambda: status(song) == "ok", 120, f"the new file:\n{daemon.output()}")
        assert catalogue.get_track(engine, song).model == "tiny-v1"  # type: ignore[union-attr]
        add_label(engine, song, "Polka")
        renamed = song.with_name("renamed.ogg")
        os.rename(song, renamed)
        wait_for(lambda: status(renamed) == "ok" and status(song) is None, 60,
                 "the track to follow the rename")
        assert _rows(engine, "SELECT count(*) FROM predictions") == [(1,)]  # same bytes
        moved = library.music / "sorted" / "moved.ogg"
        moved.parent.mkdir()
        os.rename(renamed, moved)
        wait_for(lambda: status(moved) == "ok" and status(renamed) is None, 120,
                 "the moved track to be matched by fingerprint")
        assert history(engine, moved) == [("Polka", "user", True)]
        assert _rows(engine, "SELECT count(*) FROM tracks") == [(1,)]  # one track, moved
        assert _rows(engine, "SELECT count(*) FROM predictions WHERE current") == [(1,)]
        moved.unlink()
        wait_for(lambda: status(moved) == "missing", 60, "the delete to be seen")
        assert daemon.terminate(timeout=60)[0] == 0
    finally:
        daemon.cleanup()


def test_a_daemon_that_does_not_classify_leaves_the_queue_to_workers_and_tags_their_files(
        library: Library, engine: Engine, workers: Workers, postgres_catalogue_url: str,
) -> None:
    from storage import tags
    from tests.daemon.daemon_helpers import Daemon

    url = postgres_catalogue_url
    _activate(library, url, "tiny-v1")
    library.env["GENRED_TAG_THRESHOLD"] = "0"  # the tiny model is never sure of anything
    daemon = Daemon(library, "--no-classify", "--write-tags", db=url)
    try:
        daemon.ready()
        second = subprocess.run([str(GENRED), "--db", url, "run", "--watch",
                                 str(library.music)], env=library.env, capture_output=True,
                                text=True, timeout=120, check=False)
        assert second.returncode == 1 and "another genred daemon" in second.stderr
        song = make_track(library.music / "dropped.flac", "Pulse", 8.0, seed=3)
        wait_for(lambda: (t := catalogue.get_track(engine, song)) and t.status == "pending",
                 60, "the daemon to queue the dropped file")
        workers.start()
        wait_for(lambda: catalogue.get_track(engine, song).status == "ok",  # type: ignore[union-attr]
                 180, "a worker to classify it")
        genre = catalogue.get_track(engine, song).genre  # type: ignore[union-attr]
        wait_for(lambda: tags.read_genres(song) == [genre], 60,
                 f"the daemon to tag it {genre}:\n{daemon.output()}")
        status = json.loads(subprocess.run(
            [str(GENRED), "--db", url, "status", "--format", "json"], env=library.env,
            capture_output=True, text=True, timeout=120, check=True).stdout)
        assert status["daemon"]["running"]
        assert [(w["kind"], w["tracks_done"], w["alive"]) for w in status["workers"]] == [
            ("worker", 1, True)]
        code, _ = daemon.terminate(timeout=30)
        assert code == 0
    finally:
        daemon.cleanup()
    assert workers.stop_all() == [0]
