"""The work queue following the model in use: what a model switch queues and unqueues.

When a model becomes active (``genred models activate``, a promoted retrain, the daemon
loading the catalogue's active model), every uncorrected track another model classified is
queued again, and a track queued only by an earlier switch whose current answer already
comes from the new model is taken off the queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, exists, select, update
from sqlalchemy.orm import Session

from storage.catalogue import file_stat
from storage.db import reading, writing
from storage.schema import OK, PENDING, Correction, Prediction, Track


@dataclass(frozen=True)
class Requeue:
    """What ``requeue_for_model`` did."""

    queued: int  # ok tracks whose current prediction is from another model, now pending
    unqueued: int  # pending tracks this model had already classified, back to ok


def requeue_for_model(engine: Engine, version: str) -> Requeue:
    """Make the queue match model ``version`` (just activated, or just loaded by the
    daemon): uncorrected ``ok`` tracks whose current prediction comes from another model
    are queued, and queued tracks whose current prediction already comes from ``version``
    are taken off the queue when nothing else queued them (see ``_classified_by``), so
    switching A -> B -> A does not leave A's own answers waiting to be redone."""
    corrected = exists().where(Correction.track_id == Track.id, Correction.active)
    outdated = exists().where(
        Prediction.track_id == Track.id, Prediction.current, Prediction.model_version != version
    )
    with Session(writing(engine)) as s, s.begin():
        result = s.execute(
            update(Track).where(Track.status == OK, outdated, ~corrected)
            .values(status=PENDING).execution_options(synchronize_session=False)
        )
        queued = int(getattr(result, "rowcount", 0) or 0)
    return Requeue(queued, _unqueue_classified_by(engine, version))


def _classified_by(version: str) -> Any:
    """SQL condition: the track is pending, its current prediction is from ``version``, and
    nothing has looked at the file since that prediction was recorded. ``record_prediction``
    sets ``last_seen`` just before the prediction row gets its ``created_at``; every other
    way into the queue that may mean new bytes (``mark_pending`` by a scan, the watcher or
    the worker itself; ``adopt_moved``) moves ``last_seen`` past it. Only a model requeue,
    which changes nothing but the status, leaves it behind."""
    made = (select(Prediction.created_at)
            .where(Prediction.track_id == Track.id, Prediction.current,
                   Prediction.model_version == version)
            .order_by(Prediction.id.desc()).limit(1).scalar_subquery())
    return (Track.status == PENDING) & (Track.last_seen <= made)


def _unqueue_classified_by(engine: Engine, version: str) -> int:
    """Pending tracks ``_classified_by(version)`` whose file still has the size and mtime
    recorded with that prediction go back to ``ok``; returns how many. The files are
    statted outside any transaction; the update re-checks every condition, so a track a
    daemon queued or picked up meanwhile is left alone."""
    with Session(reading(engine)) as s:
        rows = s.execute(select(Track.id, Track.path, Track.size, Track.mtime)
                         .where(_classified_by(version))).all()
    still: list[tuple[int, int, float | None]] = []
    for track_id, path, size, mtime in rows:
        try:
            if size is not None and file_stat(path) == (size, mtime):
                still.append((track_id, size, mtime))
        except OSError:
            continue  # gone or unreadable: the worker will say so
    unqueued = 0
    for start in range(0, len(still), 500):
        chunk = still[start:start + 500]
        with Session(writing(engine)) as s, s.begin():
            for track_id, size, mtime in chunk:
                result = s.execute(
                    update(Track).where(Track.id == track_id, Track.size == size,
                                        Track.mtime == mtime, _classified_by(version))
                    .values(status=OK, error=None)
                    .execution_options(synchronize_session=False))
                unqueued += int(getattr(result, "rowcount", 0) or 0)
    return unqueued
