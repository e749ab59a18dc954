"""resampy's ``kaiser_best`` resampler as a polyphase FIR (scipy), without resampy/numba.

Why this filter: MSD_musicnn was trained on audio that librosa (2019) resampled with
resampy's ``kaiser_best`` — a Kaiser-windowed sinc with 50 zero crossings, roll-off at
0.917 of Nyquist (~7.3 kHz at 16 kHz). The network's outputs depend on it: a modern
resampler (soxr) keeps more of the 7.3-8 kHz band and moves the tag outputs by up to 0.12.

resampy evaluates that filter from a table (8192 points per zero crossing, linearly
interpolated) at every output sample; the same kernel sampled once on the rational grid
``up/down`` is an ordinary polyphase FIR, which ``scipy.signal.resample_poly`` runs in C.
Two details of resampy are reproduced: its tap spacing is the table step rounded down
(``int(scale * 8192) / 8192`` zero crossings instead of ``scale``), and it computes
``floor(n * ratio)`` samples, which librosa pads with zeros to ``ceil(n * ratio)``.
tools/musicnn/convert.py checks this against resampy itself.
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np

ZERO_CROSSINGS = 50
ROLLOFF = 0.9173473712608761
BETA = 12.984585250325175  # fitted to resampy's kaiser_best table to 2e-12
TABLE_STEPS = 8192  # resampy's table points per zero crossing


def _kernel(u: np.ndarray) -> np.ndarray:
    """The windowed sinc at ``u`` zero crossings (0 outside +-ZERO_CROSSINGS)."""
    inside = np.abs(u) < ZERO_CROSSINGS
    ratio = np.clip(u / ZERO_CROSSINGS, -1.0, 1.0)
    window = np.i0(BETA * np.sqrt(1.0 - ratio**2)) / np.i0(BETA)
    return np.where(inside, ROLLOFF * np.sinc(ROLLOFF * u) * window, 0.0)


@lru_cache(maxsize=1)
def _table() -> tuple[np.ndarray, np.ndarray]:
    """resampy's right wing sampled TABLE_STEPS times per zero crossing, and its deltas."""
    win = _kernel(np.arange(ZERO_CROSSINGS * TABLE_STEPS + 1) / TABLE_STEPS)
    return win, np.diff(win, append=win[-1])


@lru_cache(maxsize=8)
def polyphase_filter(up: int, down: int) -> np.ndarray:
    """The FIR at ``up`` x the input rate, odd length, centred, as resample_poly wants it
    (resample_poly multiplies by ``up`` itself, so it is divided out here).

    Tap ``m`` weighs the input sample ``d = m / up`` input samples before the output
    instant (after it for m < 0). resampy reads that weight from its table at
    ``scale * frac + i * step`` (left wing: frac = d - floor(d), i = floor(d)) or
    ``scale * (1 - frac) + k * step`` (right wing, the k-th sample after the instant),
    with ``step = int(scale * 8192)``, interpolating the table linearly; so is it here."""
    win, delta = _table()
    scale = min(1.0, up / down)
    step = int(scale * TABLE_STEPS)
    half = int(np.ceil(ZERO_CROSSINGS * TABLE_STEPS / step * up)) + up
    m = np.arange(-half, half + 1)
    whole, phase = np.divmod(np.abs(m), up)
    left = m >= 0
    # left wing: i = whole, frac = phase/up; right wing: -d = whole + phase/up = k + 1 - frac
    frac = np.where(left, phase / up, np.where(phase == 0, 0.0, 1.0 - phase / up))
    i = np.where(left, whole, np.where(phase == 0, whole - 1, whole))
    index_frac = np.where(left, scale * frac, scale - scale * frac) * TABLE_STEPS
    offset = index_frac.astype(np.int64)
    eta = index_frac - offset
    at = offset + i * step
    ok = (at < win.size) & (i >= 0)
    at = np.where(ok, at, 0)
    h = np.where(ok, win[at] + eta * delta[at], 0.0)
    return (scale * h / up).astype(np.float64)


def resample(y: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """float32 ``y`` (1-D) from ``sr_from`` to ``sr_to`` Hz as librosa.resample(...,
    res_type='kaiser_best') does it: ceil(n * ratio) samples, the last one zero where
    floor < ceil."""
    from scipy.signal import resample_poly

    y = np.asarray(y, dtype=np.float32)
    if sr_from == sr_to:
        return y.copy()
    g = gcd(sr_from, sr_to)
    up, down = sr_to // g, sr_from // g
    out = resample_poly(y, up, down, window=polyphase_filter(up, down)).astype(np.float32)
    n_floor = int(y.size * up / down)
    out[n_floor:] = 0.0
    return out
