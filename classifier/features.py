"""The one log-mel function: training and inference both call :func:`log_mel`.

The paper's input: a 30 s mono clip at 22050 Hz, STFT with n_fft 2048 and hop 2048
(centred frames), 323 mel bands, power in dB relative to the clip's loudest bin (so the
overall loudness of a recording — a property of its mastering, not its genre — is not a
feature), floored 80 dB below it. A 30 s clip gives exactly 323x323.

No torch here: this runs in worker processes.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FeatureParams:
    sample_rate: int = 22050
    clip_seconds: float = 30.0
    n_fft: int = 2048
    hop_length: int = 2048
    n_mels: int = 323

    @property
    def clip_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)

    @property
    def frames(self) -> int:
        """Time frames per clip (centred STFT)."""
        return 1 + self.clip_samples // self.hop_length

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureParams:
        """Raises ValueError naming unknown or missing keys."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        missing = names - set(data)
        if unknown or missing:
            raise ValueError(
                f"feature params: unknown {sorted(unknown)}, missing {sorted(missing)}"
            )
        return cls(**{k: type(getattr(cls(), k))(v) for k, v in data.items()})


@lru_cache(maxsize=4)
def _mel_basis(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    import librosa

    with warnings.catch_warnings():
        # 323 bands over 1025 FFT bins leaves a few low bands empty; the paper's setting.
        warnings.simplefilter("ignore", UserWarning)
        return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels).astype(np.float32)


def log_mel(clip: np.ndarray, params: FeatureParams) -> np.ndarray:
    """float32 (n_mels, frames) log-mel spectrogram of a mono clip. The clip should hold
    ``params.clip_samples`` samples (audio.read_clip gives exactly that)."""
    import librosa

    y = np.asarray(clip, dtype=np.float32)
    spec = np.abs(librosa.stft(y, n_fft=params.n_fft, hop_length=params.hop_length)) ** 2
    mel = _mel_basis(params.sample_rate, params.n_fft, params.n_mels) @ spec
    db = librosa.power_to_db(mel, ref=np.max, top_db=80.0)
    return np.ascontiguousarray(db, dtype=np.float32)
