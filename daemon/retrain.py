"""The retrain job: fine-tune the active model on the user's labels, compare old and new on
the same held-out songs, promote only a model at least as accurate that has not forgotten
the genres the labels do not cover. Runs nightly from the scheduler (``daemon.scheduler``)
and on demand (``genred retrain --now``).

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
- Anchors (uncorrected library tracks the old model was sure of, in genres no label
  covers) are held out the same way: the same hash bucket, so a held-out anchor that the
  user later corrects becomes a held-out label, never a training song. On the held-out
  anchors the job measures how often the new model gives the old model's answer
  (:func:`judge_agreement`); labelled songs cannot show that forgetting. A model is
  promoted only when it is at least as accurate on held-out labels AND agrees enough on
  held-out anchors; with no (or too few) anchors the second check is skipped and the run
  says so. The figures are in ``RetrainOutcome.anchor_check``, the run's ``metrics``
  (``anchor_check``) and a promoted model's ``model.json`` metrics.
- After a promotion, tracks whose current prediction came from another model and that
  carry no correction go back to ``pending``: the daemon's worker reclassifies them (and
  rewrites tags when tag writing is on).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, exists, func, select, update
from sqlalchemy.orm import Session

from daemon.config import Config
from storage import catalogue
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
HELD_ANCHORS_PER_GENRE = 10  # held-out anchors checked per genre (decoding costs time)
# Promotion also needs the new model to give the old one's answer on held-out anchors:
# overall, and in each genre with enough of them. Candidates for [retrain] config keys.
MIN_ANCHOR_AGREEMENT = 0.9
MIN_GENRE_AGREEMENT = 0.7
MIN_ANCHORS_TO_JUDGE = 5  # fewer held-out anchors (overall / in a genre): not judged
CHANGED_LISTED = 20  # anchors whose answer changed, listed in the run's metrics

Labelled = list[tuple[str, str]]


@dataclass(frozen=True)
class TrainingSet:
    """What the job hands a trainer. ``labelled``: labels to train on; ``original``: songs
    of the base model's own training collection to mix in; ``anchors``: (path, the base
    model's genre) of library tracks to distil the base on. ``holdout`` and
    ``held_anchors`` must never be trained on: the job judges the candidate on them."""

    labelled: Labelled
    holdout: Labelled
    original: Labelled = field(default_factory=list)
    anchors: Labelled = field(default_factory=list)
    held_anchors: Labelled = field(default_factory=list)


# (base bundle, what to train on and what to leave out, out dir) -> the candidate bundle dir.
Trainer = Callable[[Path, TrainingSet, Path], Path]


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


@dataclass(frozen=True)
class Anchor:
    """An uncorrected library track the model that classified it was sure of."""

    path: str
    genre: str
    fingerprint: str | None

    @property
    def holdout_key(self) -> str:
        return hashlib.sha256((self.fingerprint or self.path).encode()).hexdigest()


@dataclass
class AnchorCheck:
    """How often the new model gave the old model's answer on held-out anchors.
    ``status``: passed | failed | skipped; ``reason``: one line for the run record;
    ``per_genre``: genre -> [agreed, anchors]; ``unsure``: held-out anchors left out
    because the old model, asked again, was no longer sure of the genre they were chosen for;
    ``changed``: {path, old, new} of some anchors whose answer changed."""

    status: str
    reason: str
    per_genre: dict[str, list[int]] = field(default_factory=dict)
    unsure: int = 0
    changed: list[dict[str, str]] = field(default_factory=list)

    @property
    def anchors(self) -> int:
        return sum(n for _, n in self.per_genre.values())

    @property
    def agreed(self) -> int:
        return sum(k for k, _ in self.per_genre.values())

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.anchors if self.anchors else None

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status, "reason": self.reason, "agreement": self.agreement,
            "anchors": self.anchors, "agreed": self.agreed, "unsure": self.unsure,
            "per_genre": {g: {"anchors": n, "agreed": k, "agreement": k / n}
                          for g, (k, n) in sorted(self.per_genre.items()) if n},
            "thresholds": {"overall": MIN_ANCHOR_AGREEMENT, "genre": MIN_GENRE_AGREEMENT,
                           "min_anchors": MIN_ANCHORS_TO_JUDGE},
            "changed": self.changed,
        }


def judge_agreement(per_genre: dict[str, list[int]], unsure: int = 0) -> AnchorCheck:
    """Pass or fail a candidate on its agreement with the old model on held-out anchors
    (genre -> [agreed, anchors]). Fewer than MIN_ANCHORS_TO_JUDGE anchors in all: skipped
    (a handful of tracks would let one legitimately changed answer block every night);
    else failed when the overall agreement is below MIN_ANCHOR_AGREEMENT (and more than one
    answer changed: with few anchors, one changed answer is no evidence of forgetting) or a
    genre with at least MIN_ANCHORS_TO_JUDGE anchors is below MIN_GENRE_AGREEMENT."""
    check = AnchorCheck("passed", "", {g: list(v) for g, v in per_genre.items()}, unsure)
    n, agreed = check.anchors, check.agreed
    if n == 0:
        check.status = "skipped"
        check.reason = (f"anchor check skipped: asked again, the old model was sure of none "
                        f"of the {unsure} held-out anchor track(s)")
        return check
    if n < MIN_ANCHORS_TO_JUDGE:
        check.status = "skipped"
        check.reason = (f"anchor check skipped: only {n} held-out anchor track(s) "
                        f"({MIN_ANCHORS_TO_JUDGE} needed); agreement {agreed}/{n}")
        return check
    failures = []
    if agreed / n + 1e-9 < MIN_ANCHOR_AGREEMENT and n - agreed > 1:
        failures.append(f"agrees with the old model on only {agreed}/{n} held-out anchor "
                        f"tracks ({agreed / n:.3f}, needs {MIN_ANCHOR_AGREEMENT:.2f})")
    weak = [f"{g} {k}/{m}" for g, (k, m) in sorted(check.per_genre.items())
            if m >= MIN_ANCHORS_TO_JUDGE and k / m + 1e-9 < MIN_GENRE_AGREEMENT]
    if weak:
        failures.append(f"{', '.join(weak)} (each genre needs {MIN_GENRE_AGREEMENT:.2f})")
    if failures:
        worst = sorted((k / m, g, k, m) for g, (k, m) in check.per_genre.items() if m and k < m)
        failures.append("answers changed most in " + ", ".join(
            f"{g} {k}/{m}" for _, g, k, m in worst[:6]))
        check.status = "failed"
        check.reason = "forgets genres without labels: " + "; ".join(failures)
    else:
        check.reason = f"agrees with the old model on {agreed}/{n} held-out anchor tracks"
    return check


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
    # How often the new model gave the old one's answer on held-out anchors (None: not
    # measured), and the whole check (AnchorCheck.as_json; empty when no model was trained).
    anchor_agreement: float | None = None
    anchor_check: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: the decision, its reason, the accuracies and, when it was measured,
        the agreement with the old model on held-out anchors per genre."""
        text = f"{self.decision}: {self.reason}"
        figures = []
        if self.old_accuracy is not None and self.new_accuracy is not None:
            figures.append(f"held-out accuracy {self.old_accuracy:.3f} -> {self.new_accuracy:.3f}")
        per_genre = self.anchor_check.get("per_genre") or {}
        if per_genre:
            figures.append("anchor agreement " + ", ".join(
                f"{g} {v['agreed']}/{v['anchors']}" for g, v in per_genre.items()))
        return text + (f" ({'; '.join(figures)})" if figures else "")


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
    """After promoting ``version``: queue the uncorrected ``ok`` tracks another model
    predicted (catalogue.requeue_for_model); returns how many."""
    return catalogue.requeue_for_model(engine, version).queued


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


