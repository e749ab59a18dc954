"""The optimisation loop: class-balanced sampling, SpecAugment-style masking, early
stopping on validation songs, and (when growing a model) distillation from the base to
soften forgetting of its genres (it cannot keep a genre none of the training songs has).
Torch-only; data arrives as numpy arrays, float16 or float32 (features are held as float16,
the feature cache's precision, and each batch becomes float32 as it is drawn)."""

from __future__ import annotations

import copy
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from classifier.model import PooledCNN

log = logging.getLogger(__name__)


@dataclass
class FitOptions:
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 8  # epochs without validation improvement before stopping
    min_batches: int = 4  # an epoch draws at least this many batches (small data sets)
    augment: bool = True
    distill: float = 1.0  # weight of the keep-the-old-genres term when growing
    temperature: float = 2.0
    seed: int = 0
    progress: bool = True


@dataclass
class SongSet:
    """Whole songs for validation/test: per song a (K, n_mels, frames) array."""

    feats: list[np.ndarray]
    labels: list[int]

    @property
    def n_clips(self) -> int:
        return sum(f.shape[0] for f in self.feats)


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0


def as_batch(x: np.ndarray) -> torch.Tensor:
    """A float32 tensor of clips held as float16 or float32."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def input_stats(x: np.ndarray, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mel-band mean and standard deviation of clips (N, n_mels, frames), a chunk at a
    time: no float32/float64 copy of the whole training set."""
    total = np.zeros(x.shape[1])
    squares = np.zeros(x.shape[1])
    for i in range(0, len(x), chunk):
        part = x[i : i + chunk].astype(np.float64)
        total += part.sum(axis=(0, 2))
        squares += (part**2).sum(axis=(0, 2))
    n = len(x) * x.shape[2]
    mean = total / n
    var = np.maximum(squares / n - mean**2, 0.0) * n / max(n - 1, 1)
    return torch.from_numpy(mean).float(), torch.from_numpy(np.sqrt(var)).float()


