"""`genred worker`: work a shared catalogue's queue from any host.

The process registers itself in the catalogue, then until SIGTERM/SIGINT: follow the
catalogue's active model (loading it from the mapped model store, its own, or the bundle
stored in the catalogue), claim a batch of pending tracks, classify and record them
(``daemon.queue_worker``), and look again every ``QUEUE_POLL_SECONDS`` when the queue is
empty. It never watches folders, schedules retrains or writes tags: that is the one
`genred run` host's work. A stop gives back the tracks it holds at once; a kill leaves
them to expire after ``lease_seconds``.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from daemon import sdnotify
from daemon.config import Config
from daemon.queue_runner import DaemonError, QueueRunner
from daemon.service import QUEUE_POLL_SECONDS

log = logging.getLogger(__name__)

RETRY_SECONDS = 10.0  # after losing the database


class SharedQueueRunner(QueueRunner):
    """QueueRunner for a worker host: the model is the catalogue's active one (or the
    pinned ``model``), files are read through ``[paths]``, and loading the active model
    queues again what another model recorded after the switch (``_after_load``)."""

    kind = "worker"

    def _wanted_model(self) -> Path:
        from classifier.store import ModelNotFound
        from daemon.paths import PathMap
        from daemon.shared_models import locate
        from storage.catalogue import active_model, model_path

        if self.cfg.model:
            return super()._wanted_model()
        version = active_model(self.engine)
        if version is None:
            return self.store.active()  # a catalogue no daemon has used yet: the starter
        if self._worker is not None and self._worker.classifier.version == version:
            return self._model_path or self.store.active()
        try:
            return locate(self.engine, version, model_path(self.engine, version),
                          PathMap(self.cfg.paths), self.store, self.cfg.cache_path)
        except ModelNotFound as e:
            if self._model_path is None:
                raise DaemonError(str(e)) from e
            log.error("%s; keeping %s", e, self._worker.classifier.version)
            return self._model_path

    def _new_worker(self, classifier: Any) -> Any:
        from daemon.queue_worker import Claimant, ClaimingWorker

        if self._claimant is None:
            self._claimant = Claimant(self.engine, self.cfg, self.kind)
        return ClaimingWorker(self.engine, classifier, self.cfg, claimant=self._claimant,
                              remote=True)

    def _after_load(self, version: str) -> None:
        """A batch that passed its model check just before a switch was classified with the
        old model and may have been recorded after `models activate` requeued the
        catalogue: once this worker has the catalogue's active model, queue again what
        other models classified (as the daemon does on every load). A pinned model, or one
        the catalogue does not name as active, queues nothing."""
        from storage.catalogue import active_model

        if self.cfg.model or active_model(self.engine) != version:
            log.info("classifying with model %s", version)
            return
        super()._after_load(version)


def run_worker(cfg: Config) -> int:
    """`genred worker`: work the queue until SIGTERM/SIGINT; returns the exit code."""
    from storage.db import open_catalogue

    engine = open_catalogue(cfg.db_url)
    runner = SharedQueueRunner(cfg, engine)
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping after the files in hand", signal.Signals(signum).name)
        stopping.set()
        runner.cancel()

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        runner.worker()  # the model loads (or fails) before READY
        sdnotify.notify("READY=1")
        log.info("worker %d ready on %s", runner._claimant.worker_id, cfg.db_url)
        _loop(runner, engine, stopping)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sdnotify.notify("STOPPING=1")
        runner.close()
        engine.dispose()
    return 0


def _loop(runner: SharedQueueRunner, engine: Engine, stopping: threading.Event) -> None:
    while not stopping.is_set():
        try:
            worked = runner.process_batch()
        except OperationalError as e:  # the database went away: wait and try again
            log.warning("catalogue unreachable (%s); retrying in %.0f s", e.orig, RETRY_SECONDS)
            stopping.wait(RETRY_SECONDS)
            continue
        if not worked:
            sdnotify.notify(f"STATUS=idle; model {runner.model_version()}")
            stopping.wait(QUEUE_POLL_SECONDS)
