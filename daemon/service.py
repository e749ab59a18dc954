"""`genred run`: the daemon's run loop.

Start: claim the catalogue (one daemon per catalogue), start watching, start the retrain
schedule, tell systemd READY=1, then reconcile the folders with the catalogue (new/changed
files → pending, vanished → missing). Then, until SIGTERM/SIGINT:

    filesystem change → settle (FileStabilityTracker) → pending in the catalogue
    pending tracks → the worker (parallel decode, one inference place) → recorded

The queue is the catalogue (``Track.status == "pending"``): a kill at any moment leaves
every unfinished file pending, and the next start processes each exactly once. The loop
blocks on the watcher's queue between events; it wakes for settling files, the periodic
rescan, the systemd watchdog, a heartbeat, and every ``QUEUE_POLL_SECONDS`` for one indexed
look at the queue, so work another command queued (``genred correct`` on a file never
scanned, ``genred models activate``, a plain SQL update) starts within seconds. Watching
the catalogue's files instead would wake the daemon on its own writes.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import Engine

from daemon import sdnotify
from daemon.config import Config, ConfigError
from daemon.reconcile import Reconciler
from daemon.status import (
    HEARTBEAT_KEY,
    HOST_KEY,
    LAST_SCAN_KEY,
    PID_KEY,
    STARTED_KEY,
    WATCH_KEY,
    running_pid,
)
from daemon.watcher import FileStabilityTracker, FolderWatcher

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 300.0
QUEUE_POLL_SECONDS = 2.0  # idle: how often to look for work queued by other processes
DAEMON_POOL_MIN_FILES = 2  # a batch this size or larger is decoded in the worker processes


class DaemonError(Exception):
    """The daemon cannot start: nothing to watch, a folder is missing, another daemon
    already serves this catalogue. The message says what to fix."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _watch_roots(cfg: Config) -> list[str]:
    if not cfg.watch:
        raise DaemonError("no folders to watch: give --watch PATH or set watch = [...] in "
                          "the config file")
    roots: list[str] = []
    for folder in cfg.watch:
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise DaemonError(f"watch folder {folder} is not a directory (config key 'watch')")
        roots.append(str(path))
    return roots