def song_probabilities(net: nn.Module, feats: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """(n_songs, n_labels): each song's clip probabilities averaged."""
    net.eval()
    out = []
    with torch.inference_mode():
        for f in feats:
            probs = [
                torch.softmax(net(as_batch(f[i : i + batch])), dim=1)
                for i in range(0, f.shape[0], batch)
            ]
            out.append(torch.cat(probs).mean(dim=0).numpy())
    return np.stack(out) if out else np.zeros((0, 0))


def spec_augment(x: torch.Tensor, gen: torch.Generator, max_width: int = 30) -> torch.Tensor:
    """Two frequency and two time masks per example, filled with the example's mean."""
    x = x.clone()
    batch, n_mels, frames = x.shape
    fill = x.mean(dim=(1, 2))
    for axis, size in ((1, n_mels), (2, frames)):
        for _ in range(2):
            width = torch.randint(0, max_width + 1, (batch,), generator=gen)
            start = (torch.rand(batch, generator=gen) * (size - width)).long()
            pos = torch.arange(size)
            mask = (pos[None, :] >= start[:, None]) & (pos[None, :] < (start + width)[:, None])
            mask3 = mask[:, :, None] if axis == 1 else mask[:, None, :]
            x = torch.where(mask3, fill[:, None, None], x)
    return x


def _balanced_order(y: np.ndarray, n: int, gen: torch.Generator) -> torch.Tensor:
    """An epoch of ``n`` indices drawn so each genre is equally likely (with replacement)."""
    counts = np.bincount(y)
    weights = torch.tensor(1.0 / counts[y], dtype=torch.float64)
    return torch.multinomial(weights, n, replacement=True, generator=gen)


def _val_scores(net: nn.Module, val: SongSet) -> tuple[float, float]:
    probs = song_probabilities(net, val.feats)
    y = np.asarray(val.labels)
    accuracy = float((probs.argmax(axis=1) == y).mean())
    loss = float(-np.log(probs[np.arange(len(y)), y] + 1e-9).mean())
    return accuracy, loss


def _distill_loss(
    logits: torch.Tensor, base: nn.Module, x: torch.Tensor, temperature: float
) -> torch.Tensor:
    with torch.no_grad():
        target = torch.softmax(base(x) / temperature, dim=1)
    n_old = target.shape[1]
    log_probs = F.log_softmax(logits[:, :n_old] / temperature, dim=1)
    return F.kl_div(log_probs, target, reduction="batchmean") * temperature**2


@dataclass
class Teacher:
    """The base model when growing or fine-tuning, and optional unlabelled *anchor* clips
    (e.g. other tracks of the library): on them the new model is taught to answer as the
    base did and to give the new genres nothing. That keeps base genres that have no
    labelled songs, which distillation on the labelled songs alone cannot."""

    net: nn.Module
    anchors: np.ndarray | None = None


def _anchor_loss(net: nn.Module, teacher: Teacher, gen: torch.Generator, size: int,
                 temperature: float) -> torch.Tensor:
    assert teacher.anchors is not None
    idx = torch.randint(0, len(teacher.anchors), (max(2, size),), generator=gen).numpy()
    xa = as_batch(teacher.anchors[idx])
    logits = net(xa)
    with torch.no_grad():
        old = torch.softmax(teacher.net(xa) / temperature, dim=1)
    target = torch.cat([old, old.new_zeros(len(idx), logits.shape[1] - old.shape[1])], dim=1)
    log_probs = F.log_softmax(logits / temperature, dim=1)
    return F.kl_div(log_probs, target, reduction="batchmean") * temperature**2


def _epoch(
    net: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    opt: torch.optim.Optimizer,
    options: FitOptions,
    gen: torch.Generator,
    teacher: Teacher | None,
) -> tuple[float, float]:
    net.train()
    order = _balanced_order(y, max(len(y), options.min_batches * options.batch_size), gen)
    total_loss, correct = 0.0, 0
    for i in range(0, len(order), options.batch_size):
        idx = order[i : i + options.batch_size].numpy()
        if len(idx) < 2:  # BatchNorm needs two examples
            continue
        xb = as_batch(x[idx])
        yb = torch.from_numpy(y[idx]).long()
        if options.augment:
            xb = spec_augment(xb, gen)
        logits = net(xb)
        loss = F.cross_entropy(logits, yb)
        if teacher is not None and options.distill > 0:
            loss = loss + options.distill * _distill_loss(logits, teacher.net, xb,
                                                          options.temperature)
            if teacher.anchors is not None and len(teacher.anchors):
                loss = loss + options.distill * _anchor_loss(
                    net, teacher, gen, len(idx) // 2, options.temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total_loss += float(loss.detach()) * len(idx)
        correct += int((logits.argmax(dim=1) == yb).sum())
    return total_loss / len(order), correct / len(order)


def fit(
    net: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    val: SongSet,
    options: FitOptions,
    teacher: Teacher | None = None,
) -> FitResult:
    """Train ``net`` in place on clips ``x`` (N, n_mels, frames) with labels ``y``; keep
    the weights of the best validation epoch (song accuracy, then loss). With no
    validation songs the training loss decides. ``teacher`` (the base, eval mode) is
    distilled into the first rows of the output when growing or fine-tuning a model."""
    torch.manual_seed(options.seed)
    if teacher is None and isinstance(net, PooledCNN):
        net.set_input_stats(*input_stats(x))
    gen = torch.Generator().manual_seed(options.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    result = FitResult()
    best: tuple[float, float] | None = None
    best_state: dict[str, Any] = copy.deepcopy(net.state_dict())
    bar = tqdm(range(1, options.epochs + 1), desc="training", unit="epoch", file=sys.stderr,
               disable=not options.progress)
    for epoch in bar:
        train_loss, train_acc = _epoch(net, x, y, opt, options, gen, teacher)
        val_acc, val_loss = _val_scores(net, val) if val.feats else (train_acc, train_loss)
        result.history.append({"epoch": epoch, "train_loss": train_loss,
                               "train_accuracy": train_acc, "val_loss": val_loss,
                               "val_accuracy": val_acc})
        bar.set_postfix(loss=f"{train_loss:.3f}", val_acc=f"{val_acc:.3f}")
        if not options.progress:  # no bar (a service, a pipe): say it in the log instead
            log.info("epoch %d/%d: loss %.3f, validation accuracy %.3f",
                     epoch, options.epochs, train_loss, val_acc)
        score = (val_acc, -val_loss)
        if best is None or score > best:
            best, result.best_epoch = score, epoch
            best_state = copy.deepcopy(net.state_dict())
        elif epoch - result.best_epoch >= options.patience:
            log.info("early stop at epoch %d (best %d)", epoch, result.best_epoch)
            break
    net.load_state_dict(best_state)
    net.eval()
    return result