def anchor_candidates(engine: Engine, genres: set[str], exclude: set[str]) -> list[Anchor]:
    """Uncorrected tracks (not in ``exclude``) whose current prediction put them in one of
    ``genres`` with confidence >= ANCHOR_CONFIDENCE, in a fixed order (fingerprint hash),
    so the same ones are chosen every night. Tracks queued again after a model switch keep
    their current prediction and still count (a `retrain --now` right after a promotion
    must not lose its anchors); the base model is what the new one learns from and is
    compared with on them, so an older model's answer only chooses them. Files are not
    checked here."""
    corrected = exists().where(Correction.track_id == Track.id, Correction.active)
    with Session(reading(engine)) as s:
        rows = s.execute(
            select(Track.path, Prediction.genre, Track.fingerprint)
            .join(Prediction, Prediction.track_id == Track.id)
            .where(Track.status.in_((OK, PENDING)), ~corrected, Prediction.current,
                   Prediction.genre.in_(sorted(genres)),
                   Prediction.confidence >= ANCHOR_CONFIDENCE)
        ).all()
    anchors = [Anchor(p, g, fp) for p, g, fp in rows if p not in exclude]
    return sorted(anchors, key=lambda a: a.holdout_key)


def split_anchors(candidates: list[Anchor]) -> tuple[list[Anchor], list[Anchor]]:
    """(train pool, held out) with the labels' rule: a track is held out when its hash
    falls in the held-out bucket; a genre with ≥ 2 candidates and none there gives its
    lowest-hash one. At most HELD_ANCHORS_PER_GENRE held-out tracks per genre are kept
    (files present); the rest of the bucket is left out of training all the same. The
    train pool keeps the candidates' order and is not checked for files."""
    by_genre: dict[str, list[Anchor]] = {}
    for anchor in candidates:
        by_genre.setdefault(anchor.genre, []).append(anchor)
    held_out: set[Anchor] = set()
    kept: list[Anchor] = []
    for tracks in by_genre.values():
        bucket = [a for a in tracks if int(a.holdout_key, 16) % HOLDOUT_BUCKETS == 0]
        if not bucket and len(tracks) >= 2:
            bucket = tracks[:1]
        held_out.update(bucket)
        kept += _present(bucket, HELD_ANCHORS_PER_GENRE)
    return [a for a in candidates if a not in held_out], kept


