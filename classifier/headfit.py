"""Training ``--arch backbone`` models: a head over stored track embeddings, calibrated.

The backbone is frozen, so a song is embedded once (classifier/embeddings.py) and
training is a small convex (or one-hidden-layer) problem over (n_songs, 753) numbers:
seconds, even for thousands of labels. Steps:

1. embeddings of the training, validation and test songs (stored ones are not decoded);
   a grown model (``--from``, the retrain job) also trains on the embeddings its base
   bundle carries (``training_embeddings.safetensors``), so the original training data
   stays in even where its files are gone;
2. the head: standardised embeddings, class-balanced cross-entropy, L2 penalty
   ``1 / n_train`` (scikit-learn's C = 1 scaled to a mean loss), full-batch L-BFGS;
3. calibration: one temperature fitted by L-BFGS on the validation songs' negative
   log-likelihood (1.0 when there are none); ECE (10 bins) is reported on the test songs;
4. the bundle (head weights + training embeddings at float16 + metrics), atomically.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classifier import dataset, reports
from classifier.bundle import BundleMeta, new_version_id
from classifier.dataset import DatasetError, Song
from classifier.embeddings import embed_songs
from classifier.musicnn_spec import MSD_MUSICNN

if TYPE_CHECKING:
    import torch

    from classifier.head import BackboneHead
    from classifier.trainrun import TrainOptions, TrainResult

log = logging.getLogger(__name__)

EMBEDDINGS_FILE = "training_embeddings.safetensors"
DEFAULT_WINDOWS = 3


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """The head's matrices are tiny: a second thread only waits for a descheduled peer
    (measured on 2 busy cores: 261 ms per loss+gradient with 2 threads, 16 ms with 1)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class HeadData:
    x: np.ndarray  # (n, 753) float32
    y: np.ndarray  # (n,) int64 label index


def fit_head(net: BackboneHead, train: HeadData, max_iter: int = 200) -> None:
    """Fit ``net``'s head on ``train`` in place (standardisation + weights)."""
    with one_torch_thread():
        _fit_head(net, train, max_iter)


def _fit_head(net: BackboneHead, train: HeadData, max_iter: int) -> None:
    import torch
    from torch.nn import functional as F

    x = torch.from_numpy(train.x)
    y = torch.from_numpy(train.y)
    net.set_input_stats(x.mean(dim=0), x.std(dim=0))
    counts = torch.bincount(y, minlength=net.out.out_features).float()
    weights = torch.where(counts > 0, len(y) / (counts.clamp_min(1) * (counts > 0).sum()),
                          torch.zeros_like(counts))
    penalty = 1.0 / max(len(y), 1)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe")
    net.train()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(net.logits(x), y, weight=weights)
        loss = loss + 0.5 * penalty * sum((p**2).sum() for n, p in net.named_parameters()
                                          if n.endswith("weight"))
        loss.backward()
        return loss

    opt.step(closure)
    net.eval()


def fit_temperature(net: BackboneHead, val: HeadData) -> float:
    """The temperature minimising the validation NLL (1.0 without validation songs)."""

    if len(val.y) == 0:
        net.temperature.fill_(1.0)
        return 1.0
    with one_torch_thread():
        return _fit_temperature(net, val)


def _fit_temperature(net: BackboneHead, val: HeadData) -> float:
    import torch
    from torch.nn import functional as F

    with torch.no_grad():
        logits = net.logits(torch.from_numpy(val.x))
    y = torch.from_numpy(val.y)
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp().clamp(0.05, 20.0))
    net.temperature.fill_(t)
    return t


