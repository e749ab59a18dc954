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

import torch
from torch import nn

from classifier import musicnn_ort
from classifier.musicnn_spec import EMBEDDING_DIM, MSD_MUSICNN


def embed_windows(x: torch.Tensor, backbone: str = MSD_MUSICNN) -> torch.Tensor:
    """(EMBEDDING_DIM,) float32 track embedding of its (K, n_mels, frames) windows."""
    return torch.from_numpy(musicnn_ort.embed_windows(x.numpy(), backbone))


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
