"""The soundfile fallback of classifier.audio: the few files PyAV refuses (same clips,
same Track, same errors)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from classifier.audio import AudioInfo, Track, _finish, clip_starts
from classifier.resample import resample


def sf_track(path: Path, n_clips: int, starts: list[float] | None, seconds: float, sr: int,
              want_fingerprint: bool, kaiser: bool = False) -> Track:
    """The soundfile (libsndfile) reading of audio.read_track, for files PyAV refuses."""
    import soundfile as sf
    from scipy.signal import resample_poly

    n = round(seconds * sr)
    with sf.SoundFile(str(path)) as f:
        native = int(f.samplerate)
        info = AudioInfo(
            duration=f.frames / native if native else 0.0,
            codec=str(f.subtype).lower(),
            container=str(f.format).lower(),
            sample_rate=native,
            channels=int(f.channels),
        )
        if starts is None:
            starts = clip_starts(info.duration, n_clips, seconds)
        digest = None
        if want_fingerprint:  # the first seconds of samples: tags never reach them
            head = f.read(native * 10, dtype="int16")
            digest = hashlib.sha256(
                f"sf|{info.codec}|{native}|{info.channels}|{f.frames}|".encode()
                + head.tobytes()
            ).hexdigest()
        clips = []
        for start in starts:
            f.seek(min(int(start * native), max(f.frames - 1, 0)))
            raw = f.read(int(seconds * native) + 1, dtype="float32", always_2d=True)
            y = raw.mean(axis=1)
            if native != sr and y.size and kaiser:
                y = resample(y, native, sr)
            elif native != sr and y.size:
                from math import gcd

                g = gcd(native, sr)
                y = resample_poly(y, sr // g, native // g).astype(np.float32)
            clips.append(_finish(path, y[:n], n))
    return Track(info, clips, digest)
