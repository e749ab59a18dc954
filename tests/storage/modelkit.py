"""A small real model bundle for catalogue, worker and CLI tests.

The same code path as any bundle (safetensors + JSON, ``Classifier.load``), with short
clips and few mel bands so decoding and inference take milliseconds. Its weights are
random (seeded): tests that use it check the pipeline, never accuracy.
"""

from __future__ import annotations

from pathlib import Path

from tests.audiogen import STYLES

LABELS = list(STYLES)


def tiny_bundle(out_dir: Path, version: str = "tiny-v1", seed: int = 0) -> Path:
    """Write a 4-genre bundle (5 s clips, 32 mels) to ``out_dir``; returns its path."""
    import torch

    from classifier import bundle
    from classifier import model as cnn
    from classifier.features import FeatureParams

    params = FeatureParams(clip_seconds=5.0, n_mels=32, hop_length=1024)
    torch.manual_seed(seed)
    net = cnn.build("pooled", len(LABELS), params.n_mels, params.frames)
    meta = bundle.BundleMeta(version=version, labels=LABELS, params=params, arch="pooled")
    return bundle.save(out_dir, net, meta)