def _present(anchors: Iterable[Anchor], limit: int) -> list[Anchor]:
    """The first ``limit`` anchors whose files exist (checking no more files than that)."""
    out: list[Anchor] = []
    for anchor in anchors:
        if len(out) >= limit:
            break
        if os.path.isfile(anchor.path):
            out.append(anchor)
    return out


def training_set(engine: Engine, store_root: Path, base: Path, train: list[Label],
                 holdout: Labelled) -> TrainingSet:
    """The night's data: the labels, up to ORIGINAL_SONGS_PER_GENRE songs per genre of the
    base model's own training collection, and anchors in the base's genres no label
    covers — up to ANCHOR_TRACKS for training (only in genres the collection does not
    cover either) and the held-out ones that judge the candidate."""
    from classifier.bundle import read_meta

    labelled = [(x.path, x.genre) for x in train]
    taken = {p for p, _ in labelled} | {p for p, _ in holdout}
    original = [x for x in original_training_data(store_root, base) if x[0] not in taken]
    if original:
        log.info("mixing in %d songs of the model's own training collection", len(original))
    unlabelled = set(read_meta(base).labels) - {g for _, g in labelled + holdout}
    if not unlabelled:
        return TrainingSet(labelled, holdout, original)
    candidates = anchor_candidates(engine, unlabelled, taken | {p for p, _ in original})
    pool, held = split_anchors(candidates)
    in_collection = {g for _, g in original}
    anchors = _present((a for a in pool if a.genre not in in_collection), ANCHOR_TRACKS)
    log.info("anchoring the base model's unlabelled genres on %d library tracks "
             "(%d more held out to check them)", len(anchors), len(held))
    return TrainingSet(labelled, holdout, original, [(a.path, a.genre) for a in anchors],
                       [(a.path, a.genre) for a in held])


def fine_tune_trainer(cfg: Config) -> Trainer:
    """The real trainer: classifier.training.fine_tune with the config's epochs/cache, on
    the labels plus the base model's own training collection, distilling the base on the
    anchors."""

    def train(base: Path, data: TrainingSet, out_dir: Path) -> Path:
        from classifier import training
        from classifier.bundle import read_meta

        result = training.fine_tune(
            base, data.labelled + data.original, out_dir, holdout=data.holdout,
            epochs=cfg.retrain.epochs, cache_dir=cfg.cache_path,
            params=read_meta(base).params, anchors=[p for p, _ in data.anchors],
            workers=cfg.workers or None,  # the config's decode processes (0: the default)
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
            trainer = trainer or fine_tune_trainer(cfg)
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
                               cache_dir=cfg.cache_path, workers=cfg.workers or None)
    return float(report["accuracy"]), report


