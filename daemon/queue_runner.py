"""The daemon's side of the work queue: drain ``pending`` tracks with a Worker, in batches.

The queue is the catalogue (``Track.status == "pending"``). :class:`QueueRunner` classifies
a small batch at a time (a stop request waits for at most one batch), swaps in a new
classifier when the active model changes, applies a reloaded config, and puts aside for a
while a track the catalogue refuses to record (an integrity error on its row) so one bad
row never holds up the rest; that track is tried again with back-off until it records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from daemon.config import Config

log = logging.getLogger(__name__)

DAEMON_POOL_MIN_FILES = 2  # a batch this size or larger is decoded in the worker processes
FIRST_DEFER_SECONDS = 1.0
MAX_DEFER_SECONDS = 600.0


class DaemonError(Exception):
    """The daemon cannot start: nothing to watch, a folder is missing, another daemon
    already serves this catalogue. The message says what to fix."""


class QueueRunner:
    """Drains the catalogue's queue with a :class:`daemon.queue_worker.ClaimingWorker` in
    small batches, claiming each batch so `genred worker` processes on other hosts can
    share the queue, and swaps in a new classifier when the active model changes (a
    promotion by the retrain job, `genred models activate`). Whenever it loads a model,
    uncorrected tracks last classified by another model are queued again, so the catalogue
    converges on the model in use. With ``classify=False`` (`genred run --no-classify`) it
    only follows the active model (registering it, storing its bundle for worker hosts,
    requeueing) and leaves the queue to the workers."""

    kind = "daemon"  # as listed by `genred status`

    def __init__(self, cfg: Config, engine: Engine, classify: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from classifier.store import ModelStore

        self.cfg = cfg
        self.engine = engine
        self.classify = classify
        self._claimant: Any = None
        self._version = ""
        self.store = ModelStore(cfg.model_store_path)
        self.batch = 2 * max(1, cfg.worker_count)
        self.heartbeat: Callable[[], None] = lambda: None  # "still working", per file
        self._clock = clock
        self._worker: Any = None
        self._model_path: Path | None = None
        self._broken: Path | None = None
        self._missing: str | None = None  # a vanished model already reported
        self._rebuild = False
        self._cancelled = False
        # path -> (clock time it may be tried again, current back-off)
        self._deferred: dict[str, tuple[float, float]] = {}

    def reconfigure(self, cfg: Config) -> None:
        """Use ``cfg`` (a reloaded config) from the next batch on: tag policy, clips per
        track and a pinned model take effect then; the decode processes are kept."""
        keys = ("clips_per_track", "model")  # tag policy: the daemon's TagPass
        if any(getattr(cfg, k) != getattr(self.cfg, k) for k in keys):
            self._rebuild = True
        self.cfg = cfg

    def _wanted_model(self) -> Path:
        """The bundle to classify with: the pinned or active one. One that vanished while
        running (its folder deleted) is reported once and the loaded model kept; at start,
        an active model that is gone falls back to the starter (ModelStore.active)."""
        from classifier.store import ModelNotFound

        spec = self.cfg.model or self.store.active_version()
        if spec is None:
            return self.store.bundled()
        try:
            return self.store.resolve(spec)
        except ModelNotFound as e:
            if self._model_path is None:
                if not self.cfg.model:
                    return self.store.active()
                raise DaemonError(f"config key 'model': {e}") from e
            if self._missing != spec:
                log.error("%s; keeping the model in use (%s): restore it, or activate "
                          "another (`genred models activate VERSION`)", e, self._model_path)
                self._missing = spec
            return self._model_path

    def _load(self, wanted: Path) -> Any:
        """A Classifier with its weights loaded now, so a broken bundle fails here."""
        from classifier.bundle import BundleError
        from classifier.predict import Classifier

        try:
            classifier = Classifier.load(wanted, self.store,
                                         clips_per_track=self.cfg.clips_per_track)
            classifier.ready()  # load the weights now, not mid-queue
        except (BundleError, OSError) as e:
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
        from storage.requeue import requeue_for_model

        requeue = requeue_for_model(self.engine, version)
        log.info("classifying with model %s (%d track(s) from other models queued, "
                 "%d queued track(s) it had already classified taken off the queue)",
                 version, requeue.queued, requeue.unqueued)

    def worker(self) -> Any:
        """The current Worker, rebuilt when the active model or the config changed (a
        model that fails to load is reported once and the current one kept)."""
        wanted = self._wanted_model()
        if self._worker is not None and not self._rebuild and wanted in (
                self._model_path, self._broken):
            return self._worker
        if self._worker is not None and wanted == self._model_path:
            classifier = self._worker.classifier
            if classifier.clips_per_track != self.cfg.clips_per_track:
                classifier = self._load(wanted) or classifier
        else:
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
        self._worker.heartbeat = lambda: self.heartbeat()
        self._model_path, self._broken, self._rebuild = wanted, None, False
        self._missing = None
        self._after_load(classifier.version)
        return self._worker

    def follow_model(self) -> str:
        """``classify=False``: notice a change of the active model without loading it."""
        from classifier.bundle import BundleError, read_meta
        from daemon.shared_models import share_bundle
        from storage.catalogue import register_model

        wanted = self._wanted_model()
        if wanted not in (self._model_path, self._broken):
            try:
                meta = read_meta(wanted)
            except BundleError as e:
                if self._model_path is None:
                    raise DaemonError(f"cannot use the model: {e}") from e
                if self._broken != wanted:
                    log.error("cannot switch to the model at %s (%s); keeping %s", wanted, e,
                              self._version)
                    self._broken = wanted
                return self._version
            register_model(self.engine, meta.version, wanted, meta.labels, metrics=meta.metrics,
                           parent=meta.parent, active=not self.cfg.model)
            if not self.cfg.model:
                share_bundle(self.engine, meta.version, wanted)
            self._after_load(meta.version)
            self._model_path, self._version, self._broken = wanted, meta.version, None
            self._missing = None
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

    def next_deferred(self) -> float | None:
        """Clock time at which a put-aside track may be tried again (None if none)."""
        return min((when for when, _ in self._deferred.values()), default=None)

    def process_batch(self) -> bool:
        """Classify up to one batch of pending tracks; False when there was nothing to do
        (the queue is empty, or holds only tracks put aside for now)."""
        from storage.catalogue import has_pending

        if self._cancelled:
            return False
        if not self.classify:
            self.follow_model()
            return False
        worker = self.worker()  # first: a model switch requeues tracks for this batch
        if not has_pending(self.engine):
            self._deferred.clear()
            return False
        now = self._clock()
        waiting = {p for p, (when, _) in self._deferred.items() if when > now}
        summary = worker.process_pending(limit=self.batch, exclude=waiting)
        self._after(summary, waiting)
        if summary.scanned:
            log.info("%s", summary.line())
        return bool(summary.scanned)

    def _after(self, summary: Any, waiting: set[str]) -> None:
        now = self._clock()
        for path in summary.deferred:
            _, delay = self._deferred.get(path, (0.0, FIRST_DEFER_SECONDS / 2))
            delay = min(MAX_DEFER_SECONDS, delay * 2)
            self._deferred[path] = (now + delay, delay)
        for path in summary.done_paths:
            if self._deferred.pop(path, None) is not None:
                log.warning("recorded %s after all: the catalogue accepts it again", path)

    def cancel(self) -> None:
        self._cancelled = True

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        if self._claimant is not None:
            self._claimant.stop()
            self._claimant = None
