"""``--arch backbone``: the frozen pretrained MSD_musicnn, a track embedding, a small head.

A track's embedding is the backbone's 753-d mid-end features averaged over every 3 s
patch of its K windows (classifier/musicnn.py, computed on ONNX Runtime:
classifier/musicnn_ort.py); the head is a logistic regression (or,
with ``hidden`` > 0, one hidden ReLU layer) over standardised embeddings, its logits
divided by a temperature fitted on held-out songs (calibrated confidence).

The bundle stores only the head (a few kB): the backbone's weights are the package's
(``classifier/backbones``); arch "backbone" means MSD_musicnn.

``forward`` takes the log-mel windows of ONE track, (K, 96, frames), and returns one row
of calibrated logits, so whole-track prediction (averaging rows) works unchanged.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from classifier.features import PATCH_FRAMES
from classifier.musicnn import EMBEDDING_DIM, MSD_MUSICNN
from classifier.musicnn_ort import OrtBackbone

# Patches per backbone call. On ONNX Runtime the cost per patch hardly depends on it (15.4
# ms at 1, 2 or 6 on one thread), but its memory arena keeps the largest call's buffers: a
# timbral block's conv output is 9 MB per patch; a session grew by ~45 MiB at 1 patch per
# call, ~90 MiB at 2 (benchmarks/bench_backbone.py).
PATCH_BATCH = 1


@lru_cache(maxsize=2)
def engine_for(name: str, threads: int) -> OrtBackbone:
    return OrtBackbone(name, threads)


def embedding_engine(name: str) -> OrtBackbone:
    """One ONNX Runtime session per process and thread count: the embedding's engine (as
    many threads as torch is allowed here; one in a scan's decode processes)."""
    return engine_for(name, torch.get_num_threads())


def window_patches(x: torch.Tensor) -> torch.Tensor:
    """(K, n_mels, frames) log-mel windows -> (K * frames // 187, 187, n_mels) patches."""
    k, n_mels, frames = x.shape
    if frames % PATCH_FRAMES:
        raise ValueError(f"windows of {frames} frames are not whole {PATCH_FRAMES}-frame patches")
    p = frames // PATCH_FRAMES
    return x.reshape(k, n_mels, p, PATCH_FRAMES).permute(0, 2, 3, 1).reshape(k * p,
                                                                             PATCH_FRAMES, n_mels)


def embed_windows(x: torch.Tensor, backbone: str = MSD_MUSICNN) -> torch.Tensor:
    """(EMBEDDING_DIM,) float32 track embedding of its (K, n_mels, frames) windows."""
    engine = embedding_engine(backbone)
    patches = window_patches(x.float()).numpy()
    parts = [engine.embed(patches[i : i + PATCH_BATCH])
             for i in range(0, len(patches), PATCH_BATCH)]
    return torch.from_numpy(np.concatenate(parts).mean(axis=0))


class BackboneHead(nn.Module):
    emb_mean: torch.Tensor
    emb_std: torch.Tensor
    temperature: torch.Tensor

    def __init__(self, n_labels: int, hidden: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = MSD_MUSICNN  # the one bundled backbone; another would be a new arch
        self.register_buffer("emb_mean", torch.zeros(EMBEDDING_DIM))
        self.register_buffer("emb_std", torch.ones(EMBEDDING_DIM))
        self.register_buffer("temperature", torch.ones(1))
        self.hidden = nn.Linear(EMBEDDING_DIM, hidden) if hidden > 0 else None
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden if hidden > 0 else EMBEDDING_DIM, n_labels)

    def set_input_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.emb_mean.copy_(mean)
        self.emb_std.copy_(std.clamp_min(1e-4))

    def logits(self, emb: torch.Tensor) -> torch.Tensor:
        """(N, n_labels) uncalibrated logits of (N, EMBEDDING_DIM) track embeddings."""
        x = (emb - self.emb_mean) / self.emb_std
        if self.hidden is not None:
            x = self.dropout(torch.relu(self.hidden(x)))
        return self.out(x)

    def calibrated(self, emb: torch.Tensor) -> torch.Tensor:
        return self.logits(emb) / self.temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(1, n_labels) calibrated logits of one track's (K, n_mels, frames) windows."""
        return self.calibrated(embed_windows(x, self.backbone)[None])
