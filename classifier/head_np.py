"""A backbone model's head applied with numpy: what a scan's process runs per track.

``BackboneHead`` (classifier/head.py, torch) is what is trained and saved; applying it to
a stored or freshly computed embedding is a standardisation, at most one hidden ReLU layer,
a linear layer and a temperature: a few thousand multiply-adds that do not need torch. A
scan's process (and the daemon's) therefore never imports torch for a backbone model: its
decode processes compute the embeddings on ONNX Runtime, and this applies the head. The
bundle is checked as ``bundle.load`` checks it — the feature parameters, the weights'
layers and shapes against the architecture (model.json), finite values — with the same
errors; tests/classifier/test_head_np.py holds both to the same answers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from classifier.bundle import (
    WEIGHTS_FILE,
    BundleError,
    BundleMeta,
    ModelBroken,
    ModelMismatch,
)
from classifier.features import FeatureParams
from classifier.musicnn_spec import EMBEDDING_DIM, N_MELS


def head_shapes(n_labels: int, hidden: int) -> dict[str, tuple[int, ...]]:
    """BackboneHead's state-dict shapes (tests hold them to the torch module's)."""
    shapes: dict[str, tuple[int, ...]] = {
        "emb_mean": (EMBEDDING_DIM,), "emb_std": (EMBEDDING_DIM,), "temperature": (1,)}
    if hidden > 0:
        shapes |= {"hidden.weight": (hidden, EMBEDDING_DIM), "hidden.bias": (hidden,)}
    shapes |= {"out.weight": (n_labels, hidden if hidden > 0 else EMBEDDING_DIM),
               "out.bias": (n_labels,)}
    return shapes


class NumpyHead:
    """The head of a backbone bundle, loaded and checked; :meth:`probabilities`."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.w = weights

    @classmethod
    def load(cls, path: Path, meta: BundleMeta,
             expect_params: FeatureParams | None = None) -> NumpyHead:
        """Raises ModelMismatch, BundleError, ModelBroken as ``bundle.load`` does."""
        from safetensors import SafetensorError, safe_open
        from safetensors.numpy import load_file

        from classifier import modeljson

        if meta.arch != "backbone":
            raise ValueError(f"{path}: a {meta.arch!r} model has no backbone head")
        if expect_params is not None and meta.params != expect_params:
            raise ModelMismatch(
                f"{path}: feature parameters {meta.params.as_dict()} differ from the expected "
                f"{expect_params.as_dict()}")
        n_labels = len(meta.labels)
        try:
            modeljson.check_arch(meta.arch, meta.arch_kwargs)
            hidden = int(modeljson.build_kwargs(meta.arch_kwargs).get("hidden", 0))
            if meta.params.n_mels != N_MELS:
                raise ValueError(f"the backbone takes {N_MELS} mel bands, not "
                                 f"{meta.params.n_mels}")
        except (modeljson.SchemaError, TypeError, ValueError) as e:
            raise ModelMismatch(f"{path / 'model.json'}: cannot build architecture "
                                f"{meta.arch!r}: {e}") from e
        weights = path / WEIGHTS_FILE
        try:
            with safe_open(str(weights), framework="numpy") as f:
                found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
            differs = modeljson.compare_shapes(head_shapes(n_labels, hidden), found, n_labels)
            if differs is not None:
                raise ModelMismatch(f"{path}: the weights do not fit model.json: {differs}")
            state = load_file(str(weights))
        except (OSError, SafetensorError) as e:
            raise BundleError(f"{weights}: unreadable ({e})") from e
        w = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}
        for key, value in w.items():
            if not np.isfinite(value).all():
                raise ModelBroken(f"{path}: the weights hold NaN or infinite values (layer "
                                  f"{key!r}); the model is damaged: activate another one "
                                  "(genred models activate) or retrain")
        return cls(w)

    def probabilities(self, emb: np.ndarray) -> np.ndarray:
        """(N, n_labels) float64 calibrated softmax of (N, EMBEDDING_DIM) embeddings, in
        float32 like BackboneHead.calibrated, then softmax."""
        with np.errstate(all="ignore"):  # a damaged head's inf/NaN: the caller's ModelBroken
            return self._probabilities(emb)

    def _probabilities(self, emb: np.ndarray) -> np.ndarray:
        w = self.w
        x = (np.asarray(emb, np.float32) - w["emb_mean"]) / w["emb_std"]
        if "hidden.weight" in w:
            x = np.maximum(x @ w["hidden.weight"].T + w["hidden.bias"], 0.0)
        logits = (x @ w["out.weight"].T + w["out.bias"]) / w["temperature"]
        z = logits.astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True))
