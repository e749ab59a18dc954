"""Metrics from song-level predictions, and the training reports: metrics.json, a
confusion-matrix PNG and a training-curve PNG (matplotlib, Agg backend: no display)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def metrics(
    true: Sequence[str], predicted: Sequence[str], labels: Sequence[str], n_clips: int
) -> dict[str, Any]:
    """accuracy, balanced_accuracy, labels, per_genre {precision, recall, f1, support},
    confusion (rows = true, columns = predicted, in ``labels`` order), n_songs, n_clips."""
    labels = list(labels)
    index = {g: i for i, g in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(true, predicted, strict=True):
        confusion[index[t], index[p]] += 1
    per_genre: dict[str, dict[str, float]] = {}
    for i, genre in enumerate(labels):
        tp = int(confusion[i, i])
        support = int(confusion[i].sum())
        predicted_n = int(confusion[:, i].sum())
        precision = tp / predicted_n if predicted_n else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_genre[genre] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": support,
        }
    n = len(true)
    correct = int(np.trace(confusion))
    recalls = [m["recall"] for m in per_genre.values() if m["support"]]
    return {
        "accuracy": round(correct / n, 4) if n else 0.0,
        # Mean per-genre recall: what accuracy would be if every genre had as many songs.
        "balanced_accuracy": round(float(np.mean(recalls)), 4) if recalls else 0.0,
        "labels": labels,
        "per_genre": per_genre,
        "confusion": confusion.tolist(),
        "n_songs": n,
        "n_clips": n_clips,
    }


def pick_genres(row: Sequence[float], labels: Sequence[str], max_genres: int,
                threshold: float) -> list[str]:
    """A song's genre list from its probabilities: the top genre, then every other one
    reaching ``threshold``, most probable first, at most ``max_genres`` (the rule
    ``storage.genres.MultiGenre`` applies to predictions in the catalogue)."""
    order = sorted(range(len(labels)), key=lambda i: (-float(row[i]), labels[i]))
    picked = [labels[order[0]]] if order else []
    picked += [labels[i] for i in order[1:] if float(row[i]) >= threshold]
    return picked[:max(1, max_genres)]


def list_metrics(paths: Sequence[str], true: Sequence[str], probs: np.ndarray,
                 labels: Sequence[str], max_genres: int, threshold: float) -> dict[str, Any]:
    """Per-genre precision and recall of genre *lists* (main and secondary genres): each
    song's true genres (the songs listed once per genre are one song: their genres make
    its set) against its predicted list (``pick_genres``). A genre counts as found when it
    is anywhere in the list; ``as_secondary`` / ``secondary_hits`` say how often it came as
    a secondary genre and how often that was one of the song's genres."""
    truth: dict[str, set[str]] = {}
    lists: dict[str, list[str]] = {}
    for path, genre, row in zip(paths, true, probs, strict=True):
        truth.setdefault(path, set()).add(genre)
        lists[path] = pick_genres(row, labels, max_genres, threshold)
    per_genre: dict[str, dict[str, float]] = {}
    for genre in sorted({g for t in truth.values() for g in t} | set(labels)):
        support = sum(genre in t for t in truth.values())
        predicted = sum(genre in lists[p] for p in lists)
        hits = sum(genre in lists[p] and genre in truth[p] for p in lists)
        secondary = [p for p in lists if genre in lists[p][1:]]
        if not support and not predicted:
            continue
        per_genre[genre] = {
            "precision": round(hits / predicted, 4) if predicted else 0.0,
            "recall": round(hits / support, 4) if support else 0.0,
            "support": support, "predicted": predicted,
            "as_secondary": len(secondary),
            "secondary_hits": sum(genre in truth[p] for p in secondary),
        }
    n = len(lists)
    return {
        "max_genres": max_genres, "secondary_threshold": threshold, "n_songs": n,
        "mean_genres": round(sum(len(v) for v in lists.values()) / n, 4) if n else 0.0,
        "with_secondary": sum(len(v) > 1 for v in lists.values()),
        # Songs one of whose true genres is anywhere in the list.
        "any_hit": round(sum(bool(truth[p] & set(v)) for p, v in lists.items()) / n, 4)
        if n else 0.0,
        "per_genre": per_genre,
    }


def ece(confidence: Sequence[float] | np.ndarray, correct: Sequence[bool], bins: int = 10
        ) -> float:
    """Expected calibration error: the song-weighted mean |accuracy - mean confidence|
    over ``bins`` equal-width confidence bins (0 for no songs)."""
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    if conf.size == 0:
        return 0.0
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.sum() * abs(hit[members].mean() - conf[members].mean())
    return round(float(total / conf.size), 4)


def per_group_accuracy(
    groups: Sequence[str], true: Sequence[str], predicted: Sequence[str]
) -> dict[str, dict[str, float]]:
    """{group: {accuracy, n_songs}}, e.g. per source of the songs."""
    out: dict[str, dict[str, float]] = {}
    for group in sorted(set(groups)):
        hits = [t == p for g, t, p in zip(groups, true, predicted, strict=True) if g == group]
        out[group] = {"accuracy": round(sum(hits) / len(hits), 4), "n_songs": len(hits)}
    return out


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def plot_confusion(path: Path, confusion: list[list[int]], labels: list[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion)
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = matrix.max() if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        if value:
            colour = "white" if value > top / 2 else "black"
            ax.text(j, i, str(value), ha="center", va="center", color=colour)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_curve(path: Path, history: list[dict[str, float]], best_epoch: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    loss_ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    loss_ax.set_title("loss")
    acc_ax.plot(epochs, [h["train_accuracy"] for h in history], label="train (clips)")
    acc_ax.plot(epochs, [h["val_accuracy"] for h in history], label="validation (songs)")
    acc_ax.set_title("accuracy")
    acc_ax.set_ylim(0, 1.02)
    for ax in (loss_ax, acc_ax):
        ax.axvline(best_epoch, color="grey", linestyle=":", label="kept")
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
