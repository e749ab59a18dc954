"""The CNNs, as plain ``nn.Module``s and nothing else.

Both take a batch of log-mel spectrograms shaped (batch, n_mels, frames) and return
logits (batch, n_labels). The last layer is always ``self.out`` (an ``nn.Linear``) so
training can grow the genre set by adding rows to it.

- ``paper``: the network of ../shared/docs/paper.md — a (n_mels, 1) convolution that
  summarises each FFT frame, ReLU, 2x2 max-pool; a 5x5 convolution, BatchNorm, ReLU, 2x2
  max-pool; flatten, dropout, one fully connected layer (<= 1024 units), output.
- ``pooled`` (the default before the pretrained backbone): the same idea of convolving
  along time with all mel bands as input, but with per-mel-band input standardisation
  (statistics of the training data, stored as buffers), three short temporal convolutions and
  global average + max pooling over time instead of a giant flatten — ~20x fewer weights,
  any clip length, and less room to memorise a small training set.
- ``backbone`` (the default, archs.DEFAULT_ARCH): the pretrained MSD_musicnn, frozen, and a
  small head over its track embedding (classifier/head.py); its input is musicnn's
  log-mel, not the paper's.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from classifier.archs import ARCHS


class PaperCNN(nn.Module):
    def __init__(
        self,
        n_labels: int,
        n_mels: int = 323,
        frames: int = 323,
        channels: tuple[int, int] = (16, 32),
        hidden: int = 1024,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, kernel_size=(n_mels, 1), padding=2)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=5, padding=2)
        self.bn2 = nn.BatchNorm2d(c2)
        height = (n_mels + 4 - n_mels + 1) // 2 // 2
        width = (frames + 4) // 2 // 2
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c2 * height * width, hidden)
        self.out = nn.Linear(hidden, n_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # log-mels are dB in [-80, 0]; a fixed affine maps them to [0, 1] (no weights).
        x = (x / 80.0 + 1.0).unsqueeze(1)
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        x = self.dropout(torch.flatten(x, 1))
        return self.out(torch.relu(self.fc(x)))


class PooledCNN(nn.Module):
    mel_mean: torch.Tensor
    mel_std: torch.Tensor

    def __init__(
        self,
        n_labels: int,
        n_mels: int = 323,
        channels: int = 64,
        hidden: int = 128,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        # Per-mel-band standardisation of the input, fixed from the training data (see
        # set_input_stats): unlike a BatchNorm it does not depend on how many steps ran.
        self.register_buffer("mel_mean", torch.full((n_mels,), -40.0))
        self.register_buffer("mel_std", torch.full((n_mels,), 20.0))

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv1d(c_in, c_out, kernel_size=3, padding=1),
                nn.BatchNorm1d(c_out),
                nn.ReLU(),
                nn.MaxPool1d(2),
            )

        self.features = nn.Sequential(
            block(n_mels, channels), block(channels, channels), block(channels, channels)
        )
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * channels, hidden)
        self.out = nn.Linear(hidden, n_labels)

    def set_input_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-mel-band mean and standard deviation of the training log-mels."""
        self.mel_mean.copy_(mean)
        self.mel_std.copy_(std.clamp_min(1e-3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mel_mean[:, None]) / self.mel_std[:, None]
        x = self.features(x)
        x = torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)
        x = self.dropout(x)
        return self.out(torch.relu(self.fc(x)))


def arch_config(arch: str, **kwargs: Any) -> dict[str, Any]:
    """The architecture's keyword arguments with every default filled in, for the bundle:
    a saved model must not change meaning when a default here changes."""
    from classifier.head import BackboneHead

    classes: dict[str, type[nn.Module]] = {"paper": PaperCNN, "pooled": PooledCNN,
                                           "backbone": BackboneHead}
    if arch not in classes:
        raise ValueError(f"unknown architecture {arch!r}; one of {', '.join(ARCHS)}")
    skip = {"self", "n_labels", "n_mels", "frames"}
    params = inspect.signature(classes[arch]).parameters
    unknown = set(kwargs) - set(params)
    if unknown:
        raise ValueError(f"unknown options for {arch}: {sorted(unknown)}")
    out = {k: p.default for k, p in params.items() if k not in skip}
    out.update(kwargs)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def build(arch: str, n_labels: int, n_mels: int, frames: int, **kwargs: Any) -> nn.Module:
    """The network named ``arch`` (one of ARCHS) for these labels and input shape."""
    if arch == "paper":
        if "channels" in kwargs:
            kwargs["channels"] = tuple(kwargs["channels"])
        return PaperCNN(n_labels, n_mels=n_mels, frames=frames, **kwargs)
    if arch == "pooled":
        return PooledCNN(n_labels, n_mels=n_mels, **kwargs)
    if arch == "backbone":
        from classifier.head import BackboneHead
        from classifier.musicnn_spec import N_MELS

        if n_mels != N_MELS:
            raise ValueError(f"the backbone takes {N_MELS} mel bands, not {n_mels}")
        return BackboneHead(n_labels, **kwargs)
    raise ValueError(f"unknown architecture {arch!r}; one of {', '.join(ARCHS)}")
