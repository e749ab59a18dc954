"""Working the shared queue: claim pending tracks, classify them, record under the lease.

``genred worker`` (any host) and ``genred run`` (the daemon, unless ``--no-classify``) both
classify through a :class:`ClaimingWorker`: the same decode pool and inference place as
``genred scan`` (``daemon.worker.Worker``), fed with tracks claimed from the catalogue
(``storage.workqueue``) instead of paths it found itself, and recording each result only
while its claim still holds. A :class:`Claimant` registers the process in ``workers`` and
keeps its leases alive from a thread, so a worker busy on a long file keeps it, and one
that is killed or cut off loses it after ``lease_seconds``.

A worker host (``remote``) differs from the daemon in three ways: it reads files through
the ``[paths]`` map; a file it cannot read there (not mounted, no permission) is put back
with the reason for another host instead of being marked missing or an error; and it never
changes which model is active — it follows the catalogue's.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from daemon.config import Config
from daemon.decoding import Decoded
from daemon.paths import PathMap
from daemon.summary import Summary
from daemon.worker import Worker
from storage import catalogue, moves, workqueue
from storage.names import safe_text, shown
from storage.paths import is_gone

log = logging.getLogger(__name__)


class Claimant:
    """This process as a queue worker: its ``workers`` row and the heartbeat that keeps
    its leases (every quarter of ``lease_seconds``). ``stop()`` gives its tracks back."""

    def __init__(self, engine: Engine, cfg: Config, kind: str = "worker") -> None:
        self.engine, self.lease_seconds = engine, cfg.lease_seconds
        self.paths = PathMap(cfg.paths)
        self.worker_id = workqueue.register_worker(engine, kind)
        self.model_version: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="lease-heartbeat")
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                workqueue.heartbeat(self.engine, self.worker_id, self.lease_seconds,
                                    self.model_version)
            except SQLAlchemyError as e:  # the database away: the leases may run out
                log.warning("heartbeat failed (leases run out in %.0f s): %s",
                            self.lease_seconds, e)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            workqueue.stop_worker(self.engine, self.worker_id)
        except SQLAlchemyError as e:
            log.warning("could not give back the claimed tracks (their leases run out): %s", e)


class ClaimingWorker(Worker):
    """A Worker whose ``process_pending`` claims its tracks (see the module docstring)."""

    def __init__(self, engine: Engine, classifier: Any, cfg: Config, *, claimant: Claimant,
                 remote: bool = False, **kwargs: Any) -> None:
        self.claimant, self.remote = claimant, remote
        self._held: dict[str, workqueue.Claim] = {}  # local path -> claim, this batch
        self.put_back = 0  # files this host could not read, given back
        self.lost = 0  # results dropped: the claim was no longer ours
        super().__init__(engine, classifier, cfg, **kwargs)
        claimant.model_version = classifier.version

    def register_model(self) -> None:
        if not self.remote:  # a worker host follows the catalogue's active model
            super().register_model()

    def process_pending(self, limit: int | None = None,
                        exclude: Iterable[str] = ()) -> Summary:
        claims = workqueue.claim(self.engine, self.claimant.worker_id,
                                 limit or 2 * self.workers, self.claimant.lease_seconds,
                                 exclude=exclude)
        self._held = {self.claimant.paths.local(c.path): c for c in claims}
        try:
            return self.process([Path(p) for p in self._held], force=True)
        finally:
            for held in self._held.values():  # stopped before getting to these
                workqueue.release(self.engine, held, self.claimant.worker_id)
            self._held = {}

    def _queue(self, path: Path, force: bool,
               summary: Summary) -> tuple[str, int, float, int] | None:
        local = str(path)
        held = self._held.get(local)
        if held is None:
            return super()._queue(path, force, summary)
        summary.scanned += 1
        try:
            size, mtime = catalogue.file_stat(local)
            if not os.access(local, os.R_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as e:
            self._unreadable(local, f"cannot read {local}: {e.strerror}", summary)
            self._tick()
            return None
        self._look_up(held.path, local, size, mtime)
        if held.size is not None and held.mtime is not None:
            size, mtime = held.size, held.mtime  # as queued: the daemon compares these
        return (local, size, mtime, 0)

    def _unreadable(self, local: str, reason: str, summary: Summary) -> None:
        held = self._held.pop(local)
        if self.remote:
            log.warning("%s; put back for another host", safe_text(reason))
            workqueue.put_back(self.engine, held, self.claimant.worker_id, reason)
            self.put_back += 1
        elif is_gone(local):
            summary.missing += int(moves.mark_missing(self.engine, held.path,
                                                          "file vanished"))
        else:
            workqueue.fail(self.engine, held, self.claimant.worker_id, reason, size=None,
                           mtime=None)
            summary.errors += 1

    def _record_failure(self, path: str, reason: str, size: int, mtime: float,
                        summary: Summary) -> None:
        if path not in self._held:
            super()._record_failure(path, reason, size, mtime, summary)
            return
        if not os.access(path, os.R_OK):  # gone or unreadable here since it was queued
            self._unreadable(path, f"cannot read {path}: {reason}", summary)
            return
        held = self._held.pop(path)
        log.warning("cannot classify %s: %s", shown(path), reason)
        try:
            failed = workqueue.fail(self.engine, held, self.claimant.worker_id, reason,
                                    size=size, mtime=mtime)
        except IntegrityError:
            self._held[path] = held  # given back with the batch (see _record_success)
            raise
        if failed:
            summary.errors += 1
        else:
            self._dropped(held)

    def _record_success(self, path: str, decoded: Decoded, prediction: Any, size: int,
                        mtime: float, summary: Summary) -> None:
        held = self._held.pop(path, None)
        if held is None:
            super()._record_success(path, decoded, prediction, size, mtime, summary)
            return
        if not self.remote and decoded.fingerprint:  # other paths mean nothing elsewhere
            old_path = moves.adopt_moved(self.engine, held.path, decoded.fingerprint)
            summary.moved += int(bool(old_path))
        try:
            recorded = workqueue.finish(self.engine, held, self.claimant.worker_id, prediction,
                                        fingerprint=decoded.fingerprint, size=size, mtime=mtime,
                                        multi=self.multi, titles=decoded.titles)
        except IntegrityError:
            # The catalogue refuses this row (Worker._record puts the track aside): the
            # claim goes back with the rest of the batch, so it can be tried again.
            self._held[path] = held
            raise
        if not recorded:
            self._dropped(held)
            return
        summary.classified += 1
        self._write_tags(held.path, summary)

    def _dropped(self, held: workqueue.Claim) -> None:
        self.lost += 1
        log.warning("%s: result dropped, the claim is no longer ours (lease expired and "
                    "another worker took it, or the file was queued again)", shown(held.path))