def check_anchors(base: Path, candidate: Path, held: Labelled, cfg: Config) -> AnchorCheck:
    """Ask the old and the new model about each held-out anchor (path, genre it was chosen
    for), on the same clips as in real use, and judge the agreement
    (:func:`judge_agreement`). An anchor counts when the old model, asked again, still
    gives the genre it was chosen for with confidence >= ANCHOR_CONFIDENCE (the catalogue's
    prediction may come from an older model or other clips); that answer is the one the
    new model should keep."""
    from classifier.predict import Classifier

    if not held:
        return AnchorCheck("skipped", "anchor check skipped: no anchor tracks (no uncorrected "
                           "library track the old model is sure of in a genre without labels)")
    old = Classifier.load(base, clips_per_track=cfg.clips_per_track)
    new = Classifier.load(candidate, clips_per_track=cfg.clips_per_track)
    old_feats = _anchor_features(old.params, held, cfg)
    new_feats = old_feats if new.params == old.params else _anchor_features(
        new.params, held, cfg)
    per_genre: dict[str, list[int]] = {}
    unsure = 0
    changed: list[dict[str, str]] = []
    for path, chosen_as in held:
        if path not in old_feats or path not in new_feats:
            continue  # unreadable now; Extractor logged it
        probs = old.probabilities(old_feats[path]).mean(axis=0)
        was = old.labels[int(probs.argmax())]
        if probs.max() < ANCHOR_CONFIDENCE or was != chosen_as:
            unsure += 1
            continue
        now = new.labels[int(new.probabilities(new_feats[path]).mean(axis=0).argmax())]
        counts = per_genre.setdefault(was, [0, 0])
        counts[0] += now == was
        counts[1] += 1
        if now != was and len(changed) < CHANGED_LISTED:
            changed.append({"path": path, "old": was, "new": now})
    check = judge_agreement(per_genre, unsure)
    check.changed = changed
    return check


def _anchor_features(params: Any, held: Labelled, cfg: Config) -> dict[str, Any]:
    """path -> (K, n_mels, frames) spread-clip features, through the feature cache."""
    from classifier.dataset import Song
    from classifier.extract import Extractor

    extractor = Extractor(params, cfg.cache_path, progress=False, workers=cfg.workers or None)
    songs, feats = extractor.many([Song(Path(p), g, "anchor") for p, g in held],
                                  cfg.clips_per_track, None, "anchor check")
    return {str(song.path): f for song, f in zip(songs, feats, strict=True)}


def _note_in_bundle(bundle: Path, key: str, value: Any) -> None:
    """Add ``metrics[key]`` to a bundle's model.json (atomically; every other field kept as
    written), so `genred models show` shows how the model was judged."""
    from classifier.bundle import META_FILE

    data = json.loads((bundle / META_FILE).read_text(encoding="utf-8"))
    data["metrics"] = {**(data.get("metrics") or {}), key: value}
    tmp = bundle / f".{META_FILE}.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, bundle / META_FILE)


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
    data = training_set(engine, store.root, base_path, train, holdout)
    candidate = trainer(base_path, data, store.new_version_dir())
    meta = read_meta(candidate)
    outcome.new_model = meta.version
    outcome.old_accuracy, old_report = _accuracy(base_path, holdout, cfg)
    outcome.new_accuracy, new_report = _accuracy(candidate, holdout, cfg)
    anchors = check_anchors(base_path, candidate, data.held_anchors, cfg)
    outcome.anchor_agreement, outcome.anchor_check = anchors.agreement, anchors.as_json()
    outcome.metrics = {"old": old_report, "new": new_report, "n_train": len(train),
                       "n_holdout": len(holdout), "compared_on": basis,
                       "n_anchors": len(data.anchors), "anchor_check": outcome.anchor_check}
    refusals = []
    if outcome.new_accuracy + 1e-9 < outcome.old_accuracy:
        refusals.append(f"new model less accurate on {len(holdout)} {basis}")
    if anchors.status == "failed":
        refusals.append(f"new model {anchors.reason}")
    if refusals:
        outcome.decision = REJECTED
        outcome.reason = "; ".join(refusals) + f"; kept {outcome.base_model}"
        shutil.rmtree(candidate, ignore_errors=True)
        return
    headline = {k: v for k, v in outcome.anchor_check.items() if k != "changed"}
    _note_in_bundle(candidate, "anchor_check", headline)
    base_meta = read_meta(base_path)
    register_model(engine, base_meta.version, base_path, base_meta.labels,
                   metrics=base_meta.metrics, parent=base_meta.parent, active=False)
    # Queue first, then switch: a running daemon reloads on the switch (and requeues by
    # itself too), so the count reported here is the real one.
    outcome.requeued = requeue_outdated(engine, meta.version)
    register_model(engine, meta.version, candidate, meta.labels,
                   metrics={**new_report, "anchor_check": headline},
                   parent=base_meta.version, active=True)
    store.activate(meta.version)
    outcome.decision = PROMOTED
    outcome.reason = f"new model at least as accurate on {len(holdout)} {basis}; "
    outcome.reason += anchors.reason if anchors.status == "skipped" else f"it {anchors.reason}"
    if cfg.model:
        log.warning("config 'model' pins %s: the promoted %s is active in the store but "
                    "the daemon keeps using the pinned model", cfg.model, meta.version)
