"""The retrain job: fine-tune the active model on the user's labels, judge old and new on
songs neither trained on, promote only a model that shows it learned the labels and has not
forgotten the genres the labels do not cover. Runs nightly from the scheduler
(``daemon.scheduler``) and on demand (``genred retrain --now``), each time in a child
process (``daemon.retrain_child``).

What the caller may rely on:

- Every attempt leaves one TrainingRun row: ``promoted``, ``rejected``, ``skipped`` (too
  few new labels, another retrain running) or ``failed`` (with the reason). A run killed
  half-way is marked ``failed`` ("interrupted") at the next daemon start, or at once by the
  parent of a child that died.
- "New labels" are active corrections (user, tag, import) newer than the last run that
  trained (``TrainingRun.last_correction_id`` of the last promoted/rejected run), on tracks
  whose files are present.
- What is trained on and held out: ``daemon.retrain_data`` (genres waiting for
  ``retrain.min_songs_per_genre`` songs are never trained on). How the candidate is judged
  and the promotion rule: ``daemon.retrain_judge``. The judged songs are the held-out
  labels when there are ``retrain.min_holdout_songs`` of them covering every genre the
  labels touch, else every label through cross-validation folds; either way only songs the
  old model did not train on (its bundle lists its training songs by fingerprint).
- Every decision is recorded with the numbers it rested on (the run's ``metrics``:
  ``judging``, ``waiting``, ``anchor_check``).
- After a promotion, tracks whose current prediction came from another model and that
  carry no correction go back to ``pending``: the daemon's worker reclassifies them, or
  `genred retrain --now` does when no daemon runs.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from daemon.config import Config
from daemon.retrain_data import (  # noqa: F401 - re-exported: the job's vocabulary
    ANCHOR_CONFIDENCE,
    HELD_ANCHORS_PER_GENRE,
    HOLDOUT_BUCKETS,
    Anchor,
    Label,
    Labelled,
    TrainingSet,
    anchor_candidates,
    as_parents,
    folds,
    model_names,
    original_training_data,
    present_labels,
    relabelled,
    split_anchors,
    split_holdout,
    training_set,
    waiting_genres,
)
from daemon.retrain_judge import (  # noqa: F401
    MIN_ANCHORS_TO_JUDGE,
    AnchorCheck,
    Scores,
    check_anchors,
    decide,
    evaluate_songs,
    judge_agreement,
)
from daemon.retrain_outcome import RetrainBusy, RetrainOutcome
from storage import requeue, training_runs
from storage.training_runs import FAILED, PROMOTED, REJECTED, RUNNING, SKIPPED  # noqa: F401

log = logging.getLogger(__name__)

# (base bundle, what to train on and what to leave out, out dir) -> the candidate bundle dir.
Trainer = Callable[[Path, TrainingSet, Path], Path]


def last_trained_correction(engine: Engine) -> int:
    return training_runs.last_trained_correction(engine)


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
    return training_runs.mark_running_failed(engine, "interrupted (the process stopped mid-run)")


def _finish(engine: Engine, outcome: RetrainOutcome, last_correction_id: int | None) -> None:
    training_runs.finish_run(engine, outcome.run_id,
                             {**outcome.record(), "last_correction_id": last_correction_id})


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
def running() -> Iterator[None]:
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
            trainer: Trainer | None = None, run_id: int | None = None) -> RetrainOutcome:
    """Run the job once, in this process; never raises for a training problem (the run
    records it). ``run_id``: a ``running`` TrainingRun row to fill in (the parent of a
    child process made it), else one is started."""
    from classifier.store import ModelStore

    store = ModelStore(cfg.model_store_path)
    if run_id is None:
        run_id = training_runs.start_run(engine, trigger, None)
    try:
        with _retrain_lock(store.root), running():
            _remove_stale_staging(store.root)
            trainer = trainer or fine_tune_trainer(cfg)
            return _retrain_locked(engine, cfg, store, run_id, trainer)
    except RetrainBusy as e:
        outcome = RetrainOutcome(SKIPPED, str(e), run_id)
        _finish(engine, outcome, None)
        return outcome


def _retrain_locked(engine: Engine, cfg: Config, store: Any, run_id: int,
                    trainer: Trainer) -> RetrainOutcome:
    from classifier.bundle import BundleError, read_meta
    from classifier.store import ModelNotFound

    try:
        base_path: Path = store.resolve(cfg.model) if cfg.model else store.active()
        base_version = read_meta(base_path).version
    except (ModelNotFound, BundleError) as e:
        outcome = RetrainOutcome(FAILED, f"no usable base model: {e}", run_id)
        _finish(engine, outcome, None)
        return outcome
    from storage.vocabulary import renames

    outcome = RetrainOutcome(SKIPPED, "", run_id, base_model=base_version)
    labels = model_names(present_labels(engine), read_meta(base_path).labels, renames(engine))
    since = last_trained_correction(engine)
    outcome.n_labels = len(labels)
    outcome.n_new_labels = sum(1 for x in labels if x.correction_id > since)
    newest = max((x.correction_id for x in labels), default=since)
    needed = max(1, cfg.retrain.min_new_labels)
    parents = as_parents(labels, read_meta(base_path).labels, cfg.retrain.min_songs_per_genre,
                         cfg.tree)
    if parents:
        outcome.metrics["as_parent"] = parents
        labels = relabelled(labels, parents)
    outcome.waiting = waiting_genres(labels, read_meta(base_path).labels,
                                     cfg.retrain.min_songs_per_genre)
    trainable = [x for x in labels if x.genre not in outcome.waiting]
    if outcome.n_new_labels < needed or not trainable:
        outcome.reason = (f"{outcome.n_new_labels} new label(s) since the last training run; "
                          f"{needed} needed (retrain.min_new_labels)")
        if not trainable and labels:
            outcome.reason = (f"every labelled genre is waiting for "
                              f"{cfg.retrain.min_songs_per_genre} songs "
                              "(retrain.min_songs_per_genre)")
        _finish(engine, outcome, None)
        return outcome
    try:
        _train_and_decide(engine, store, base_path, trainable, trainer, cfg, outcome)
    except Exception as e:  # the job's boundary: a failed run is recorded, never fatal
        if _caused_by_interrupt(e):  # a stop request that landed inside an import, say
            raise KeyboardInterrupt from e
        log.exception("retrain failed")
        outcome.decision, outcome.reason = FAILED, f"{type(e).__name__}: {e}".splitlines()[0]
        _finish(engine, outcome, None)
        return outcome
    _finish(engine, outcome, newest)
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


def _pairs(labels: list[Label]) -> Labelled:
    return [(x.path, x.genre) for x in labels]


def _judge(engine: Engine, store: Any, base: Path, labels: list[Label], held: list[Label],
           trainer: Trainer, cfg: Config) -> tuple[Scores, str]:
    """Both models' answers on songs neither trained on, and what those songs are: the
    held-out labels when they are enough, else cross-validation over every label (each
    fold's candidate trained on the other folds)."""
    from classifier.bundle import read_meta
    from classifier.trainrun import trained_fingerprints

    seen = trained_fingerprints(read_meta(base))

    def unseen(songs: list[Label]) -> list[Label]:
        return [x for x in songs if x.fingerprint is None or x.fingerprint not in seen]

    scores = Scores()
    judged = unseen(held)
    minimum = cfg.retrain.min_holdout_songs
    if len(judged) >= minimum and {x.genre for x in judged} >= {x.genre for x in labels}:
        return scores, f"{len(judged)} held-out songs"
    parts = folds(labels)
    for k, fold in enumerate(parts, start=1):
        rest = [x for x in labels if x not in fold]
        scored = unseen(fold)
        if not rest or not scored:
            continue
        log.info("cross-validation fold %d of %d: %d songs judged", k, len(parts), len(scored))
        data = training_set(engine, store.root, base, rest, _pairs(fold))
        candidate = trainer(base, data, store.new_version_dir())
        try:
            scores.add(evaluate_songs(base, _pairs(scored), cfg),
                       evaluate_songs(candidate, _pairs(scored), cfg))
        finally:
            shutil.rmtree(candidate, ignore_errors=True)
    return scores, (f"{scores.n} songs in {len(parts)}-fold cross-validation (fewer than "
                    f"{minimum} held-out songs covering every labelled genre)")


def _train_and_decide(engine: Engine, store: Any, base_path: Path, labels: list[Label],
                      trainer: Trainer, cfg: Config, outcome: RetrainOutcome) -> None:
    from classifier.bundle import read_meta
    from storage.catalogue import register_model

    train, held = split_holdout(labels)
    scores, basis = _judge(engine, store, base_path, labels, held, trainer, cfg)
    holdout = _pairs(held)
    data = training_set(engine, store.root, base_path, train, holdout)
    candidate = trainer(base_path, data, store.new_version_dir())  # the one call that trains
    meta = read_meta(candidate)
    base_meta = read_meta(base_path)
    outcome.new_model = meta.version
    if "held-out" in basis:
        old_report = evaluate_songs(base_path, _scored(held, base_meta), cfg)
        new_report = evaluate_songs(candidate, _scored(held, base_meta), cfg)
        scores.add(old_report, new_report)
    anchors = check_anchors(base_path, candidate, data.held_anchors, cfg)
    outcome.anchor_agreement, outcome.anchor_check = anchors.agreement, anchors.as_json()
    added = [g for g in meta.labels if g not in base_meta.labels]
    verdict = decide(scores, basis, added, anchors)
    outcome.n_judged = scores.n
    if scores.n:
        outcome.old_accuracy = scores.correct(1) / scores.n
        outcome.new_accuracy = scores.correct(2) / scores.n
    outcome.metrics = {"judging": verdict.figures, "n_train": len(train),
                       "n_holdout": len(holdout), "compared_on": basis,
                       "n_anchors": len(data.anchors), "anchor_check": outcome.anchor_check}
    if not verdict.promote:
        outcome.decision = REJECTED
        outcome.reason = "; ".join(verdict.reasons) + f"; kept {outcome.base_model}"
        shutil.rmtree(candidate, ignore_errors=True)
        return
    headline = {k: v for k, v in outcome.anchor_check.items() if k != "changed"}
    judged = {"accuracy": outcome.new_accuracy, "n_songs": scores.n, "judged_on": basis,
              "base_accuracy": outcome.old_accuracy}
    _note_in_bundle(candidate, {"anchor_check": headline, **judged})
    register_model(engine, base_meta.version, base_path, base_meta.labels,
                   metrics=base_meta.metrics, parent=base_meta.parent, active=False)
    # Queue first, then switch: a running daemon reloads on the switch (and requeues by
    # itself too), so the count reported here is the real one.
    outcome.requeued = requeue.requeue_for_model(engine, meta.version).queued
    register_model(engine, meta.version, candidate, meta.labels,
                   metrics={**meta.metrics, **judged, "anchor_check": headline},
                   parent=base_meta.version, active=True)
    store.activate(meta.version)
    outcome.decision = PROMOTED
    outcome.reason = (f"new model {verdict.figures['new_correct']}/{scores.n} right against "
                      f"{verdict.figures['old_correct']}/{scores.n} on {basis}; ")
    outcome.reason += anchors.reason if anchors.status == "skipped" else f"it {anchors.reason}"
    if cfg.model:
        log.warning("config 'model' pins %s: the promoted %s is active in the store but "
                    "the daemon keeps using the pinned model", cfg.model, meta.version)


def _scored(held: list[Label], base_meta: Any) -> Labelled:
    from classifier.trainrun import trained_fingerprints

    seen = trained_fingerprints(base_meta)
    return [(x.path, x.genre) for x in held if x.fingerprint is None or x.fingerprint not in seen]


def _note_in_bundle(bundle: Path, values: dict[str, Any]) -> None:
    """Merge ``values`` into a bundle's model.json metrics (atomically; every other field
    kept as written), so `genred models show|list` show how the model was judged."""
    from classifier.bundle import META_FILE

    data = json.loads((bundle / META_FILE).read_text(encoding="utf-8"))
    data["metrics"] = {**(data.get("metrics") or {}), **values}
    tmp = bundle / f".{META_FILE}.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, bundle / META_FILE)


def requeue_outdated(engine: Engine, version: str) -> int:
    """After promoting ``version``: queue the uncorrected ``ok`` tracks another model
    predicted (requeue.requeue_for_model); returns how many."""
    return requeue.requeue_for_model(engine, version).queued
