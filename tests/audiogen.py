"""Small real audio files for tests and benchmarks, made on the spot.

``synth(style, seconds, seed)`` makes audibly different synthetic "genres" (a CNN on
log-mels separates them easily); ``write_audio(path, samples, sr)`` encodes them in the
format the file extension names, with the codecs real libraries use:

- soundfile (libsndfile): .wav .flac .ogg (Vorbis) .aiff
- PyAV (FFmpeg): .mp3 (LAME) .m4a (AAC) .alac.m4a (ALAC) .opus .wv (WavPack) .wma (WMAv2)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

STYLES = ("Drone", "Pulse", "Chirp", "Noise")
SR = 22050


def synth(style: str, seconds: float, seed: int = 0, sr: int = SR) -> np.ndarray:
    """Mono float32 in [-1, 1]. Each style has its own spectral/temporal signature, and
    ``seed`` varies pitch, tempo and noise so songs of one style differ."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    if style == "Drone":  # low sustained harmonic tones
        f0 = rng.uniform(80, 160)
        y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5))
    elif style == "Pulse":  # percussive clicks at a steady tempo, mid band
        bpm = rng.uniform(100, 140)
        env = np.exp(-((t * bpm / 60) % 1.0) * 25)
        y = env * np.sin(2 * np.pi * rng.uniform(700, 1100) * t)
    elif style == "Chirp":  # rising high sweeps
        period = rng.uniform(0.4, 0.8)
        phase = (t % period) / period
        freq = 2000 + 4000 * phase
        y = np.sin(2 * np.pi * np.cumsum(freq) / sr)
    elif style == "Noise":  # band-limited noise bursts
        y = rng.standard_normal(t.size)
        y = np.convolve(y, np.ones(8) / 8, mode="same")
        y *= (np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t) > 0).astype(float)
    else:
        raise ValueError(f"unknown style {style!r}; one of {STYLES}")
    y = np.asarray(y, dtype=np.float64)
    y += 0.01 * rng.standard_normal(y.size)
    return (0.5 * y / (np.max(np.abs(y)) + 1e-9)).astype(np.float32)


_PYAV = {".mp3": ("mp3", "libmp3lame", "fltp"), ".m4a": ("mp4", "aac", "fltp"),
         ".opus": ("ogg", "libopus", "flt"), ".wv": ("wv", "wavpack", "fltp"),
         ".wma": ("asf", "wmav2", "fltp")}
_SOUNDFILE = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".aiff": "AIFF"}


def write_audio(path: Path | str, samples: np.ndarray, sr: int = SR) -> Path:
    """Encode mono ``samples`` to ``path``; the format follows the extension
    (``.alac.m4a`` gives ALAC in MP4). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.lower()
    ext = path.suffix.lower()
    if ext in _SOUNDFILE:
        import soundfile as sf

        # In blocks: one large write of Ogg Vorbis can crash libsndfile (seen with 100 s).
        with sf.SoundFile(str(path), "w", sr, 1, format=_SOUNDFILE[ext]) as out:
            for i in range(0, samples.size, 1 << 16):
                out.write(samples[i:i + (1 << 16)])
        return path
    if name.endswith(".alac.m4a"):
        container, codec, fmt = "mp4", "alac", "s16p"
    elif ext in _PYAV:
        container, codec, fmt = _PYAV[ext]
    else:
        raise ValueError(f"no encoder for {path.name}")
    _encode_pyav(path, samples, sr, container, codec, fmt)
    return path


def _encode_pyav(path: Path, samples: np.ndarray, sr: int, container: str, codec: str,
                 fmt: str) -> None:
    import av

    rate = 48000 if codec == "libopus" else (44100 if codec in ("libmp3lame", "aac", "wmav2")
                                             else sr)
    if rate != sr:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(rate, sr)
        samples = resample_poly(samples, rate // g, sr // g).astype(np.float32)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        if codec in ("libmp3lame", "aac", "libopus", "wmav2"):
            stream.bit_rate = 96000
        data = samples.astype(np.float32)
        if fmt == "s16p":
            data = (np.clip(data, -1, 1) * 32767).astype(np.int16)
        frame_size = 1024 if codec != "libopus" else 960
        pts = 0
        for i in range(0, data.size, frame_size):
            chunk = data[i:i + frame_size]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format=fmt, layout="mono")
            frame.sample_rate = rate
            frame.pts = pts
            pts += chunk.size
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def make_track(path: Path | str, style: str = "Drone", seconds: float = 40.0,
               seed: int = 0) -> Path:
    """A synthetic track of ``style`` in the format ``path``'s extension names."""
    return write_audio(path, synth(style, seconds, seed))
