"""What a worker does with one decoded file: the model's answer, recorded.

A decoded file becomes an ``ok`` track with its prediction (a moved file first takes
over its old track, history and all), an ``error`` with a one-line reason (unreadable,
unclassifiable: "too short to classify", "silent"), or ``missing`` when the file is gone;
then the tag policy applies. A row the catalogue refuses (an IntegrityError) leaves the
track queued and the run goes on. :class:`Recording` is the half of
:class:`daemon.worker.Worker` that does this; ``ClaimingWorker`` (daemon/queue_worker.py)
overrides the recording of failures and successes to go through its claims.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from classifier.audio import AudioInfo
from classifier.bundle import BundleError
from classifier.predict import Classifier, Prediction, Unclassifiable
from daemon.config import Config
from daemon.decoding import Decoded
from daemon.summary import Summary
from daemon.worker_embeddings import StoredEmbeddings
from storage import catalogue, moves
from storage.genres import MultiGenre
from storage.names import shown
from storage.paths import is_gone
from storage.tagging import TagOutcome, TagPolicy, write_track

log = logging.getLogger(__name__)


class Recording:
    """Records decoded files; the Worker sets these attributes."""

    engine: Engine
    classifier: Classifier
    cfg: Config
    tag_policy: TagPolicy | None
    on_tag: Callable[[TagOutcome], None] | None
    embeddings: StoredEmbeddings | None
    _refused: set[str]  # paths whose integrity error was logged
    _gone_now: set[str]  # marked missing by this scan (moves are found later)

    def _record(self, decoded: Decoded, job: tuple[str, int, float, int], summary: Summary) -> None:
        from sqlalchemy.exc import IntegrityError

        try:
            self._record_one(decoded, job, summary)
        except IntegrityError as e:
            # This row, not the catalogue: leave the track as it is and go on.
            path = job[0]
            if path not in self._refused:
                log.error("the catalogue refused to record %s (%s); it stays queued and is "
                          "tried again later — check the catalogue's triggers/constraints",
                          path, e.orig)
            self._refused.add(path)
            summary.deferred.append(path)
            return
        if job[0] in self._refused:
            self._refused.discard(job[0])
        summary.done_paths.append(job[0])

    def _record_one(self, decoded: Decoded, job: tuple[str, int, float, int],
                    summary: Summary) -> None:
        path, size, mtime = job[0], job[1], job[2]
        if decoded.stored:
            summary.from_embeddings += 1
        else:
            summary.decoded += 1
        if decoded.unclassifiable is not None:  # judged where it was decoded
            self._record_unclassifiable(path, decoded.unclassifiable, size, mtime, summary)
            return
        if decoded.error is not None or decoded.info is None or (
                decoded.features is None and decoded.embedding is None):
            self._record_failure(path, decoded.error or "no audio", size, mtime, summary)
            return
        try:
            prediction = self._predict(decoded, decoded.info)
        except BundleError:
            raise  # the model itself is unusable: no file will classify
        except Unclassifiable as e:  # "too short to classify: 1.0 s", "silent"
            self._record_unclassifiable(path, str(e), size, mtime, summary)
            return
        except Exception as e:
            self._record_failure(path, f"{type(e).__name__}: {e}", size, mtime, summary)
            return
        self._record_success(path, decoded, prediction, size, mtime, summary)

    def _predict(self, decoded: Decoded, info: AudioInfo) -> Prediction:
        """The model's answer; a backbone model's from the track's embedding, which is
        stored for the next model (see daemon/worker_embeddings.py)."""
        if decoded.embedding is None:
            assert decoded.features is not None
            return self.classifier.predict_features(info, decoded.features)
        if not decoded.stored and self.embeddings is not None:
            self.embeddings.keep(decoded.fingerprint, decoded.embedding)
        return self.classifier.predict_embedding(decoded.embedding, info.duration, info.format)

    def _record_unclassifiable(self, path: str, reason: str, size: int, mtime: float,
                               summary: Summary) -> None:
        log.info("not classified: %s: %s", path, reason)
        catalogue.record_error(self.engine, path, reason, size, mtime)
        summary.errors += 1

    def _record_failure(self, path: str, reason: str, size: int, mtime: float,
                        summary: Summary) -> None:
        """The file could not be classified: ``missing`` if it is gone, else ``error``."""
        if is_gone(path):
            summary.missing += int(moves.mark_missing(self.engine, path, "file vanished"))
            return
        log.warning("cannot classify %s: %s", shown(path), reason)
        catalogue.record_error(self.engine, path, reason, size, mtime)
        summary.errors += 1

    def _record_success(self, path: str, decoded: Decoded, prediction: Any, size: int,
                        mtime: float, summary: Summary) -> None:
        """Store ``prediction`` (a moved file first takes over its old track)."""
        old_path = decoded.fingerprint and moves.adopt_moved(
            self.engine, path, decoded.fingerprint)
        if old_path:
            summary.moved += 1
            if old_path in self._gone_now:  # counted missing earlier in this scan
                summary.missing -= 1
                self._gone_now.discard(old_path)
        catalogue.record_prediction(
            self.engine, path, prediction, fingerprint=decoded.fingerprint, size=size,
            mtime=mtime, multi=self.multi, titles=decoded.titles)
        summary.classified += 1
        self._write_tags(path, summary)

    @property
    def multi(self) -> MultiGenre:
        """How many genres an answer holds (config ``max_genres``, ``secondary_threshold``)
        and the genre tree it is read through."""
        return MultiGenre(self.cfg.max_genres, self.cfg.secondary_threshold, self.cfg.tree)

    def _write_tags(self, path: str, summary: Summary) -> None:
        if self.tag_policy is None:
            return
        try:
            outcome = write_track(self.engine, path, self.tag_policy)
        except OSError as e:  # a full or failing music disk: this file's tag, not the run
            log.warning("could not write the genre tag of %s: %s; it is classified, and "
                        "`genred tags write` writes it once the disk is fixed", path, e)
            summary.tags["failed"] = summary.tags.get("failed", 0) + 1
            return
        summary.tags[outcome.action] = summary.tags.get(outcome.action, 0) + 1
        if self.on_tag is not None:
            self.on_tag(outcome)