def probabilities(net: BackboneHead, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return torch.softmax(net.calibrated(torch.from_numpy(x)), dim=1).numpy()


def head_metrics(net: BackboneHead, labels: list[str], songs: list[Song], x: np.ndarray,
                 windows: int, per_song: bool = False,
                 lists: tuple[int, float] | None = None) -> dict[str, Any]:
    """The evaluate JSON of ``songs`` (embeddings ``x``), with per_source and ECE; with
    ``per_song``, "songs" lists {path, genre, predicted} (what the retrain judge pairs)."""
    probs = probabilities(net, x) if len(x) else np.zeros((0, len(labels)))
    predicted = [labels[i] for i in probs.argmax(axis=1)]
    true = [s.genre for s in songs]
    extra = sorted({g for g in true if g not in labels})
    out = reports.metrics(true, predicted, labels + extra, len(songs) * windows)
    out["per_source"] = reports.per_group_accuracy([s.source for s in songs], true, predicted)
    out["ece"] = reports.ece(probs.max(axis=1) if len(x) else np.zeros(0),
                             [t == p for t, p in zip(true, predicted, strict=True)])
    if per_song:
        out["songs"] = [{"path": str(s.path), "genre": s.genre, "predicted": p}
                        for s, p in zip(songs, predicted, strict=True)]
    if lists is not None and lists[0] > 1:
        out["genre_lists"] = reports.list_metrics([str(s.path) for s in songs], true, probs,
                                                  labels, *lists)
    return out


def _labelled(songs: list[Song], x: np.ndarray, index: dict[str, int]) -> HeadData:
    keep = [i for i, s in enumerate(songs) if s.genre in index]
    return HeadData(x[keep].astype(np.float32),
                    np.array([index[songs[i].genre] for i in keep], dtype=np.int64))


def _base_embeddings(base_path: Path | None) -> tuple[np.ndarray, list[str]]:
    """The embeddings and genres a base bundle was trained on (empty when it has none)."""
    from safetensors.numpy import load_file

    if base_path is None or not (base_path / EMBEDDINGS_FILE).is_file():
        return np.zeros((0, 0), np.float32), []
    data = load_file(str(base_path / EMBEDDINGS_FILE))
    import json

    genres = json.loads((base_path / "training_genres.json").read_text(encoding="utf-8"))
    return data["embeddings"].astype(np.float32), list(genres)


def run(splits: dict[str, list[Song]], opts: TrainOptions, out_dir: Path, cache_dir: Any,
        summary: dict[str, Any], base: tuple[BundleMeta, BackboneHead, Path] | None
        ) -> TrainResult:
    """training._run for ``--arch backbone``."""
    import torch

    from classifier import bundle
    from classifier import model as cnn
    from classifier.predict import set_torch_threads
    from classifier.trainrun import (
        TrainResult,
        headline_metrics,
        looks_like_version,
        train_fingerprints,
    )

    set_torch_threads()
    arch_kwargs = (dict(base[0].arch_kwargs) if base
                   else cnn.arch_config("backbone", **opts.arch_kwargs))
    backbone = MSD_MUSICNN
    windows = opts.windows or DEFAULT_WINDOWS
    parts = {}
    decoded = 0
    skipped: list[dict[str, str]] = []
    for name in ("train", "val", "test"):
        e = embed_songs(splits[name], opts.params, windows, backbone, cache_dir,
                        opts.progress, opts.workers)
        parts[name] = e
        decoded += e.decoded
        skipped += e.skipped
    base_x, base_genres = _base_embeddings(base[2] if base else None)
    genres = sorted({s.genre for s in parts["train"].songs} | set(base_genres))
    labels = list(base[0].labels) if base else []
    labels += [g for g in genres if g not in labels]
    if len(labels) < 2:
        raise DatasetError(f"need at least two genres to tell apart, found {labels}")
    if not parts["train"].songs and not len(base_x):
        raise DatasetError("no readable training songs")
    index = {g: i for i, g in enumerate(labels)}
    train = _labelled(parts["train"].songs, parts["train"].embeddings, index)
    if len(base_x):
        train = HeadData(np.concatenate([train.x, base_x]),
                         np.concatenate([train.y, [index[g] for g in base_genres]]))
    val = _labelled(parts["val"].songs, parts["val"].embeddings, index)
    torch.manual_seed(opts.seed)
    net = cnn.build("backbone", len(labels), opts.params.n_mels, opts.params.frames,
                    **arch_kwargs)
    assert isinstance(net, torch.nn.Module)
    fit_head(net, train)  # type: ignore[arg-type]
    temperature = fit_temperature(net, val)  # type: ignore[arg-type]
    test_songs, test_x = parts["test"].songs, parts["test"].embeddings
    metrics = head_metrics(net, labels, test_songs, test_x, windows)  # type: ignore[arg-type]
    base_metrics = (head_metrics(base[1], base[0].labels, test_songs, test_x, windows)
                    if base else None)
    log.info("held-out test accuracy %.3f, ECE %.3f on %d songs", metrics["accuracy"],
             metrics["ece"], metrics["n_songs"])
    version = out_dir.name if looks_like_version(out_dir.name) else new_version_id()
    train_genres = [labels[i] for i in train.y]
    summary.update({
        "songs": {k: dataset.genre_counts(v.songs) for k, v in parts.items()},
        "windows_per_song": windows, "seed": opts.seed, "temperature": round(temperature, 4),
        "skipped": len(skipped), "base_embeddings": len(base_x),
        "head": "logistic regression" if not arch_kwargs.get("hidden") else "MLP",
        "backbone": backbone,
        # what `evaluate` and the retrain judge know it trained on, wherever the files go
        "train_fingerprints": train_fingerprints(parts["train"].songs),
    })
    headline = headline_metrics(metrics, base_metrics)
    headline["ece"] = metrics["ece"]
    meta = BundleMeta(version=version, labels=labels, params=opts.params, arch="backbone",
                      arch_kwargs=arch_kwargs, metrics=headline, training=summary,
                      parent=base[0].version if base else None)
    report = {"test": metrics, "base_test": base_metrics, "history": [],
              "skipped": skipped, "test_songs": [str(s.path) for s in test_songs]}
    with bundle.staged(out_dir) as tmp:
        bundle.write(tmp, net, meta)
        write_embeddings(tmp, train.x, train_genres)
        reports.write_json(tmp / "metrics.json", report)
        reports.plot_confusion(tmp / "confusion.png", metrics["confusion"], metrics["labels"],
                               f"held-out test songs: accuracy {metrics['accuracy']:.2f}, "
                               f"ECE {metrics['ece']:.2f}")
    return TrainResult(
        out_dir=out_dir, version=version, labels=labels, metrics=metrics,
        base_metrics=base_metrics, test_songs=[(str(s.path), s.genre) for s in test_songs],
        epochs_run=1, best_epoch=1, history=[], cache_hits=0, cache_misses=decoded,
        skipped=skipped, decoded=decoded,
    )


def write_embeddings(directory: Path, x: np.ndarray, genres: list[str]) -> None:
    """The training embeddings (float16) and their genres, into a bundle being staged."""
    import json

    from safetensors.numpy import save_file

    save_file({"embeddings": np.ascontiguousarray(x, dtype=np.float16)},
              str(directory / EMBEDDINGS_FILE))
    (directory / EMBEDDINGS_FILE).chmod(0o644)
    (directory / "training_genres.json").write_text(json.dumps(genres) + "\n", encoding="utf-8")
