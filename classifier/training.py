"""Training, fine-tuning and evaluation of genre models (a readable loop, no framework).

The pieces live next door: ``dataset`` (scan a genre-folder collection, song-level split),
``featurecache`` (decoded log-mels as plain .npy arrays keyed by file content and feature
parameters), ``reports`` (metrics.json, confusion and training-curve PNGs).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Labelled = Sequence[tuple[str | Path, str]]


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

    @property
    def accuracy(self) -> float:
        return float(self.metrics["accuracy"])


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
    **options: Any,
) -> TrainResult:
    """Train on ``data_dir`` (one sub-folder per genre, nested folders and any formats) and
    write the bundle + metrics.json + confusion.png + curve.png into ``out_dir`` atomically.
    With ``from_model`` the base bundle's weights are the start and its genres are kept
    (new genres add output rows). Raises DatasetError when the data cannot train a model."""
    raise NotImplementedError


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
    **options: Any,
) -> TrainResult:
    """Fine-tune ``base_bundle`` on ``labelled`` (path, genre) pairs, e.g. user corrections;
    genres the base lacks are added, the base's genres are kept (distillation from the
    base keeps them even when no labelled song has them). ``holdout`` is either explicit
    (path, genre) pairs never trained on, or a fraction of ``labelled`` held out by song.
    Both the new and the base model are evaluated on the same held-out songs
    (``TrainResult.metrics`` / ``base_metrics``). Raises DatasetError when too few usable
    songs remain."""
    raise NotImplementedError


def evaluate(
    bundle_path: str | Path,
    data: Labelled | str | Path,
    *,
    clips_per_track: int = 3,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate a bundle on (path, genre) pairs or a genre-folder collection, one
    whole-track prediction per song (``clips_per_track`` spread clips averaged). Returns
    the evaluate JSON: {"accuracy", "labels", "per_genre": {g: {precision, recall, f1,
    support}}, "confusion" (rows = true, columns = predicted, over ``labels``), "n_songs",
    "n_clips", "errors": [{path, error}]}. Unreadable files are listed in errors and not
    counted; a genre the model lacks still counts (always wrong) and appears in labels."""
    raise NotImplementedError
