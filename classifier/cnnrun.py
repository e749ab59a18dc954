"""Training a CNN from scratch (``--arch pooled`` / ``paper``): the clips' log-mels, the
fit (classifier.fit), the held-out metrics, and the bundle with its reports.

classifier.training calls :func:`run` for these architectures, classifier.headfit for
``backbone``. A run grown from a base model keeps the base's output rows (:func:`grow`)
and is distilled from it on the anchor tracks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classifier import dataset, reports
from classifier.bundle import BundleMeta, new_version_id
from classifier.dataset import Song
from classifier.extract import Extractor, Job
from classifier.trainrun import (
    ANCHOR_CLIPS,
    EVAL_CLIPS,
    TrainOptions,
    TrainResult,
    check_trainable,
    headline_metrics,
    looks_like_version,
    song_metrics,
    train_fingerprints,
    warn_missing,
)

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)


def run(splits: dict[str, list[Song]], opts: TrainOptions, out_dir: Path, cache_dir: Any,
        summary: dict[str, Any], base: tuple[BundleMeta, nn.Module] | None) -> TrainResult:
    """training._run for ``--arch pooled`` and ``paper``: clips, the fit, the bundle."""
    from classifier import bundle
    from classifier import model as cnn
    from classifier.fit import FitOptions, SongSet, Teacher, fit
    from classifier.predict import set_torch_threads

    set_torch_threads()
    ex = Extractor(opts.params, cache_dir, opts.progress, opts.workers)
    # The training and anchor clips go straight into one float16 array each (Extractor.stack):
    # a retrain's memory is the clips once, not per-song arrays plus a stacked copy.
    x, rows = ex.stack([(s, opts.clips_per_song, opts.seed) for s in splits["train"]],
                       "features: training songs")
    train_songs = [s for s, k in zip(splits["train"], rows, strict=True) if k]
    held: list[Job] = [(s, EVAL_CLIPS, None) for s in splits["val"] + splits["test"]]
    held_feats = ex.run(held, "features: held-out songs")
    parts = {}
    for name, songs, feats in (
            ("val", splits["val"], held_feats[: len(splits["val"])]),
            ("test", splits["test"], held_feats[len(splits["val"]):])):
        kept = [(s, f) for s, f in zip(songs, feats, strict=True) if f is not None]
        parts[name] = ([s for s, _ in kept], [f for _, f in kept])
    (val_songs, val_feats), (test_songs, test_feats) = parts["val"], parts["test"]
    anchor_songs = splits.setdefault("anchor", [])
    anchors: np.ndarray | None = None
    if anchor_songs:
        anchors, _ = ex.stack([(s, ANCHOR_CLIPS, opts.seed) for s in anchor_songs],
                              "features: anchor tracks")
        anchors = anchors if len(anchors) else None
    genres = sorted({s.genre for s in train_songs})
    labels = list(base[0].labels) if base else []
    labels += [g for g in genres if g not in labels]
    check_trainable({"train": train_songs}, labels)
    if anchors is None:
        warn_missing(base[0].labels if base else [], genres)
    index = {g: i for i, g in enumerate(labels)}
    y = np.repeat([index[s.genre] for s in train_songs], [k for k in rows if k]).astype(np.int64)
    val = SongSet(val_feats, [index.get(s.genre, -1) for s in val_songs])
    val = SongSet([f for f, i in zip(val.feats, val.labels, strict=True) if i >= 0],
                  [i for i in val.labels if i >= 0])
    import torch

    torch.manual_seed(opts.seed)  # the initial weights, so a seed reproduces a model
    if base:
        arch, arch_kwargs = base[0].arch, base[0].arch_kwargs
        net = grow(base[1], base[0], labels)
    else:
        arch, arch_kwargs = opts.arch, cnn.arch_config(opts.arch, **opts.arch_kwargs)
        net = cnn.build(arch, len(labels), opts.params.n_mels, opts.params.frames, **arch_kwargs)
    fit_opts = FitOptions(
        epochs=opts.epochs, batch_size=opts.batch_size, patience=opts.patience,
        lr=opts.lr or (5e-4 if base else 1e-3), seed=opts.seed, progress=opts.progress,
        augment=opts.augment if opts.augment is not None else arch != "paper",
        distill=opts.distill,
    )
    teacher = Teacher(base[1], anchors) if base else None
    fitted = fit(net, x, y, val, fit_opts, teacher=teacher)
    metrics = song_metrics(net, labels, test_songs, test_feats)
    base_metrics = song_metrics(base[1], base[0].labels, test_songs, test_feats) if base else None
    log.info("held-out test accuracy %.3f on %d songs", metrics["accuracy"], metrics["n_songs"])
    version = out_dir.name if looks_like_version(out_dir.name) else new_version_id()
    summary.update({
        "songs": {k: dataset.genre_counts(v) for k, v in
                  (("train", train_songs), ("val", val_songs), ("test", test_songs))},
        "clips_per_song": opts.clips_per_song, "seed": opts.seed, "epochs_run":
        len(fitted.history), "best_epoch": fitted.best_epoch, "skipped": len(ex.skipped),
        "augment": fit_opts.augment, "lr": fit_opts.lr,
        "train_fingerprints": train_fingerprints(train_songs),
    })
    meta = BundleMeta(version=version, labels=labels, params=opts.params, arch=arch,
                      arch_kwargs=arch_kwargs, metrics=headline_metrics(metrics, base_metrics),
                      training=summary, parent=base[0].version if base else None)
    report = {"test": metrics, "base_test": base_metrics, "history": fitted.history,
              "skipped": ex.skipped, "test_songs": [str(s.path) for s in test_songs]}
    with bundle.staged(out_dir) as tmp:
        bundle.write(tmp, net, meta)
        reports.write_json(tmp / "metrics.json", report)
        reports.plot_confusion(tmp / "confusion.png", metrics["confusion"], metrics["labels"],
                               f"held-out test songs: accuracy {metrics['accuracy']:.2f}")
        reports.plot_curve(tmp / "curve.png", fitted.history, fitted.best_epoch)
    return TrainResult(
        out_dir=out_dir, version=version, labels=labels, metrics=metrics,
        base_metrics=base_metrics, test_songs=[(str(s.path), s.genre) for s in test_songs],
        epochs_run=len(fitted.history), best_epoch=fitted.best_epoch, history=fitted.history,
        cache_hits=ex.cache.hits, cache_misses=ex.cache.misses, skipped=ex.skipped,
        decoded=ex.decoded,
    )


def grow(base: nn.Module, meta: BundleMeta, labels: list[str]) -> nn.Module:
    """A copy of ``base`` whose output layer has a row per label: the base's rows are kept
    (its genres come first in ``labels``), new genres get fresh rows."""
    from classifier import model as cnn

    net = cnn.build(meta.arch, len(labels), meta.params.n_mels, meta.params.frames,
                    **meta.arch_kwargs)
    state = net.state_dict()
    for key, value in base.state_dict().items():
        if key.startswith("out."):
            state[key][: value.shape[0]] = value
        else:
            state[key] = value
    net.load_state_dict(state)
    return net
