"""Training, fine-tuning and evaluation of genre models (a readable loop, no framework).

A run is ``cnnrun`` (``--arch pooled`` / ``paper``) or ``headfit`` (``backbone``); what
runs share (TrainOptions, TrainResult, metrics) is ``trainrun``. The pieces live next door:
``dataset`` (scan a genre-folder collection, song-level split),
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classifier import dataset
from classifier.bundle import BundleMeta, ModelMismatch
from classifier.dataset import DatasetError, Song
from classifier.extract import Extractor
from classifier.features import FeatureParams
from classifier.trainrun import (
    EVAL_CLIPS,
    TrainOptions,
    TrainResult,
    song_metrics,
    trained_fingerprints,
)

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

Labelled = Sequence[tuple[str | Path, str]]


def _load_base(from_model: str | Path, params: FeatureParams) -> tuple[BundleMeta, nn.Module]:
    from classifier import bundle

    meta, net = bundle.load(from_model)
    if meta.params != params:
        raise ModelMismatch(f"{from_model}: its feature parameters {meta.params.as_dict()} "
                            f"differ from this run's {params.as_dict()}")
    return meta, net


def _anchor_songs(anchors: Sequence[str | Path], labelled: list[Song]) -> list[Song]:
    taken = {s.path.absolute() for s in labelled}
    return [Song(Path(p), "", "anchor") for p in anchors if Path(p).absolute() not in taken]


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


def _run(splits: dict[str, list[Song]], opts: TrainOptions, out_dir: Path, cache_dir: Any,
         summary: dict[str, Any], base: tuple[BundleMeta, nn.Module] | None,
         base_path: Path | None = None) -> TrainResult:
    if (base[0].arch if base else opts.arch) == "backbone":
        from classifier import headfit

        return headfit.run(splits, opts, out_dir, cache_dir, summary,
                           (base[0], base[1], base_path) if base else None)  # type: ignore[arg-type]
    from classifier import cnnrun

    return cnnrun.run(splits, opts, out_dir, cache_dir, summary, base)


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
