"""The retrain job: fine-tune the active model on the user's labels, compare old and new on
the same held-out songs, promote only a model at least as accurate. Runs nightly from the
scheduler (``daemon.scheduler``) and on demand (``genred retrain --now``).

What the caller may rely on:

- Every attempt leaves one TrainingRun row: ``promoted``, ``rejected``, ``skipped`` (too
  few new labels, another retrain running) or ``failed`` (with the reason). A run killed
  half-way is marked ``failed`` ("interrupted") at the next daemon start.
- "New labels" are active corrections (user, tag, import) newer than the last run that
  trained (``TrainingRun.last_correction_id`` of the last promoted/rejected run), on tracks
  whose files are present.
- Held-out songs are chosen by a hash of the audio fingerprint, so the same song is held
  out every night (never trained on) whatever its path; each genre with two or more
  labelled songs has at least one held out.
- After a promotion, tracks whose current prediction came from another model and that
  carry no correction go back to ``pending``: the daemon's worker reclassifies them (and
  rewrites tags when tag writing is on).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, exists, func, select, update
from sqlalchemy.orm import Session

from daemon.config import Config
from storage.db import reading, writing
from storage.schema import MISSING, OK, PENDING, Correction, Prediction, Track, TrainingRun, utcnow

log = logging.getLogger(__name__)

PROMOTED, REJECTED, SKIPPED, FAILED, RUNNING = (
    "promoted", "rejected", "skipped", "failed", "running"
)
HOLDOUT_BUCKETS = 5  # 1 in 5 songs held out
ORIGINAL_SONGS_PER_GENRE = 30  # of the base model's own training collection, per night
ANCHOR_TRACKS = 100  # unlabelled library tracks that keep the base model's other genres
ANCHOR_CONFIDENCE = 0.8  # ... when the base was sure of them

Labelled = list[tuple[str, str]]
# (base bundle, training labels, held-out labels, out dir) -> the candidate bundle dir.
Trainer = Callable[[Path, Labelled, Labelled, Path], Path]


class RetrainBusy(Exception):
    """Another retrain holds the lock (the scheduler's, or a `retrain --now`)."""


@dataclass(frozen=True)
class Label:
    path: str
    genre: str
    correction_id: int
    fingerprint: str | None

    @property
    def holdout_key(self) -> str:
        return hashlib.sha256((self.fingerprint or self.path).encode()).hexdigest()


@dataclass
class RetrainOutcome:
    decision: str
    reason: str
    run_id: int
    base_model: str | None = None
    new_model: str | None = None
    old_accuracy: float | None = None
    new_accuracy: float | None = None
    n_labels: int = 0
    n_new_labels: int = 0
    requeued: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        text = f"{self.decision}: {self.reason}"
        if self.old_accuracy is not None and self.new_accuracy is not None:
            text += f" (held-out accuracy {self.old_accuracy:.3f} -> {self.new_accuracy:.3f})"
        return text


def present_labels(engine: Engine) -> list[Label]:
    """The active label of each track whose file is present, by path."""
    newest = (
        select(func.max(Correction.id)).where(Correction.active)
        .group_by(Correction.track_id).scalar_subquery()
    )
    with Session(reading(engine)) as s:
        rows = s.execute(
            select(Track.path, Correction.genre, Correction.id, Track.fingerprint)
            .join(Track).where(Correction.id.in_(newest), Track.status != MISSING)
            .order_by(Track.path)
        ).all()
    return [Label(p, g, int(c), fp) for p, g, c, fp in rows if os.path.isfile(p)]


def split_holdout(labels: list[Label]) -> tuple[list[Label], list[Label]]:
    """(train, holdout): a song is held out when its fingerprint hash falls in one bucket
    of five; a genre with ≥ 2 songs and none in that bucket gives its lowest-hash song."""
    by_genre: dict[str, list[Label]] = {}
    for label in labels:
        by_genre.setdefault(label.genre, []).append(label)
    train: list[Label] = []
    holdout: list[Label] = []
    for songs in by_genre.values():
        songs = sorted(songs, key=lambda x: x.holdout_key)
        held = [x for x in songs if int(x.holdout_key, 16) % HOLDOUT_BUCKETS == 0]
        if not held and len(songs) >= 2:
            held = songs[:1]
        if len(held) == len(songs) and len(songs) >= 2:
            held = held[:-1]
        holdout += held
        train += [x for x in songs if x not in held]
    return train, holdout


def last_trained_correction(engine: Engine) -> int:
    """Newest correction id a previous training run used (0 if none ever trained)."""
    with Session(reading(engine)) as s:
        value = s.scalar(
            select(func.max(TrainingRun.last_correction_id))
            .where(TrainingRun.decision.in_((PROMOTED, REJECTED)))
        )
    return int(value or 0)


def mark_interrupted(engine: Engine, store_root: Path | None = None) -> int:
    """Runs left ``running`` by a killed process become ``failed``; returns how many.
    With ``store_root``, nothing is marked while another process holds the retrain lock
    (a `genred retrain --now` in progress is not interrupted)."""
    if store_root is not None:
        try:
            with _retrain_lock(store_root):
                return mark_interrupted(engine)
        except RetrainBusy:
            return 0
    with Session(writing(engine)) as s, s.begin():
        result = s.execute(
            update(TrainingRun).where(TrainingRun.decision == RUNNING)
            .values(decision=FAILED, reason="interrupted (the process stopped mid-run)",
                    finished_at=utcnow())
        )
        return int(getattr(result, "rowcount", 0) or 0)


def _start_run(engine: Engine, trigger: str, base: str | None) -> int:
    with Session(writing(engine)) as s, s.begin():
        run = TrainingRun(trigger=trigger, base_model=base, decision=RUNNING)
        s.add(run)
        s.flush()
        return run.id


def _finish_run(engine: Engine, outcome: RetrainOutcome, last_correction_id: int | None) -> None:
    with Session(writing(engine)) as s, s.begin():
        run = s.get(TrainingRun, outcome.run_id)
        if run is None:
            return
        run.finished_at = utcnow()
        run.decision, run.reason = outcome.decision, outcome.reason
        run.base_model, run.new_model = outcome.base_model, outcome.new_model
        run.n_labels = outcome.n_labels
        run.old_accuracy, run.new_accuracy = outcome.old_accuracy, outcome.new_accuracy
        run.metrics = outcome.metrics
        run.last_correction_id = last_correction_id


def requeue_outdated(engine: Engine, version: str) -> int:
    """Uncorrected ``ok`` tracks whose current prediction is not from ``version`` go back
    to ``pending``; returns how many."""
    corrected = exists().where(Correction.track_id == Track.id, Correction.active)
    outdated = exists().where(
        Prediction.track_id == Track.id, Prediction.current, Prediction.model_version != version
    )
    with Session(writing(engine)) as s, s.begin():
        result = s.execute(
            update(Track).where(Track.status == OK, outdated, ~corrected)
            .values(status=PENDING).execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


@contextmanager
def _retrain_lock(store_root: Path) -> Iterator[None]:
    store_root.mkdir(parents=True, exist_ok=True)
    with (store_root / ".retrain.lock").open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise RetrainBusy("another retrain is running") from e
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_in_progress = threading.Event()


def in_progress() -> bool:
    """True while this process is running the job (the daemon checks it at shutdown)."""
    return _in_progress.is_set()


@contextmanager
def _running() -> Iterator[None]:
    _in_progress.set()
    try:
        yield
    finally:
        _in_progress.clear()


def _remove_stale_staging(store_root: Path) -> None:
    """Half-written bundles (``.NAME.part-*``) left by a run that was killed; safe to remove
    while holding the retrain lock."""
    for stale in store_root.glob(".*.part-*"):
        log.info("removing the unfinished model %s", stale)
        shutil.rmtree(stale, ignore_errors=True)


def original_training_data(store_root: Path, base: Path) -> Labelled:
    """(path, genre) from the genre-folder collection the base model — or its nearest
    ancestor — was trained on, when that folder still exists here; at most
    ORIGINAL_SONGS_PER_GENRE per genre (the same songs every night: lowest path hash)."""
    from classifier.bundle import BundleError, read_meta
    from classifier.dataset import DatasetError, scan
    from classifier.store import ModelNotFound, ModelStore

    store = ModelStore(store_root)
    path: Path | None = base
    for _ in range(32):  # parent chain; a cycle or a very long history ends the search
        if path is None:
            return []
        meta = read_meta(path)
        data_dir = meta.training.get("data_dir")
        if isinstance(data_dir, str) and Path(data_dir).is_dir():
            try:
                songs = scan(data_dir)
            except DatasetError:
                return []
            by_genre: dict[str, list[str]] = {}
            for song in sorted(songs, key=lambda x: hashlib.sha256(bytes(x.path)).hexdigest()):
                by_genre.setdefault(song.genre, []).append(str(song.path))
            return [(p, g) for g, paths in by_genre.items()
                    for p in paths[:ORIGINAL_SONGS_PER_GENRE]]
        try:
            path = store.resolve(meta.parent) if meta.parent else None
        except (ModelNotFound, BundleError):
            return []
    return []


def anchor_tracks(engine: Engine, genres: set[str], exclude: set[str],
                  limit: int = ANCHOR_TRACKS) -> list[str]:
    """Up to ``limit`` uncorrected library tracks (files present) that the current model
    put in one of ``genres`` with confidence >= ANCHOR_CONFIDENCE — the same ones every
    night (lowest path hash). Fine-tuning teaches the new model to answer on them as the
    base did, so genres without labels are not forgotten; unsure predictions are left out,
    so anchors do not hold back what the labels teach about similar songs."""
    corrected = exists().where(Correction.track_id == Track.id, Correction.active)
    with Session(reading(engine)) as s:
        paths = s.scalars(
            select(Track.path).join(Prediction, Prediction.track_id == Track.id)
            .where(Track.status == OK, ~corrected, Prediction.current,
                   Prediction.genre.in_(sorted(genres)),
                   Prediction.confidence >= ANCHOR_CONFIDENCE)
        ).all()
    ranked = sorted((p for p in paths if p not in exclude),
                    key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    return [p for p in ranked if os.path.isfile(p)][:limit]


def fine_tune_trainer(cfg: Config, engine: Engine | None = None) -> Trainer:
    """The real trainer: classifier.training.fine_tune with the config's epochs/cache, on
    the user's labels plus the model's own training collection where it is available.
    With ``engine``, a sample of the unlabelled library anchors the base model's genres
    that the labels do not cover."""

    def train(base: Path, labelled: Labelled, holdout: Labelled, out_dir: Path) -> Path:
        from classifier import training
        from classifier.bundle import read_meta

        taken = {p for p, _ in labelled} | {p for p, _ in holdout}
        original = [x for x in original_training_data(cfg.model_store_path, base)
                    if x[0] not in taken]
        if original:
            log.info("mixing in %d songs of the model's own training collection", len(original))
        meta = read_meta(base)
        covered = {g for _, g in labelled + original}
        anchors: list[str] = []
        uncovered = set(meta.labels) - covered
        if engine is not None and uncovered:
            anchors = anchor_tracks(engine, uncovered, taken)
            log.info("anchoring the base model's unlabelled genres on %d library tracks",
                     len(anchors))
        result = training.fine_tune(
            base, labelled + original, out_dir, holdout=holdout, epochs=cfg.retrain.epochs,
            cache_dir=cfg.cache_path, params=meta.params, anchors=anchors,
            progress=sys.stderr.isatty(),  # a bar for `retrain --now` on a terminal
        )
        return result.out_dir

    return train


def retrain(engine: Engine, cfg: Config, trigger: str = "cli",
            trainer: Trainer | None = None) -> RetrainOutcome:
    """Run the job once; never raises for a training problem (the run records it)."""
    from classifier.store import ModelStore

    store = ModelStore(cfg.model_store_path)
    try:
        with _retrain_lock(store.root), _running():
            _remove_stale_staging(store.root)
            trainer = trainer or fine_tune_trainer(cfg, engine)
            return _retrain_locked(engine, cfg, store, trigger, trainer)
    except RetrainBusy as e:
        outcome = RetrainOutcome(SKIPPED, str(e), _start_run(engine, trigger, None))
        _finish_run(engine, outcome, None)
        return outcome


def _retrain_locked(engine: Engine, cfg: Config, store: Any, trigger: str,
                    trainer: Trainer) -> RetrainOutcome:
    from classifier.bundle import BundleError, read_meta
    from classifier.store import ModelNotFound

    try:
        base_path: Path = store.resolve(cfg.model) if cfg.model else store.active()
        base_version = read_meta(base_path).version
    except (ModelNotFound, BundleError) as e:
        outcome = RetrainOutcome(FAILED, f"no usable base model: {e}",
                                 _start_run(engine, trigger, None))
        _finish_run(engine, outcome, None)
        return outcome
    outcome = RetrainOutcome(SKIPPED, "", _start_run(engine, trigger, base_version),
                             base_model=base_version)
    labels = present_labels(engine)
    since = last_trained_correction(engine)
    outcome.n_labels = len(labels)
    outcome.n_new_labels = sum(1 for x in labels if x.correction_id > since)
    newest = max((x.correction_id for x in labels), default=since)
    needed = max(1, cfg.retrain.min_new_labels)
    if outcome.n_new_labels < needed:
        outcome.reason = (f"{outcome.n_new_labels} new label(s) since the last training run; "
                          f"{needed} needed (retrain.min_new_labels)")
        _finish_run(engine, outcome, None)
        return outcome
    try:
        _train_and_decide(engine, store, base_path, labels, trainer, cfg, outcome)
    except Exception as e:  # the job's boundary: a failed run is recorded, never fatal
        if _caused_by_interrupt(e):  # a stop request that landed inside an import, say
            raise KeyboardInterrupt from e
        log.exception("retrain failed")
        outcome.decision, outcome.reason = FAILED, f"{type(e).__name__}: {e}".splitlines()[0]
        _finish_run(engine, outcome, None)
        return outcome
    _finish_run(engine, outcome, newest)
    return outcome


def _caused_by_interrupt(error: BaseException) -> bool:
    seen: BaseException | None = error
    for _ in range(16):  # a cause chain, bounded
        if seen is None:
            return False
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _accuracy(bundle: Path, holdout: Labelled, cfg: Config) -> tuple[float, dict[str, Any]]:
    from classifier import training

    report = training.evaluate(bundle, holdout, clips_per_track=cfg.clips_per_track,
                               cache_dir=cfg.cache_path)
    return float(report["accuracy"]), report


def _train_and_decide(engine: Engine, store: Any, base_path: Path, labels: list[Label],
                      trainer: Trainer, cfg: Config, outcome: RetrainOutcome) -> None:
    from classifier.bundle import read_meta
    from storage.catalogue import register_model

    train, held = split_holdout(labels)
    holdout = [(x.path, x.genre) for x in held]
    basis = "held-out songs"
    if not holdout:  # too few labels per genre to hold any out: compare on what we have
        holdout, basis = [(x.path, x.genre) for x in labels], "the training labels (too few "
        basis += "labels per genre to hold songs out)"
    candidate = trainer(base_path, [(x.path, x.genre) for x in train], holdout,
                        store.new_version_dir())
    meta = read_meta(candidate)
    outcome.new_model = meta.version
    outcome.old_accuracy, old_report = _accuracy(base_path, holdout, cfg)
    outcome.new_accuracy, new_report = _accuracy(candidate, holdout, cfg)
    outcome.metrics = {"old": old_report, "new": new_report, "n_train": len(train),
                       "n_holdout": len(holdout), "compared_on": basis}
    if outcome.new_accuracy + 1e-9 < outcome.old_accuracy:
        outcome.decision = REJECTED
        outcome.reason = (f"new model less accurate on {len(holdout)} {basis}; "
                          f"kept {outcome.base_model}")
        shutil.rmtree(candidate, ignore_errors=True)
        return
    base_meta = read_meta(base_path)
    register_model(engine, base_meta.version, base_path, base_meta.labels,
                   metrics=base_meta.metrics, parent=base_meta.parent, active=False)
    # Queue first, then switch: a running daemon reloads on the switch (and requeues by
    # itself too), so the count reported here is the real one.
    outcome.requeued = requeue_outdated(engine, meta.version)
    register_model(engine, meta.version, candidate, meta.labels, metrics=new_report,
                   parent=base_meta.version, active=True)
    store.activate(meta.version)
    outcome.decision = PROMOTED
    outcome.reason = f"new model at least as accurate on {len(holdout)} {basis}"
    if cfg.model:
        log.warning("config 'model' pins %s: the promoted %s is active in the store but "
                    "the daemon keeps using the pinned model", cfg.model, meta.version)
