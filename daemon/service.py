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

No single fault ends the loop (see daemon/faults.py): a pass that fails (the catalogue
locked past its busy timeout, a full disk, an I/O error) is logged once, retried with
back-off, and the loop resumes where it was; watcher events wait meanwhile. A watched
folder that vanishes is re-attached when it is back. Signals are handled outside signal
handlers (daemon/signals.py); SIGHUP re-reads the config. daemon/launch.py runs a Daemon
for `genred run` (signals, the catalogue, the way out).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine

from daemon import sdnotify
from daemon.config import Config, ConfigError
from daemon.faults import FaultGuard, describe, describe_short
from daemon.queue_runner import DaemonError, QueueRunner
from daemon.reconcile import Reconciler
from daemon.roots import watch_roots
from daemon.status import (
    HEARTBEAT_KEY,
    HOST_KEY,
    LAST_SCAN_KEY,
    PID_KEY,
    record_start,
    running_pid,
    stamp,
)
from daemon.watcher import Change, FileStabilityTracker, FolderWatcher

__all__ = ["Daemon", "DaemonError"]

log = logging.getLogger(__name__)
T = TypeVar("T")

HEARTBEAT_SECONDS = 300.0
QUEUE_POLL_SECONDS = 2.0  # idle: how often to look for work queued by other processes


