"""What every training run shares, whichever network it trains: its options and result,
the held-out metrics, and what the bundle records about the songs it saw.

classifier.training is the readable top level (train / fine_tune / evaluate); a run itself
is classifier.cnnrun (``--arch pooled`` / ``paper``) or classifier.headfit (``backbone``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classifier import reports
from classifier.bundle import BundleMeta
from classifier.dataset import DatasetError, Song
from classifier.features import FeatureParams

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

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
    arch: str = "backbone"  # classifier.archs.DEFAULT_ARCH
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


def check_trainable(splits: dict[str, list[Song]], labels: list[str]) -> None:
    """Raise DatasetError when these songs cannot train a model."""
    trained = {s.genre for s in splits["train"]}
    if len(labels) < 2:
        raise DatasetError(f"need at least two genres to tell apart, found {labels}")
    if not trained:
        raise DatasetError("no readable training songs")


def warn_missing(base_labels: list[str], genres: list[str]) -> None:
    """Warn that base genres without training songs will be largely forgotten."""
    missing = [g for g in base_labels if g not in genres]
    if missing:
        log.warning("no training songs of %s: the new model will likely forget %s; include "
                    "some of their songs to keep them", ", ".join(missing),
                    "it" if len(missing) == 1 else "them")


def train_fingerprints(songs: list[Song]) -> list[str]:
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


def looks_like_version(name: str) -> bool:
    """Whether ``name`` is a version id (bundle.new_version_id): the out dir names the model."""
    stamp, _, tail = name.partition("-")
    return len(stamp) == 16 and stamp.endswith("Z") and stamp[8] == "T" and len(tail) == 6


def headline_metrics(metrics: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    """The few metrics model.json keeps (the rest are in metrics.json)."""
    out = {"accuracy": metrics["accuracy"], "balanced_accuracy": metrics["balanced_accuracy"],
           "ece": metrics.get("ece"), "n_songs": metrics["n_songs"],
           "per_source": metrics.get("per_source", {})}
    if base is not None:
        out["base_accuracy"] = base["accuracy"]
    return out
