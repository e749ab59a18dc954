"""Training, fine-tuning and evaluation of genre models (a readable loop, no framework).

The pieces live next door: ``dataset`` (scan a genre-folder collection, song-level split),
``extract`` (log-mels for many songs in worker processes) through ``featurecache`` (plain
.npy arrays keyed by file content and feature parameters), ``fit`` (the optimisation
loop), ``reports`` (metrics.json, PNGs).

Clips: each training song gives ``clips_per_song`` random 30 s clips (a song shorter than
a clip is looped and each clip starts at a random point of the loop); validation and test
songs are judged like real use, by K clips spread over the track with probabilities
averaged (K = 3).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classifier import dataset, reports
from classifier.bundle import BundleMeta, ModelMismatch, new_version_id
from classifier.dataset import DatasetError, Song
from classifier.extract import Extractor, Job
from classifier.features import FeatureParams

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

Labelled = Sequence[tuple[str | Path, str]]
EVAL_CLIPS = 3
ANCHOR_CLIPS = 2


@dataclass
class TrainResult:
    """What a training run made and how good it is.

    ``metrics`` is the held-out test evaluation of the new model in the shape
    :func:`evaluate` returns (accuracy, labels, per_genre, confusion, n_songs, n_clips, plus
    per_source). ``base_metrics`` is the base model's evaluation on the very same held-out
    songs (fine-tuning / --from only; None otherwise), so a caller can compare the two.
    ``test_songs`` are the held-out (path, genre) pairs."""

    out_dir: Path
    version: str
    labels: list[str]
    metrics: dict[str, Any]
    base_metrics: dict[str, Any] | None
    test_songs: list[tuple[str, str]]
    epochs_run: int
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    cache_hits: int = 0
    cache_misses: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)  # {path, error}
    decoded: int = 0  # songs decoded (cache misses that read audio)

    @property
    def accuracy(self) -> float:
        return float(self.metrics["accuracy"])


@dataclass
class TrainOptions:
    """The knobs of a run, in one place."""

    seed: int = 0
    clips_per_song: int = 5
    epochs: int = 40
    arch: str = "backbone"  # classifier.model.DEFAULT_ARCH (not imported: no torch here)
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 32
    lr: float | None = None  # None: 1e-3 from scratch, 5e-4 when starting from a model
    patience: int = 8
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    augment: bool | None = None  # None: SpecAugment for the default arch, not for `paper`
    distill: float = 1.0
    progress: bool = True
    workers: int | None = None  # feature-extraction processes (None: cores, at most 4)
    params: FeatureParams = field(default_factory=FeatureParams)
    windows: int | None = None  # backbone: windows per song (None: headfit.DEFAULT_WINDOWS)


def song_metrics(net: nn.Module, labels: list[str], songs: list[Song],
                 feats: list[np.ndarray], lists: tuple[int, float] | None = None
                 ) -> dict[str, Any]:
    """The evaluate JSON for these songs, plus per_source accuracy; with ``lists``
    (max_genres, secondary_threshold), "genre_lists" (``reports.list_metrics``)."""
    from classifier.fit import song_probabilities

    probs = song_probabilities(net, feats) if feats else np.zeros((0, len(labels)))
    predicted = [labels[i] for i in probs.argmax(axis=1)] if feats else []
    true = [s.genre for s in songs]
    extra = sorted({g for g in true if g not in labels})
    out = reports.metrics(true, predicted, labels + extra, sum(f.shape[0] for f in feats))
    out["per_source"] = reports.per_group_accuracy([s.source for s in songs], true, predicted)
    out["ece"] = reports.ece(probs.max(axis=1) if feats else [],
                             [t == p for t, p in zip(true, predicted, strict=True)])
    if lists is not None and lists[0] > 1:
        out["genre_lists"] = reports.list_metrics([str(s.path) for s in songs], true, probs,
                                                  labels, *lists)
    return out


def _grow(base: nn.Module, meta: BundleMeta, labels: list[str]) -> nn.Module:
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


def _load_base(from_model: str | Path, params: FeatureParams) -> tuple[BundleMeta, nn.Module]:
    from classifier import bundle

    meta, net = bundle.load(from_model)
    if meta.params != params:
        raise ModelMismatch(f"{from_model}: its feature parameters {meta.params.as_dict()} "
                            f"differ from this run's {params.as_dict()}")
    return meta, net


def _check_trainable(splits: dict[str, list[Song]], labels: list[str]) -> None:
    trained = {s.genre for s in splits["train"]}
    if len(labels) < 2:
        raise DatasetError(f"need at least two genres to tell apart, found {labels}")
    if not trained:
        raise DatasetError("no readable training songs")


def _anchor_songs(anchors: Sequence[str | Path], labelled: list[Song]) -> list[Song]:
    taken = {s.path.absolute() for s in labelled}
    return [Song(Path(p), "", "anchor") for p in anchors if Path(p).absolute() not in taken]


def _warn_missing(base_labels: list[str], genres: list[str]) -> None:
    missing = [g for g in base_labels if g not in genres]
    if missing:
        log.warning("no training songs of %s: the new model will likely forget %s; include "
                    "some of their songs to keep them", ", ".join(missing),
                    "it" if len(missing) == 1 else "them")


def _run(splits: dict[str, list[Song]], opts: TrainOptions, out_dir: Path, cache_dir: Any,
         summary: dict[str, Any], base: tuple[BundleMeta, nn.Module] | None,
         base_path: Path | None = None) -> TrainResult:
    if (base[0].arch if base else opts.arch) == "backbone":
        from classifier import headfit

        return headfit.run(splits, opts, out_dir, cache_dir, summary,
                           (base[0], base[1], base_path) if base else None)  # type: ignore[arg-type]
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
    _check_trainable({"train": train_songs}, labels)
    if anchors is None:
        _warn_missing(base[0].labels if base else [], genres)
    index = {g: i for i, g in enumerate(labels)}
    y = np.repeat([index[s.genre] for s in train_songs], [k for k in rows if k]).astype(np.int64)
    val = SongSet(val_feats, [index.get(s.genre, -1) for s in val_songs])
    val = SongSet([f for f, i in zip(val.feats, val.labels, strict=True) if i >= 0],
                  [i for i in val.labels if i >= 0])
    import torch

    torch.manual_seed(opts.seed)  # the initial weights, so a seed reproduces a model
    if base:
        arch, arch_kwargs = base[0].arch, base[0].arch_kwargs
        net = _grow(base[1], base[0], labels)
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
    version = out_dir.name if _looks_like_version(out_dir.name) else new_version_id()
    summary.update({
        "songs": {k: dataset.genre_counts(v) for k, v in
                  (("train", train_songs), ("val", val_songs), ("test", test_songs))},
        "clips_per_song": opts.clips_per_song, "seed": opts.seed, "epochs_run":
        len(fitted.history), "best_epoch": fitted.best_epoch, "skipped": len(ex.skipped),
        "augment": fit_opts.augment, "lr": fit_opts.lr,
        "train_fingerprints": _fingerprints(train_songs),
    })
    meta = BundleMeta(version=version, labels=labels, params=opts.params, arch=arch,
                      arch_kwargs=arch_kwargs, metrics=_headline(metrics, base_metrics),
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


def _fingerprints(songs: list[Song]) -> list[str]:
    """The audio fingerprints of the songs a model trains on, recorded in its bundle so
    `genred evaluate` and the retrain job can tell which songs it has seen (by their audio,
    wherever the files are now)."""
    from classifier.audio import UnreadableAudio, fingerprint

    out = set()
    for song in songs:
        try:
            out.add(fingerprint(song.path))
        except (UnreadableAudio, OSError):
            continue
    return sorted(out)


def trained_fingerprints(meta: BundleMeta) -> set[str]:
    """The fingerprints a bundle says it was trained on (empty when it does not say)."""
    got = meta.training.get("train_fingerprints")
    return {str(x) for x in got} if isinstance(got, list) else set()


def _looks_like_version(name: str) -> bool:
    stamp, _, tail = name.partition("-")
    return len(stamp) == 16 and stamp.endswith("Z") and stamp[8] == "T" and len(tail) == 6


def _headline(metrics: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    out = {"accuracy": metrics["accuracy"], "balanced_accuracy": metrics["balanced_accuracy"],
           "ece": metrics.get("ece"), "n_songs": metrics["n_songs"],
           "per_source": metrics.get("per_source", {})}
    if base is not None:
        out["base_accuracy"] = base["accuracy"]
    return out


def _options(seed: int, clips_per_song: int, epochs: int, options: dict[str, Any]
             ) -> TrainOptions:
    opts = TrainOptions(seed=seed, clips_per_song=clips_per_song, epochs=epochs)
    for key, value in options.items():
        if not hasattr(opts, key):
            raise TypeError(f"unknown training option {key!r}")
        setattr(opts, key, value)
    if opts.clips_per_song < 1 or opts.epochs < 1:
        raise DatasetError("--clips-per-song and --epochs must be at least 1")
    return opts


def train(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 0,
    clips_per_song: int = 5,
    epochs: int = 40,
    arch: str | None = None,
    from_model: str | Path | None = None,
    cache_dir: str | Path | None = None,
    anchors: Sequence[str | Path] = (),
    **options: Any,
) -> TrainResult:
    """Train on ``data_dir`` (one sub-folder per genre, nested folders and any formats) and
    write the bundle + metrics.json + confusion.png + curve.png into ``out_dir`` atomically.
    With ``from_model`` the base bundle's weights are the start and its genres are kept
    (new genres add output rows; ``anchors`` as in :func:`fine_tune`). Raises DatasetError
    when the data cannot train a model, ModelMismatch when ``from_model`` does not fit.
    Other ``options``: TrainOptions."""
    opts = _options(seed, clips_per_song, epochs, options)
    if arch:
        opts.arch = arch
    _params_for(opts, from_model)
    base = _load_base(from_model, opts.params) if from_model else None
    if base and arch and arch != base[0].arch:
        log.warning("--arch %s ignored: growing %s keeps its %s network", arch, from_model,
                    base[0].arch)
    songs = dataset.scan(data_dir)
    splits = dataset.split(songs, opts.seed, opts.val_fraction, opts.test_fraction)
    splits["anchor"] = _anchor_songs(anchors, songs) if base else []
    log.info("songs: %s", {k: len(v) for k, v in splits.items()})
    summary: dict[str, Any] = {"data_dir": str(Path(data_dir).expanduser().resolve()),
                               "split": "by song, stratified by (genre, source)",
                               "genres": dataset.genre_counts(songs)}
    return _run(splits, opts, Path(out_dir).expanduser().absolute(), cache_dir, summary, base,
                Path(from_model) if from_model else None)


def _params_for(opts: TrainOptions, base: str | Path | None) -> None:
    """The front end the architecture takes: the base bundle's, or musicnn's for a new
    backbone model (the paper's log-mel otherwise)."""
    from classifier.bundle import read_meta
    from classifier.features import musicnn_params

    if base is not None:
        meta = read_meta(base)
        if meta.arch == "backbone":
            opts.params = meta.params
    elif opts.arch == "backbone" and opts.params.frontend != "musicnn":
        opts.params = musicnn_params()


def fine_tune(
    base_bundle: str | Path,
    labelled: Labelled,
    out_dir: str | Path,
    *,
    holdout: Labelled | float = 0.2,
    seed: int = 0,
    epochs: int = 15,
    clips_per_song: int = 5,
    cache_dir: str | Path | None = None,
    anchors: Sequence[str | Path] = (),
    **options: Any,
) -> TrainResult:
    """Fine-tune ``base_bundle`` on ``labelled`` (path, genre) pairs, e.g. user corrections;
    genres the base lacks are added and the base's output rows are kept. Distillation from
    the base softens forgetting, but a base genre with no labelled song IS largely
    forgotten (measured: growing with only new-genre songs predicts the new genre for
    everything); a warning names such genres, and a caller must not judge the result on
    held-out songs of the labelled genres alone. ``anchors`` fixes that: unlabelled tracks
    (e.g. a sample of the library) on which the new model learns to answer as the base
    did. ``holdout`` is either explicit
    (path, genre) pairs never trained on, or a fraction of ``labelled`` held out by song.
    Both the new and the base model are evaluated on the same held-out songs
    (``TrainResult.metrics`` / ``base_metrics``). When an explicit holdout covers every
    labelled song (too few labels to hold any out), it trains on them all anyway and says
    so (``training["holdout_is_training_data"]`` in model.json): that comparison is
    optimistic. Raises DatasetError when no usable song remains, ModelMismatch when the
    base bundle does not fit."""
    opts = _options(seed, clips_per_song, epochs, options)
    _params_for(opts, base_bundle)
    base = _load_base(base_bundle, opts.params)
    songs = dataset.from_pairs(labelled)
    summary: dict[str, Any] = {"data": "labelled pairs", "n_labelled": len(songs),
                               "split": "by song", "genres": dataset.genre_counts(songs)}
    if isinstance(holdout, int | float):
        splits = dataset.split(songs, opts.seed, opts.val_fraction, float(holdout))
    else:
        test = dataset.from_pairs(holdout)
        held = {s.path.absolute() for s in test}
        rest = [s for s in songs if s.path.absolute() not in held]
        if not rest and songs:
            log.warning("every labelled song is in the hold-out: training on them anyway; "
                        "the comparison on them is optimistic")
            rest, summary["holdout_is_training_data"] = songs, True
        splits = dataset.split(rest, opts.seed, opts.val_fraction, 0.0)
        splits["test"] = test
    if not splits["train"]:
        raise DatasetError("no labelled songs to train on")
    splits["anchor"] = _anchor_songs(anchors, songs + splits["test"])
    return _run(splits, opts, Path(out_dir).expanduser().absolute(), cache_dir, summary, base,
                Path(base_bundle))


def evaluate(
    bundle_path: str | Path,
    data: Labelled | str | Path,
    *,
    clips_per_track: int = EVAL_CLIPS,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    workers: int | None = None,
    per_song: bool = False,
    lists: tuple[int, float] | None = None,
) -> dict[str, Any]:
    """Evaluate a bundle on (path, genre) pairs or a genre-folder collection, one
    whole-track prediction per song (``clips_per_track`` spread clips averaged). Returns
    the evaluate JSON: {"accuracy", "labels", "per_genre": {g: {precision, recall, f1,
    support}}, "confusion" (rows = true, columns = predicted, over ``labels``), "n_songs",
    "n_clips", "per_source", "model", "errors": [{path, error}]}. Unreadable files are
    listed in errors and not counted; a genre the model lacks still counts (always wrong)
    and is appended to labels. With ``per_song``, "songs" lists {path, genre, predicted}
    for each song counted. With ``lists`` (max_genres, secondary_threshold) above one
    genre, "genre_lists" has per-genre precision and recall of the songs' genre lists,
    secondary genres included (``reports.list_metrics``). Raises DatasetError,
    BundleError / ModelMismatch."""
    from classifier.predict import Classifier, set_torch_threads

    songs = dataset.scan(data) if isinstance(data, str | Path) else dataset.from_pairs(data)
    clf = Classifier.load(Path(bundle_path))
    set_torch_threads()
    if clf.meta.arch == "backbone":
        out = _evaluate_head(clf, songs, cache_dir, progress, workers, per_song, lists)
        out["in_training_data"] = seen_in_training(
            Path(bundle_path), clf.meta, [s for s in songs if str(s.path) not in
                                          {e["path"] for e in out["errors"]}])
        return out
    ex = Extractor(clf.params, cache_dir, progress, workers)
    kept, feats = ex.many(songs, clips_per_track, None, "evaluate")
    out = song_metrics(clf.net, clf.labels, kept, feats, lists)
    if per_song:
        from classifier.fit import song_probabilities

        probs = song_probabilities(clf.net, feats) if feats else None
        out["songs"] = [{"path": str(s.path), "genre": s.genre,
                         "predicted": clf.labels[int(probs[i].argmax())]}
                        for i, s in enumerate(kept)] if probs is not None else []
    out["model"] = clf.version
    out["errors"] = ex.skipped
    out["in_training_data"] = seen_in_training(Path(bundle_path), clf.meta, kept)
    return out


def seen_in_training(bundle_path: Path, meta: BundleMeta, songs: list[Song]) -> list[str]:
    """Paths of ``songs`` the model was trained on: by audio fingerprint when the bundle
    lists its training songs' fingerprints; else (an older bundle, such as the starter) the
    songs under the folder it was trained from that are not among its recorded test
    songs. An accuracy measured on them is optimistic."""
    from classifier.audio import UnreadableAudio, fingerprint

    trained = trained_fingerprints(meta)
    if trained:
        out = []
        for song in songs:
            try:
                if fingerprint(song.path) in trained:
                    out.append(str(song.path))
            except (UnreadableAudio, OSError):
                continue
        return out
    data_dir = meta.training.get("data_dir")
    if not isinstance(data_dir, str):
        return []
    root = Path(data_dir).resolve()
    try:
        report = json.loads((bundle_path / "metrics.json").read_text(encoding="utf-8"))
        tested = {str(Path(p).resolve()) for p in report.get("test_songs") or []}
    except (OSError, ValueError, AttributeError):
        tested = set()
    return [str(s.path) for s in songs
            if Path(s.path).resolve().is_relative_to(root)
            and str(Path(s.path).resolve()) not in tested]


def _evaluate_head(clf: Any, songs: list[Song], cache_dir: Any, progress: bool,
                   workers: int | None, per_song: bool = False,
                   lists: tuple[int, float] | None = None) -> dict[str, Any]:
    """evaluate() of a backbone model, through the embedding store."""
    from classifier.embeddings import embed_songs
    from classifier.headfit import head_metrics

    windows = clf.clips_per_track
    backbone = "msd_musicnn"  # arch "backbone" is MSD_musicnn (classifier/head.py)
    e = embed_songs(songs, clf.params, windows, backbone, cache_dir, progress, workers)
    out = head_metrics(clf.net, clf.labels, e.songs, e.embeddings, windows, per_song, lists)
    out["model"] = clf.version
    out["errors"] = e.skipped
    return out
