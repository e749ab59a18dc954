"""The one log-mel function: training and inference both call :func:`log_mel`.

The paper's input: a 30 s mono clip at 22050 Hz, STFT with n_fft 2048 and hop 2048
(centred frames), 323 mel bands, power in dB relative to the clip's loudest bin (so the
overall loudness of a recording — a property of its mastering, not its genre — is not a
feature), floored 80 dB below it. A 30 s clip gives exactly 323x323.

The pretrained backbone's input (``frontend="musicnn"``, see classifier/musicnn.py): 16 kHz
mono resampled with resampy's kaiser_best, STFT n_fft 512 / hop 256 with reflect-padded
centred frames (librosa 0.7's default, what the network was trained with), 96 Slaney mel
bands, ``log10(1 + 10000 * power)`` in float32 (the original code cast to float16 first,
where 10000 * power overflows), cut into patches of 187 frames (~3 s).

The bundle carries these parameters, so a model is always fed what it was trained on.

No torch here: this runs in worker processes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np

FRONTENDS = ("paper", "musicnn")
OPTIONAL_PARAMS = {"frontend"}  # added later; bundles without it are "paper"
PATCH_FRAMES = 187  # musicnn's patch: 187 frames of 16 ms = 3 s


@dataclass(frozen=True)
class FeatureParams:
    sample_rate: int = 22050
    clip_seconds: float = 30.0
    n_fft: int = 2048
    hop_length: int = 2048
    n_mels: int = 323
    frontend: str = "paper"  # "paper": dB re the clip's max; "musicnn": see the docstring

    @property
    def resampler(self) -> str:
        """How audio.py resamples for this front end."""
        return "kaiser_best" if self.frontend == "musicnn" else "ffmpeg"

    @property
    def clip_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)

    @property
    def frames(self) -> int:
        """Time frames per clip (centred STFT)."""
        return 1 + self.clip_samples // self.hop_length

    def as_dict(self) -> dict[str, Any]:
        """All fields; ``frontend`` only when not "paper", so the paper's parameters (and
        the feature-cache keys and bundles made from them) read as before it existed."""
        out = asdict(self)
        if self.frontend == "paper":
            del out["frontend"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureParams:
        """Raises ValueError naming unknown or missing keys."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        missing = names - set(data) - OPTIONAL_PARAMS
        if unknown or missing:
            raise ValueError(
                f"feature params: unknown {sorted(unknown)}, missing {sorted(missing)}"
            )
        if data.get("frontend", "paper") not in FRONTENDS:
            raise ValueError(f"feature params: unknown frontend {data['frontend']!r}")
        return cls(**{k: type(getattr(cls(), k))(v) for k, v in data.items()})


# --- librosa's log-mel, in numpy -----------------------------------------------------------
# The same numbers as librosa.stft (centred, zero-padded, periodic Hann), librosa.filters.mel
# (Slaney scale and norm) and librosa.power_to_db, ported so that a decode process does not
# import librosa: its import pulls numba and costs each process a second of CPU at start.
# tests/classifier/test_features.py holds the port to librosa's own output.

_F_SP = 200.0 / 3  # Slaney mel scale: linear below 1 kHz, logarithmic above
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: float) -> float:
    if hz >= _MIN_LOG_HZ:
        return float(_MIN_LOG_MEL + np.log(hz / _MIN_LOG_HZ) / _LOGSTEP)
    return hz / _F_SP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    hz = _F_SP * mels
    log_t = mels >= _MIN_LOG_MEL
    hz[log_t] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels[log_t] - _MIN_LOG_MEL))
    return hz


@lru_cache(maxsize=4)
def _mel_basis(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, 1 + n_fft/2) Slaney-normalised triangular filters from 0 Hz to sr/2. (With
    323 bands over 1025 FFT bins a few low bands are empty: the paper's setting.)"""
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    return weights


@lru_cache(maxsize=4)
def _hann(n_fft: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)  # periodic


def _power_spectrogram(y: np.ndarray, n_fft: int, hop_length: int, pad_mode: str = "constant"
                       ) -> np.ndarray:
    """(1 + n_fft/2, frames) float32 |STFT|^2 with frames centred on multiples of the hop."""
    padded = np.pad(y, n_fft // 2, mode=pad_mode)  # type: ignore[call-overload]
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]
    spec = np.fft.rfft(frames * _hann(n_fft), axis=1).astype(np.complex64)
    return (spec.real**2 + spec.imag**2).T


def _power_to_db(power: np.ndarray, top_db: float = 80.0, amin: float = 1e-10) -> np.ndarray:
    """dB relative to the loudest bin, floored ``top_db`` below it."""
    db = 10.0 * np.log10(np.maximum(amin, power))
    db -= 10.0 * np.log10(np.maximum(amin, power.max()))
    return np.maximum(db, db.max() - top_db)


def log_mel(clip: np.ndarray, params: FeatureParams) -> np.ndarray:
    """float32 (n_mels, frames) log-mel spectrogram of a mono clip. The clip should hold
    ``params.clip_samples`` samples (audio.read_clip gives exactly that)."""
    y = np.asarray(clip, dtype=np.float32)
    musicnn = params.frontend == "musicnn"
    spec = _power_spectrogram(y, params.n_fft, params.hop_length,
                              "reflect" if musicnn and y.size > params.n_fft // 2 else "constant")
    mel = _mel_basis(params.sample_rate, params.n_fft, params.n_mels) @ spec
    if musicnn:
        return np.ascontiguousarray(np.log10(1.0 + 10000.0 * mel, dtype=np.float32))
    return np.ascontiguousarray(_power_to_db(mel), dtype=np.float32)


def musicnn_params(patches_per_window: int = 2) -> FeatureParams:
    """The backbone's front end with windows of ``patches_per_window`` whole patches."""
    frames = PATCH_FRAMES * patches_per_window
    return FeatureParams(sample_rate=16000, clip_seconds=(frames - 1) * 256 / 16000,
                         n_fft=512, hop_length=256, n_mels=96, frontend="musicnn")


def patches(mel: np.ndarray) -> np.ndarray:
    """(P, 187, n_mels) non-overlapping patches (time, band) of a (n_mels, frames) log-mel,
    from its first frame, as musicnn's extractor cuts them (a tail shorter than a patch is
    dropped)."""
    n = mel.shape[1] // PATCH_FRAMES
    cut = mel[:, : n * PATCH_FRAMES].reshape(mel.shape[0], n, PATCH_FRAMES)
    return np.ascontiguousarray(cut.transpose(1, 2, 0))


def one_thread_per_process() -> None:
    """In a decode/feature pool process: numpy's BLAS (the mel projection above) keeps to
    one thread. A pool already runs one process per core; a second BLAS thread in each
    only spins waiting for a descheduled peer (benchmarks/bench_scan.py on 2 cores: the
    decode floor went from 8.3 to 15.0 tracks/s, CPU per track from 255 to 145 ms)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
