"""MSD_musicnn (Pons & Serra, 2019) as a plain ``nn.Module``: a pretrained backbone.

The network of the ``musicnn`` package (0.1.0, ISC licence; see ``backbones/LICENSE``),
trained on the Million Song Dataset's 50 most frequent last.fm tags, ported from its
TensorFlow-1 graph (``musicnn/models.py: build_musicnn``). The weights were converted once
by ``tools/musicnn/convert.py`` into ``backbones/msd_musicnn.safetensors``; that script also
proves the port against the original graph on real audio.

Input: (batch, 187, 96) patches of ``log10(1 + 10000 * mel)`` (time, mel band), as
``features.musicnn_patches`` makes them. Layout notes for a reader comparing with the TF
graph: tensors here are (batch, channels, time, freq) where TF had (batch, time, freq,
channels); TF's 'same' padding of an even kernel k pads (k-1)//2 before and k//2 after.

Exact speed-up: each front-end block is conv -> ReLU -> BatchNorm -> max over frequency.
ReLU and an affine BatchNorm are monotone per channel (increasing where the BN scale is
positive, decreasing where negative), so the max over frequency can be taken first — of the
conv output where the scale is positive, of its minimum where it is negative — and the
ReLU + BN applied to (batch, channels, time) instead of (batch, channels, time, freq); and
the minimum as the maximum of the negated convolution (see FreqPooledBlock.forward).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from classifier.musicnn_spec import BN_EPS, MSD_MUSICNN, N_MELS, WEIGHTS


class FrozenBN(nn.Module):
    """Inference-only batch norm over dim 1 with TF's epsilon: y = x * scale + shift."""

    gamma: torch.Tensor
    beta: torch.Tensor
    mean: torch.Tensor
    var: torch.Tensor

    def __init__(self, n: int) -> None:
        super().__init__()
        for name, value in (("gamma", 1.0), ("beta", 0.0), ("mean", 0.0), ("var", 1.0)):
            self.register_buffer(name, torch.full((n,), value))

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        scale = self.gamma / torch.sqrt(self.var + BN_EPS)
        return scale, self.beta - self.mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self.scale_shift()
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale.view(shape) + shift.view(shape)


class FreqPooledBlock(nn.Module):
    """conv -> ReLU -> BN -> max over frequency, computed in the exact cheap order."""

    def __init__(self, filters: int, kernel: tuple[int, int], time_pad: tuple[int, int],
                 freq_pad: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, filters, kernel_size=kernel)
        self.bn = FrozenBN(filters)
        self.pad = (freq_pad[0], freq_pad[1], time_pad[0], time_pad[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self.bn.scale_shift()
        # The minimum of a channel whose BN scale is negative is minus the maximum of its
        # negated convolution (negating every weight and the bias negates each product and
        # sum exactly): one max over (B, C, T, F') instead of a max, a min and a select —
        # those passes over the conv output were a third of a timbral block's time.
        sign = torch.where(scale >= 0, 1.0, -1.0)
        bias = self.conv.bias
        assert bias is not None
        y = F.conv2d(F.pad(x, self.pad), self.conv.weight * sign.view(-1, 1, 1, 1),
                     bias * sign)  # (B, C, T, F')
        pooled = y.amax(dim=3) * sign.view(1, -1, 1)
        return torch.relu(pooled) * scale.view(1, -1, 1) + shift.view(1, -1, 1)


class MidendLayer(nn.Module):
    """A (7, all features) convolution = a 1-D convolution over time; ReLU then BN."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size=7, padding=3)
        self.bn = FrozenBN(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(torch.relu(self.conv(x)))


class Musicnn(nn.Module):
    """MSD_musicnn. ``forward`` returns the 50 tag logits; :meth:`features` returns the
    named intermediate outputs the original ``musicnn.extractor`` exposes."""

    def __init__(self, n_mels: int = N_MELS, n_tags: int = 50, midend: int = 64,
                 backend: int = 200) -> None:
        super().__init__()
        timbral, temporal = 204, 51  # int(1.6 * 128), int(1.6 * 32)
        self.input_bn = FrozenBN(1)
        self.timbral = nn.ModuleList([
            FreqPooledBlock(timbral, (7, int(0.4 * n_mels)), (3, 3), (0, 0)),
            FreqPooledBlock(timbral, (7, int(0.7 * n_mels)), (3, 3), (0, 0)),
        ])
        self.temporal = nn.ModuleList([
            FreqPooledBlock(temporal, (k, 1), ((k - 1) // 2, k // 2), (0, 0))
            for k in (128, 64, 32)
        ])
        front = 2 * timbral + 3 * temporal
        self.midend = nn.ModuleList([
            MidendLayer(front, midend), MidendLayer(midend, midend), MidendLayer(midend, midend)
        ])
        dense = front + 3 * midend
        self.pool_bn = FrozenBN(2 * dense)
        self.dense = nn.Linear(2 * dense, backend)
        self.dense_bn = FrozenBN(backend)
        self.out = nn.Linear(backend, n_tags)

    def midend_features(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, 753, T): the front end's 561 features and the three mid-end layers'."""
        x = self.input_bn(patches.unsqueeze(1))  # (B, 1, T, F)
        front = torch.cat([b(x) for b in (*self.timbral, *self.temporal)], dim=1)
        c1 = self.midend[0](front)
        c2 = self.midend[1](c1) + c1
        c3 = self.midend[2](c2) + c2
        return torch.cat([front, c1, c2, c3], dim=1)

    def features(self, patches: torch.Tensor) -> dict[str, torch.Tensor]:
        """mean_pool, max_pool (B, 753), penultimate (B, 200), logits and taggram
        (B, 50: the tags' sigmoid probabilities) of (B, 187, 96) patches."""
        feats = self.midend_features(patches)
        max_pool = feats.amax(dim=2)
        mean_pool = feats.mean(dim=2)
        # TF flattened a (753, 2) [max, mean] pair per feature: interleaved.
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)
        penultimate = self.dense_bn(torch.relu(self.dense(self.pool_bn(flat))))
        logits = self.out(penultimate)
        return {"mean_pool": mean_pool, "max_pool": max_pool, "penultimate": penultimate,
                "logits": logits, "taggram": torch.sigmoid(logits)}

    def embed(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, 753) per-patch embedding: the mid-end features averaged over time."""
        return self.midend_features(patches).mean(dim=2)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.features(patches)["logits"]


def load_backbone(name: str = MSD_MUSICNN) -> Musicnn:
    """The pretrained backbone in eval mode, weights from the package's safetensors file."""
    from safetensors.torch import load_file

    if name not in WEIGHTS:
        raise ValueError(f"unknown backbone {name!r}; one of {', '.join(WEIGHTS)}")
    net = Musicnn()
    net.load_state_dict(load_file(str(WEIGHTS[name])), strict=True)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net
