"""Whole-track prediction: K clips spread over the track, probabilities averaged.

``Classifier.features`` (decode + log-mel, no torch) is safe to run in worker processes;
``Classifier.predict_features`` (torch) runs where the model lives. ``classify`` is both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classifier import audio
from classifier.audio import AudioInfo
from classifier.bundle import BundleMeta, ModelBroken, read_meta
from classifier.features import FeatureParams, log_mel
from classifier.store import STARTER_DIR, ModelStore

if TYPE_CHECKING:
    from torch import nn

    from classifier.head_np import NumpyHead

log = logging.getLogger(__name__)

DEFAULT_CLIPS = 3
# Audio shorter than this gets a reason, not a genre (a 1 s test file is no song). For
# backbone models; the older architectures keep classifying short files as they did.
MIN_SECONDS = {"backbone": 5.0}


class Unclassifiable(Exception):
    """The audio decodes but is no music to judge (too short, digitally silent); the
    message is the reason to record, e.g. "too short to classify: 1.0 s"."""


@dataclass(frozen=True)
class Prediction:
    genre: str
    confidence: float
    probabilities: dict[str, float]
    model: str  # version id of the model that predicted
    duration: float
    format: str


def set_torch_threads() -> None:
    """Use the cores we may (musicnn_ort.default_threads: GENRED_TORCH_THREADS, else all,
    at most 4)."""
    import torch

    from classifier.musicnn_ort import default_threads

    n = default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def clip_features(clips: list[np.ndarray], params: FeatureParams) -> np.ndarray:
    """(K, n_mels, frames) float32 from K decoded clips."""
    return np.stack([log_mel(c, params) for c in clips]).astype(np.float32)


def track_features(
    path: str | Path, params: FeatureParams, n_clips: int
) -> tuple[AudioInfo, np.ndarray]:
    """Decode K spread clips of ``path`` and compute their log-mels. Raises UnreadableAudio."""
    info, clips = audio.read_clips(
        path, n_clips, clip_seconds=params.clip_seconds, sr=params.sample_rate,
        resampler=params.resampler,
    )
    return info, clip_features(clips, params)


def check_classifiable(info: AudioInfo, feats: np.ndarray, min_seconds: float) -> None:
    """Raises Unclassifiable for audio shorter than ``min_seconds`` (by the container's
    duration; unknown durations pass) or digitally silent (every sample zero gives a
    constant log-mel in both front ends)."""
    if 0.0 < info.duration < min_seconds:
        raise Unclassifiable(f"too short to classify: {info.duration:.1f} s")
    if feats.size and float(feats.max()) == float(feats.min()):
        raise Unclassifiable("silent")


def track_embedding(feats: np.ndarray, backbone: str) -> np.ndarray:
    """(EMBEDDING_DIM,) track embedding of K windows' log-mels, at the store's float16
    precision: a track judged from its stored embedding gets the very answer it got when
    it was decoded. ONNX Runtime, no torch (classifier/musicnn_ort.py)."""
    from classifier.musicnn_ort import embed_windows

    return embed_windows(feats, backbone).astype(np.float16).astype(np.float32)


@dataclass(frozen=True)
class Extraction:
    """What a model needs of a track, computed where the track is decoded (a scan's decode
    processes): ``windows`` windows' log-mels, or for a backbone model (``backbone`` set)
    the track embedding, 3 kB instead of the windows' log-mels, after the checks of
    :func:`check_classifiable`. Picklable: it travels to the decode processes."""

    params: FeatureParams
    windows: int
    backbone: str | None = None
    min_seconds: float = 0.0

    def embedding(self, info: AudioInfo, clips: list[np.ndarray]) -> np.ndarray:
        """The track embedding of decoded ``clips``. Raises Unclassifiable."""
        assert self.backbone is not None
        feats = clip_features(clips, self.params)
        check_classifiable(info, feats, self.min_seconds)
        return track_embedding(feats, self.backbone)


class Classifier:
    """A loaded model bundle ready to classify files."""

    def __init__(self, path: Path, meta: BundleMeta, clips_per_track: int = DEFAULT_CLIPS,
                 min_seconds: float | None = None):
        self.path = path
        self.min_seconds = (MIN_SECONDS.get(meta.arch, 0.0) if min_seconds is None
                            else min_seconds)
        self.meta = meta
        self.version = meta.version
        self.labels = list(meta.labels)
        self.params = meta.params
        self.clips_per_track = clips_per_track
        self._net: nn.Module | None = None
        self._head: NumpyHead | None = None

    @classmethod
    def load(
        cls,
        path_or_version: str | Path | None = None,
        store: ModelStore | None = None,
        clips_per_track: int = DEFAULT_CLIPS,
    ) -> Classifier:
        """The bundle at a path, a version id in ``store`` ('starter' = the bundled one),
        or (None) the store's active model / the bundled starter. Without a store only
        paths and 'starter' resolve. Reads only the metadata; weights load (torch) on the
        first prediction. Raises ModelNotFound, BundleError, ModelMismatch."""
        if path_or_version is None or str(path_or_version) == "":
            path = store.active() if store else STARTER_DIR
        else:
            path = (store or ModelStore(STARTER_DIR.parent)).resolve(path_or_version)
        return cls(path, read_meta(path), clips_per_track)

    @property
    def net(self) -> nn.Module:
        if self._net is None:
            from classifier import bundle

            set_torch_threads()
            _, self._net = bundle.load(self.path, expect_params=self.params)
        return self._net

    @property
    def head(self) -> NumpyHead:
        """A backbone model's head, applied with numpy (classifier/head_np.py): checked as
        :attr:`net` is, without torch."""
        if self._head is None:
            from classifier.head_np import NumpyHead

            self._head = NumpyHead.load(self.path, self.meta, expect_params=self.params)
        return self._head

    def ready(self) -> None:
        """Load what predictions need now (a damaged bundle fails here, not mid-work): a
        backbone model's head (no torch), else the network (torch)."""
        if self.embeds:
            self.head  # noqa: B018
        else:
            self.net  # noqa: B018

    def features(self, path: str | Path) -> tuple[AudioInfo, np.ndarray]:
        """(info, (K, n_mels, frames) log-mels). No torch: safe in a worker process.
        Raises UnreadableAudio."""
        return track_features(path, self.params, self.clips_per_track)

    def probabilities(self, feats: np.ndarray) -> np.ndarray:
        """(K, n_labels) softmax probabilities for K clips' log-mels. Raises ModelBroken
        when the model's outputs are not finite numbers (damaged weights that loaded): a
        NaN confidence is neither JSON nor a value the catalogue can hold."""
        import torch

        if feats.ndim != 3 or feats.shape[1] != self.params.n_mels:
            raise ValueError(f"expected (K, {self.params.n_mels}, frames), got {feats.shape}")
        with torch.inference_mode():
            logits = self.net(torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)))
            probs = torch.softmax(logits, dim=1).numpy().astype(np.float64)
        if not np.isfinite(probs).all():
            raise ModelBroken(f"{self.path}: the model gives outputs that are not numbers "
                              "(NaN or infinite); it is damaged: activate another one "
                              "(genred models activate) or retrain")
        return probs

    def check_classifiable(self, info: AudioInfo, feats: np.ndarray) -> None:
        """See :func:`check_classifiable`, with this model's ``min_seconds``."""
        check_classifiable(info, feats, self.min_seconds)

    @property
    def embeds(self) -> bool:
        """A backbone model: a track is one stored embedding, and the head judges that."""
        return self.meta.arch == "backbone"

    def embedding_key(self) -> str:
        """The embedding store's key for this model's backbone, front end and windows."""
        from classifier.embeddings import store_key

        return store_key(self.backbone, self.params, self.clips_per_track)

    def embedding(self, feats: np.ndarray) -> np.ndarray:
        """(EMBEDDING_DIM,) track embedding of K windows' log-mels (backbone models), at
        the store's float16 precision: a track judged from its stored embedding gets the
        very answer it got when it was decoded."""
        if not self.embeds:
            raise ValueError(f"{self.path}: a {self.meta.arch!r} model has no embeddings")
        self.ready()  # a damaged bundle fails before the backbone runs
        return track_embedding(feats, self.backbone)

    @property
    def backbone(self) -> str:
        from classifier.musicnn_spec import MSD_MUSICNN

        return MSD_MUSICNN  # arch "backbone" is MSD_musicnn (classifier/head.py)

    @property
    def extraction(self) -> Extraction:
        """What a decode process computes of a track for this model."""
        return Extraction(self.params, self.clips_per_track,
                          self.backbone if self.embeds else None, self.min_seconds)

    def predict_embedding(self, emb: np.ndarray, duration: float, fmt: str) -> Prediction:
        """The Prediction of a backbone model from a track's embedding (no decoding, no
        torch: the head is applied with numpy)."""
        probs = self.head.probabilities(np.asarray(emb, np.float32)[None])
        if not np.isfinite(probs).all():
            raise ModelBroken(f"{self.path}: the model gives outputs that are not numbers "
                              "(NaN or infinite); it is damaged: activate another one "
                              "(genred models activate) or retrain")
        return self._prediction(probs[0], duration, fmt)

    def predict_features(self, info: AudioInfo, feats: np.ndarray) -> Prediction:
        """Average the clips' probabilities into one whole-track Prediction (a backbone
        model: the head's answer on the track's embedding). Raises Unclassifiable (see
        check_classifiable)."""
        self.check_classifiable(info, feats)
        if self.embeds:
            return self.predict_embedding(self.embedding(feats), info.duration, info.format)
        return self._prediction(self.probabilities(feats).mean(axis=0), info.duration,
                                info.format)

    def _prediction(self, probs: np.ndarray, duration: float, fmt: str) -> Prediction:
        best = int(np.argmax(probs))
        return Prediction(
            genre=self.labels[best],
            confidence=float(probs[best]),
            probabilities={g: float(p) for g, p in zip(self.labels, probs, strict=True)},
            model=self.version,
            duration=duration,
            format=fmt,
        )

    def classify(self, path: str | Path) -> Prediction:
        """features + predict_features. Raises UnreadableAudio."""
        info, feats = self.features(path)
        return self.predict_features(info, feats)

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "path": str(self.path), "labels": self.labels}