class QueueRunner:
    """Drains the catalogue's queue with a :class:`daemon.queue_worker.ClaimingWorker` in
    small batches (so a stop request waits for at most one batch), claiming each batch so
    `genred worker` processes on other hosts can share the queue, and swaps in a new
    classifier when the active model changes (a promotion by the retrain job, `genred
    models activate`). Whenever it loads a model, uncorrected tracks last classified by
    another model are queued again, so the catalogue converges on the model in use.
    With ``classify=False`` (`genred run --no-classify`) it only follows the active model
    (registering it, storing its bundle for worker hosts, requeueing) and leaves the queue
    to the workers."""

    kind = "daemon"  # as listed by `genred status`

    def __init__(self, cfg: Config, engine: Engine, classify: bool = True) -> None:
        from classifier.store import ModelStore

        self.cfg = cfg
        self.engine = engine
        self.classify = classify
        self.store = ModelStore(cfg.model_store_path)
        self.batch = 2 * max(1, cfg.worker_count)
        self._claimant: Any = None
        self._worker: Any = None
        self._model_path: Path | None = None
        self._broken: Path | None = None
        self._cancelled = False
        self._version = ""

    def _wanted_model(self) -> Path:
        from classifier.store import ModelNotFound

        try:
            return self.store.resolve(self.cfg.model) if self.cfg.model else self.store.active()
        except ModelNotFound as e:
            if self._model_path is None:
                raise DaemonError(f"config key 'model': {e}") from e
            return self._model_path

    def _load(self, wanted: Path) -> Any:
        """A Classifier with its weights loaded now, so a broken bundle fails here."""
        from classifier.bundle import BundleError
        from classifier.predict import Classifier

        try:
            classifier = Classifier.load(wanted, self.store,
                                         clips_per_track=self.cfg.clips_per_track)
            classifier.net  # noqa: B018 - load the weights (torch) now, not mid-queue
        except BundleError as e:
            if self._worker is None:
                raise DaemonError(f"cannot use the model: {e}") from e
            log.error("cannot switch to the model at %s (%s); keeping %s", wanted, e,
                      self._worker.classifier.version)
            self._broken = wanted
            return None
        return classifier

    def _new_worker(self, classifier: Any) -> Any:
        from daemon.queue_worker import Claimant, ClaimingWorker

        if self._claimant is None:
            self._claimant = Claimant(self.engine, self.cfg, self.kind)
        # No tags written here: the daemon's tag pass (daemon/tagpass.py) writes them for
        # every new prediction, whichever host classified it.
        return ClaimingWorker(self.engine, classifier, self.cfg, claimant=self._claimant)

    def _after_load(self, version: str) -> None:
        from storage.catalogue import requeue_for_model

        requeue = requeue_for_model(self.engine, version)
        log.info("classifying with model %s (%d track(s) from other models queued, "
                 "%d queued track(s) it had already classified taken off the queue)",
                 version, requeue.queued, requeue.unqueued)

    def worker(self) -> Any:
        """The current Worker, rebuilt when the active model changed (a model that fails
        to load is reported once and the current one kept)."""
        wanted = self._wanted_model()
        if self._worker is not None and wanted in (self._model_path, self._broken):
            return self._worker
        classifier = self._load(wanted)
        if classifier is None:
            return self._worker
        previous, self._worker = self._worker, self._new_worker(classifier)
        if previous is not None:
            previous.hand_over_pool(self._worker)
            previous.close()
        # The daemon's worker lives long, so its decode processes start once and serve every
        # later batch: a backlog (2+ files) is decoded on all cores; a lone dropped file is
        # decoded right here, without waiting for the processes to start.
        self._worker.pool_min_files = DAEMON_POOL_MIN_FILES
        self._worker.stop_requested = lambda: self._cancelled
        self._model_path, self._broken = wanted, None
        self._after_load(classifier.version)
        return self._worker

    def follow_model(self) -> str:
        """``classify=False``: notice a change of the active model without loading it."""
        from classifier.bundle import BundleError, read_meta
        from daemon.shared_models import share_bundle
        from storage.catalogue import register_model

        wanted = self._wanted_model()
        if wanted != self._model_path:
            try:
                meta = read_meta(wanted)
            except BundleError as e:
                raise DaemonError(f"cannot use the model: {e}") from e
            register_model(self.engine, meta.version, wanted, meta.labels, metrics=meta.metrics,
                           parent=meta.parent, active=not self.cfg.model)
            if not self.cfg.model:
                share_bundle(self.engine, meta.version, wanted)
            self._after_load(meta.version)
            self._model_path, self._version = wanted, meta.version
        return self._version

    def model_version(self) -> str:
        """The model in use (loading it the first time; never swaps by itself)."""
        if not self.classify:
            return self._version if self._model_path is not None else self.follow_model()
        worker = self._worker if self._worker is not None else self.worker()
        return str(worker.classifier.version)

    def pending_count(self) -> int:
        from storage.catalogue import count_tracks
        from storage.schema import PENDING

        return count_tracks(self.engine, PENDING)

    def process_batch(self) -> bool:
        """Classify up to one batch of pending tracks; False when the queue was empty."""
        from storage.catalogue import has_pending

        if self._cancelled:
            return False
        if not self.classify:
            self.follow_model()
            return False
        worker = self.worker()  # first: a model switch requeues tracks for this batch
        if not has_pending(self.engine):
            return False
        summary = worker.process_pending(limit=self.batch)
        if summary.scanned:
            log.info("%s", summary.line())
        return bool(summary.scanned)

    def cancel(self) -> None:
        self._cancelled = True

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        if self._claimant is not None:
            self._claimant.stop()
            self._claimant = None