class Daemon:
    """One run of `genred run`; :meth:`run` returns the exit code. ``reload_config``
    re-reads the config (file, environment, the same command line) on SIGHUP."""

    def __init__(self, cfg: Config, engine: Engine,
                 reload_config: Callable[[], Config] | None = None,
                 classify: bool = True) -> None:
        from daemon.scheduler import cron_trigger
        from daemon.tagpass import TagPass
        from storage.db import sqlite_path

        try:
            cron_trigger(cfg.retrain.schedule)
        except ValueError as e:
            raise ConfigError(f"config key 'retrain.schedule': {e}") from e
        self.cfg = cfg
        self.engine = engine
        self.roots = watch_roots(cfg)
        self.watcher = FolderWatcher(self.roots, control_dirs=[cfg.model_store_path])
        self.tracker = FileStabilityTracker(cfg.settle_seconds)
        self.reconciler = Reconciler(engine, self.watcher.roots, self.tracker)
        self.worker = QueueRunner(cfg, engine, classify)
        self.worker.heartbeat = self._beat_watchdog
        self.tags = TagPass(cfg, engine)
        self.stopping = threading.Event()
        self.reload_config = reload_config
        self._reload_asked = threading.Event()
        self._poke = threading.Event()  # ends a back-off pause early (stop, reload)
        db_file = sqlite_path(cfg.db_url)
        self._faults = FaultGuard(lambda e: describe(e, db_file, cfg.busy_timeout_seconds))
        self._unapplied: deque[Change] = deque()  # watcher events not yet in the catalogue
        self._to_rescan: list[str] = []  # watched folders that came back
        self._pinger: sdnotify.WatchdogPinger | None = None
        self.scheduler: Any = None
        self._next_rescan = 0.0  # the start-up scan: the first pass of the loop
        self._rescan_why = "start"
        self._next_heartbeat = 0.0
        self._last_status = ""
        self._lock: Any = None  # storage.db.CatalogueLock
        self.started = False  # READY=1 sent: from then on a stop finishes the work in hand

    # -- requests from the signal thread (never from a signal handler) --------------------
    def request_stop(self, signum: int) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        self.stopping.set()
        self.worker.cancel()
        self.watcher.wake()
        self._poke.set()

    def request_reload(self) -> None:
        log.info("SIGHUP: reloading the config")
        self._reload_asked.set()
        self.watcher.wake()
        self._poke.set()

    # -- life cycle --------------------------------------------------------------------
    def run(self) -> int:
        self._retrying(self._claim)
        if self.stopping.is_set():  # stopped while waiting for the catalogue
            if self._lock is not None:
                self._lock.release()
            return 0
        try:
            self._start()
            self._loop()
        finally:
            self._shutdown()
        return 0

    def _retrying(self, step: Callable[[], T]) -> T | None:
        """``step()``, tried again with back-off while it fails on a fault (None if a stop
        came first). A DaemonError or ConfigError is no fault: it ends the run."""
        while not self.stopping.is_set():
            try:
                result = step()
            except (DaemonError, ConfigError):
                raise
            except Exception as e:
                self._pause(self._faults.failed(e))
                continue
            self._faults.succeeded()
            return result
        return None

    def _claim(self) -> None:
        """One daemon per catalogue: a lock on the catalogue (an advisory lock on
        PostgreSQL, whichever host holds it; an flock next to a SQLite catalogue; released
        however the process ends), and the pid and host recorded in the catalogue."""
        from storage.catalogue import get_state
        from storage.db import try_lock

        other = running_pid(self.engine)
        busy = other is not None and other != os.getpid()
        if not busy and self._lock is None:
            self._lock = try_lock(self.engine, "daemon")
            busy = self._lock is None
        if busy:
            pid = other or get_state(self.engine, PID_KEY) or "unknown"
            host = get_state(self.engine, HOST_KEY) or "an unknown host"
            raise DaemonError(f"another genred daemon (pid {pid} on {host}) already serves "
                              f"{self.cfg.db_url}; stop it first")
        record_start(self.engine, self.watcher.roots)

    def _start(self) -> None:
        from daemon.retrain import mark_interrupted

        self._retrying(lambda: mark_interrupted(self.engine, self.cfg.model_store_path))
        self._retrying(self.tags.start)
        try:
            self.watcher.start()  # first watch, then walk: nothing slips between the two
        except OSError as e:
            raise DaemonError(
                f"cannot watch {', '.join(self.roots)}: {e} (a large library may need a "
                "higher fs.inotify.max_user_watches, see sysctl)") from e
        self._retrying(self._start_scheduler)
        timeout = sdnotify.watchdog_seconds()
        if timeout:
            self._pinger = sdnotify.WatchdogPinger(timeout)
            self._pinger.start()
        # Ready once watching: the walk of a large library may take minutes, and must not
        # run into systemd's start timeout (it beats the watchdog as it goes).
        if self.stopping.is_set():
            return
        status = self._retrying(self.status_line)
        sdnotify.notify("READY=1\n" + (status or ""))
        log.info("ready: watching %d folder(s)", len(self.roots))
        self.started = True

    def _start_scheduler(self) -> None:
        from daemon import scheduler
        from daemon.retrain_child import retrain_in_child

        def job() -> None:  # in a child process: the daemon keeps its cores and its memory
            outcome = retrain_in_child(self.engine, self.cfg, trigger="schedule")
            log.info("scheduled retrain %s", outcome.summary())
            if outcome.requeued:
                self.watcher.wake()

        scheduler.register(scheduler.RETRAIN_JOB, job)
        self.scheduler = scheduler.start_scheduler(
            self.cfg.db_url, self.cfg.retrain.schedule,
            busy_timeout=self.cfg.busy_timeout_seconds)

    def _shutdown(self) -> None:
        from storage.catalogue import set_state

        sdnotify.notify("STOPPING=1")
        self.watcher.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if self._pinger is not None:
            self._pinger.stop()
        self.worker.close()
        if self._faults.current is None:  # else: it could wait out a lock; status checks
            try:                            # the pid anyway
                set_state(self.engine, PID_KEY, "")
            except Exception as e:
                log.warning("could not clear the daemon's pid in the catalogue: %s", e)
        if self._lock is not None:
            self._lock.release()
        log.info("stopped")

    # -- the loop ------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self._pass()
            except (DaemonError, ConfigError):
                raise
            except Exception as e:
                delay = self._faults.failed(e)
                sdnotify.notify(f"STATUS={self._faults.status()}: {describe_short(e)}")
                self._last_status = ""
                self._pause(delay)
                continue
            self._faults.succeeded()

    def _pass(self) -> None:
        """One turn of the loop; any exception is a fault (the caller backs off)."""
        if self._reload_asked.is_set():
            self._reload()
            self._reload_asked.clear()
        self._beat()
        self._check_roots()
        self._handle_changes(block=False)
        self._enqueue_settled()
        self._rescan_due()
        worked = self.worker.process_batch()
        self.tags.run()
        if worked:
            return  # more may be pending: handle events, then the next batch
        self._notify_status()
        self._handle_changes(block=True)

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` (a back-off), feeding the watchdog: waiting is not stuck."""
        end = time.monotonic() + seconds
        while not self.stopping.is_set():
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            self._beat_watchdog()
            step = remaining if self._pinger is None else min(remaining,
                                                              self._pinger.timeout / 3)
            if self._poke.wait(step):
                self._poke.clear()
                if self._reload_asked.is_set():
                    return

    def _beat_watchdog(self) -> None:
        if self._pinger is not None:
            self._pinger.beat()

    def _beat(self) -> None:
        from storage.catalogue import set_state

        self._beat_watchdog()
        now = time.monotonic()
        if now >= self._next_heartbeat:
            set_state(self.engine, HEARTBEAT_KEY, stamp())
            self._next_heartbeat = now + HEARTBEAT_SECONDS

    def _wait_timeout(self) -> float:
        now = time.monotonic()
        deadlines = [self._next_rescan, self._next_heartbeat, now + QUEUE_POLL_SECONDS]
        for due in (self.tracker.next_due(), self.worker.next_deferred()):
            if due is not None:
                deadlines.append(due + 0.05)
        if self._pinger is not None:
            deadlines.append(now + self._pinger.timeout / 3)
        return max(0.0, min(deadlines) - now)

    def _handle_changes(self, block: bool) -> None:
        """Apply watcher events in order; one that fails stays first in line."""
        if block and not self._unapplied and not self.stopping.is_set() and not (
                self._reload_asked.is_set()):
            change = self.watcher.get(timeout=self._wait_timeout())
            if change is not None:
                self._unapplied.append(change)
        self._unapplied.extend(self.watcher.drain())
        while self._unapplied:
            self._apply(self._unapplied[0])
            self._unapplied.popleft()

    def _apply(self, change: Change) -> None:
        from sqlalchemy.exc import IntegrityError

        try:
            self.reconciler.apply(change)
        except IntegrityError as e:  # this row: the next rescan tries it again
            log.error("the catalogue refused %s of %s (%s); the next rescan tries again",
                      change.kind, change.path, e.orig)

    def _enqueue_settled(self) -> None:
        settled = self.tracker.settled()
        for n, path in enumerate(settled):
            try:
                self.reconciler.enqueue_if_changed(path)
            except Exception:
                for later in settled[n:]:  # not lost: they settle again after the fault
                    self.tracker.touch(later)
                raise

    def _check_roots(self) -> None:
        gone, back = self.watcher.check_roots()
        for root in gone:
            self.tracker.discard_under(root)
        self._to_rescan += [r for r in back if r not in self._to_rescan]

    def _rescan_due(self) -> None:
        if time.monotonic() >= self._next_rescan:
            self._rescan(self._rescan_why, self.watcher.attached())
            self._next_rescan = time.monotonic() + self.cfg.rescan_hours * 3600
            self._rescan_why = "periodic"
        while self._to_rescan:
            self._rescan("returned folder", [self._to_rescan[0]])
            self._to_rescan.pop(0)

    def _rescan(self, why: str, roots: list[str]) -> None:
        from storage.catalogue import set_state

        counts = self.reconciler.rescan(self.cfg.settle_seconds, self._keep_walking, roots)
        set_state(self.engine, LAST_SCAN_KEY, stamp())
        log.info("%s scan: %s", why, ", ".join(f"{k} {v}" for k, v in counts.items()))

    def _keep_walking(self) -> bool:
        self._beat()
        return not self.stopping.is_set()

    def _notify_status(self) -> None:
        line = self.status_line()
        if line != self._last_status:
            sdnotify.notify(line)
            self._last_status = line

    def status_line(self) -> str:
        return (f"STATUS={self.worker.pending_count()} pending; "
                f"model {self.worker.model_version()}")

    # -- SIGHUP --------------------------------------------------------------------------
    def _reload(self) -> None:
        from daemon.reload import reload_daemon

        reload_daemon(self)

    def status_changed(self) -> None:
        """Send the STATUS line on the next idle turn even if it reads the same."""
        self._last_status = ""

    def rescan_soon(self, root: str) -> None:
        """Walk ``root`` (a folder now watched) on the next pass."""
        if root not in self._to_rescan:
            self._to_rescan.append(root)

    def rescan_within(self, hours: float) -> None:
        """The periodic rescan comes no later than ``hours`` from now."""
        self._next_rescan = min(self._next_rescan, time.monotonic() + hours * 3600)
