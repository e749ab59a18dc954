"""The catalogue side of the retrain job: the labels it trains on, the anchors it keeps the
old model's genres with, and the TrainingRun rows it leaves (``daemon.retrain``). Also what
`genred status` reads of them.

Decisions are plain strings (``PROMOTED`` ...); a run left ``running`` by a killed process
is turned into ``failed`` by :func:`mark_interrupted`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, exists, func, select, update
from sqlalchemy.orm import Session

from storage.db import reading, writing
from storage.schema import MISSING, OK, PENDING, Correction, Prediction, Track, TrainingRun, utcnow

PROMOTED, REJECTED, SKIPPED, FAILED, RUNNING = (
    "promoted", "rejected", "skipped", "failed", "running"
)


@dataclass(frozen=True)
class LabelRow:
    path: str
    genre: str  # the main genre
    correction_id: int
    fingerprint: str | None
    also: tuple[str, ...] = ()  # the label's other genres, in order


def label_rows(engine: Engine) -> list[LabelRow]:
    """The active label of each track not catalogued as missing, by path (files are not
    checked here)."""
    newest = (
        select(func.max(Correction.id)).where(Correction.active)
        .group_by(Correction.track_id).scalar_subquery()
    )
    with Session(reading(engine)) as s:
        rows = s.execute(
            select(Track.path, Correction.genre, Correction.id, Track.fingerprint,
                   Correction.genres)
            .join(Track).where(Correction.id.in_(newest), Track.status != MISSING)
            .order_by(Track.path)
        ).all()
    return [LabelRow(p, g, int(c), fp, tuple(str(x) for x in (gs or [])[1:]))
            for p, g, c, fp, gs in rows]


def anchor_rows(engine: Engine, genres: set[str], min_confidence: float
                ) -> list[tuple[str, str, str | None]]:
    """(path, genre, fingerprint) of uncorrected ``ok``/``pending`` tracks whose current
    prediction is one of ``genres`` with at least ``min_confidence``."""
    corrected = exists().where(Correction.track_id == Track.id, Correction.active)
    with Session(reading(engine)) as s:
        rows = s.execute(
            select(Track.path, Prediction.genre, Track.fingerprint)
            .join(Prediction, Prediction.track_id == Track.id)
            .where(Track.status.in_((OK, PENDING)), ~corrected, Prediction.current,
                   Prediction.genre.in_(sorted(genres)),
                   Prediction.confidence >= min_confidence)
        ).all()
    return [(p, g, fp) for p, g, fp in rows]


def last_trained_correction(engine: Engine) -> int:
    """Newest correction id a previous training run used (0 if none ever trained)."""
    with Session(reading(engine)) as s:
        value = s.scalar(
            select(func.max(TrainingRun.last_correction_id))
            .where(TrainingRun.decision.in_((PROMOTED, REJECTED)))
        )
    return int(value or 0)


def mark_running_failed(engine: Engine, reason: str) -> int:
    """Runs still ``running`` become ``failed`` with ``reason``; returns how many."""
    with Session(writing(engine)) as s, s.begin():
        result = s.execute(
            update(TrainingRun).where(TrainingRun.decision == RUNNING)
            .values(decision=FAILED, reason=reason, finished_at=utcnow())
        )
        return int(getattr(result, "rowcount", 0) or 0)


def mark_run_failed(engine: Engine, run_id: int, reason: str) -> bool:
    """Run ``run_id``, if still ``running``, becomes ``failed`` with ``reason``."""
    with Session(writing(engine)) as s, s.begin():
        result = s.execute(
            update(TrainingRun).where(TrainingRun.id == run_id,
                                      TrainingRun.decision == RUNNING)
            .values(decision=FAILED, reason=reason, finished_at=utcnow())
        )
        return bool(getattr(result, "rowcount", 0))


def start_run(engine: Engine, trigger: str, base: str | None) -> int:
    with Session(writing(engine)) as s, s.begin():
        run = TrainingRun(trigger=trigger, base_model=base, decision=RUNNING)
        s.add(run)
        s.flush()
        return run.id


def finish_run(engine: Engine, run_id: int, values: dict[str, Any]) -> None:
    """Set the run's fields from ``values`` (TrainingRun attribute names) and its end."""
    with Session(writing(engine)) as s, s.begin():
        run = s.get(TrainingRun, run_id)
        if run is None:
            return
        run.finished_at = utcnow()
        for key, value in values.items():
            setattr(run, key, value)


def run_record(engine: Engine, run_id: int | None = None) -> dict[str, Any] | None:
    """One run as plain data (the newest when ``run_id`` is None)."""
    with Session(reading(engine)) as s:
        if run_id is None:
            run = s.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(1)).first()
        else:
            run = s.get(TrainingRun, run_id)
        if run is None:
            return None
        return {"id": run.id, "decision": run.decision, "reason": run.reason,
                "trigger": run.trigger,
                "started_at": run.started_at.isoformat() if run.started_at else None,
                "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                "base_model": run.base_model, "new_model": run.new_model,
                "n_labels": run.n_labels, "old_accuracy": run.old_accuracy,
                "new_accuracy": run.new_accuracy, "metrics": dict(run.metrics or {})}