class Daemon:
    """One run of `genred run`; :meth:`run` returns the exit code."""

    def __init__(self, cfg: Config, engine: Engine, classify: bool = True) -> None:
        from daemon.scheduler import cron_trigger
        from daemon.tagpass import TagPass

        try:
            cron_trigger(cfg.retrain.schedule)
        except ValueError as e:
            raise ConfigError(f"config key 'retrain.schedule': {e}") from e
        self.cfg = cfg
        self.engine = engine
        self.roots = _watch_roots(cfg)
        self.watcher = FolderWatcher(self.roots, control_dirs=[cfg.model_store_path])
        self.tracker = FileStabilityTracker(cfg.settle_seconds)
        self.reconciler = Reconciler(engine, self.roots, self.tracker)
        self.worker = QueueRunner(cfg, engine, classify)
        self.tags = TagPass(cfg, engine)
        self.stopping = threading.Event()
        self._pinger: sdnotify.WatchdogPinger | None = None
        self._scheduler: Any = None
        self._next_rescan = time.monotonic() + cfg.rescan_hours * 3600
        self._next_heartbeat = 0.0
        self._last_status = ""
        self._lock: Any = None

    # -- life cycle --------------------------------------------------------------------
    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        self.stopping.set()
        self.worker.cancel()
        self.watcher.wake()

    def run(self) -> int:
        self._claim()
        try:
            self._start()
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _claim(self) -> None:
        """One daemon per catalogue: a lock on the catalogue (an advisory lock on
        PostgreSQL, whichever host holds it; an flock next to a SQLite catalogue; released
        however the process ends), and the pid and host recorded in the catalogue."""
        from storage.catalogue import get_state, set_state
        from storage.db import try_lock

        other = running_pid(self.engine)
        busy = other is not None and other != os.getpid()
        if not busy:
            self._lock = try_lock(self.engine, "daemon")
            busy = self._lock is None
        if busy:
            pid = other or get_state(self.engine, PID_KEY) or "unknown"
            host = get_state(self.engine, HOST_KEY) or "an unknown host"
            raise DaemonError(f"another genred daemon (pid {pid} on {host}) already serves "
                              f"{self.cfg.db_url}; stop it first")
        import json

        for key, value in ((PID_KEY, str(os.getpid())), (HOST_KEY, socket.gethostname()),
                           (STARTED_KEY, _now()), (HEARTBEAT_KEY, _now()),
                           (WATCH_KEY, json.dumps(self.roots))):
            set_state(self.engine, key, value)

    def _start(self) -> None:
        from daemon.retrain import mark_interrupted

        mark_interrupted(self.engine, self.cfg.model_store_path)
        self.tags.start()
        try:
            self.watcher.start()  # first watch, then walk: nothing slips between the two
        except OSError as e:
            raise DaemonError(
                f"cannot watch {', '.join(self.roots)}: {e} (a large library may need a "
                "higher fs.inotify.max_user_watches, see sysctl)") from e
        self._start_scheduler()
        timeout = sdnotify.watchdog_seconds()
        if timeout:
            self._pinger = sdnotify.WatchdogPinger(timeout)
            self._pinger.start()
        # Ready once watching: the walk of a large library may take minutes, and must not
        # run into systemd's start timeout (it beats the watchdog as it goes).
        sdnotify.notify("READY=1\n" + self._status_line())
        log.info("ready: watching %d folder(s)", len(self.roots))
        self._rescan("start")

    def _start_scheduler(self) -> None:
        from daemon import scheduler
        from daemon.retrain import retrain

        def job() -> None:
            outcome = retrain(self.engine, self.cfg, trigger="schedule")
            log.info("scheduled retrain %s", outcome.summary())
            if outcome.requeued:
                self.watcher.wake()

        scheduler.register(scheduler.RETRAIN_JOB, job)
        self._scheduler = scheduler.start_scheduler(self.cfg.db_url, self.cfg.retrain.schedule)

    def _shutdown(self) -> None:
        from storage.catalogue import set_state

        sdnotify.notify("STOPPING=1")
        self.watcher.stop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        if self._pinger is not None:
            self._pinger.stop()
        self.worker.close()
        set_state(self.engine, PID_KEY, "")
        if self._lock is not None:
            self._lock.release()
        log.info("stopped")

    # -- the loop ------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self.stopping.is_set():
            self._beat()
            self._handle_changes(block=False)
            self._enqueue_settled()
            if time.monotonic() >= self._next_rescan:
                self._rescan("periodic")
            worked = self.worker.process_batch()
            self.tags.run()
            if worked:
                continue  # more may be pending: handle events, then the next batch
            self._notify_status()
            self._handle_changes(block=True)

    def _beat(self) -> None:
        from storage.catalogue import set_state

        if self._pinger is not None:
            self._pinger.beat()
        now = time.monotonic()
        if now >= self._next_heartbeat:
            set_state(self.engine, HEARTBEAT_KEY, _now())
            self._next_heartbeat = now + HEARTBEAT_SECONDS

    def _wait_timeout(self) -> float:
        now = time.monotonic()
        deadlines = [self._next_rescan, self._next_heartbeat, now + QUEUE_POLL_SECONDS]
        due = self.tracker.next_due()
        if due is not None:
            deadlines.append(due + 0.05)
        if self._pinger is not None:
            deadlines.append(now + self._pinger.timeout / 3)
        return max(0.0, min(deadlines) - now)

    def _handle_changes(self, block: bool) -> None:
        if block and not self.stopping.is_set():
            change = self.watcher.get(timeout=self._wait_timeout())
            if change is not None:
                self.reconciler.apply(change)
        for change in self.watcher.drain():
            self.reconciler.apply(change)

    def _enqueue_settled(self) -> None:
        for path in self.tracker.settled():
            self.reconciler.enqueue_if_changed(path)

    def _rescan(self, why: str) -> None:
        from storage.catalogue import set_state

        counts = self.reconciler.rescan(self.cfg.settle_seconds, self._keep_walking)
        set_state(self.engine, LAST_SCAN_KEY, _now())
        self._next_rescan = time.monotonic() + self.cfg.rescan_hours * 3600
        log.info("%s scan: %s", why, ", ".join(f"{k} {v}" for k, v in counts.items()))

    def _keep_walking(self) -> bool:
        self._beat()
        return not self.stopping.is_set()

    def _notify_status(self) -> None:
        line = self._status_line()
        if line != self._last_status:
            sdnotify.notify(line)
            self._last_status = line

    def _status_line(self) -> str:
        return (f"STATUS={self.worker.pending_count()} pending; "
                f"model {self.worker.model_version()}")


def run_daemon(cfg: Config, classify: bool = True) -> int:
    """`genred run`: open the catalogue, run until SIGTERM/SIGINT, return the exit code."""
    from storage.db import open_catalogue

    engine = open_catalogue(cfg.db_url)
    daemon = Daemon(cfg, engine, classify)
    previous: dict[signal.Signals, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, daemon.request_stop)
    try:
        code = daemon.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    _abandon_retrain(engine, code)
    engine.dispose()
    return code


def _abandon_retrain(engine: Engine, code: int) -> None:
    """A retrain still running in the scheduler's thread would keep the process alive
    until it finishes (minutes): record it as interrupted and exit now. The model store is
    untouched (a candidate is only promoted by a finished run)."""
    from daemon.retrain import in_progress, mark_interrupted

    if not in_progress():
        return
    log.warning("stopping in the middle of a retrain; it will run again at the next "
                "scheduled time")
    mark_interrupted(engine)
    engine.dispose()
    logging.shutdown()
    os._exit(code)
