"""Realistic benchmark inputs, generated here and cached, so nothing is downloaded.

A "song" is a sequence of 20-60 s sections, each a lead style over a quieter bed style
from ``tests/audiogen.synth`` (different style, seed, pitch and tempo per section), in
stereo at 44.1 kHz like a ripped or bought library, encoded in a rotating mix of MP3
(LAME, 192 kb/s), FLAC (16 bit), AAC in M4A (160 kb/s) and Ogg Vorbis, with
title/artist/album tags. Files are written under a temporary name and renamed, so an
interrupted generation never leaves a half-written input; reruns reuse what is there.

Sets (``cache`` = ``--cache``, default ``$XDG_CACHE_HOME/genred-bench``):

- ``library(cache, n)``: songs of 3-5 minutes (``quick``: 35-45 s), track i is always the
  same file.
- ``short_tracks(cache, n)``: 35-45 s mono 22.05 kHz songs for the 2,000-track memory run.
- ``labelled(cache, n)``: 40 s single-style songs with a genre, for retraining.
- ``long_pair(cache, ext)``: a 1-minute and a 10-minute song in the same format.

Vorbis is written in one-second blocks: libsndfile 1.2.2 crashes (SIGSEGV) when one
``write`` call hands it about 100 s or more of audio at once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.audiogen import STYLES, synth

RATE = 44100
FORMATS = (".mp3", ".flac", ".m4a", ".ogg")
_PYAV = {".mp3": ("mp3", "libmp3lame", 192_000), ".m4a": ("mp4", "aac", 160_000)}
_SOUNDFILE = {".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


@dataclass(frozen=True)
class SongSpec:
    path: Path
    seconds: float
    seed: int
    style: str | None = None  # one style throughout (a labelled song), else varied sections
    channels: int = 2
    rate: int = RATE


def song(seconds: float, seed: int, sr: int = RATE) -> np.ndarray:
    """(samples, 2) float32: varied sections, slightly different left and right."""
    rng = np.random.default_rng(seed)
    sections: list[np.ndarray] = []
    remaining = seconds
    while remaining > 0.5:
        length = min(remaining, float(rng.uniform(20, 60)))
        lead, bed = rng.choice(len(STYLES), size=2, replace=False)
        y = synth(STYLES[lead], length, int(rng.integers(1 << 31)), sr)
        y += 0.3 * synth(STYLES[bed], length, int(rng.integers(1 << 31)), sr)
        fade = min(y.size // 2, int(0.05 * sr))
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        y[:fade] *= ramp
        y[y.size - fade:] *= ramp[::-1]
        sections.append(y)
        remaining -= length
    mono = np.concatenate(sections)
    delay = int(0.0007 * sr)
    right = 0.85 * np.roll(mono, delay) + 0.15 * mono
    stereo = np.stack([mono, right], axis=1)
    return (0.8 * stereo / (np.max(np.abs(stereo)) + 1e-9)).astype(np.float32)


def styled_song(style: str, seconds: float, seed: int, sr: int = RATE) -> np.ndarray:
    """(samples, 2) float32 of one ``audiogen`` style: a song whose genre is known."""
    mono = synth(style, seconds, seed, sr)
    right = 0.85 * np.roll(mono, int(0.0007 * sr)) + 0.15 * mono
    return np.stack([mono, right], axis=1).astype(np.float32)


def encode(path: Path, samples: np.ndarray, sr: int = RATE) -> None:
    """Write (samples, channels) float32 to ``path`` in the format of its extension."""
    ext = path.suffix.lower()
    tmp = path.with_name(f".{path.name}.part")
    if ext in _SOUNDFILE:
        _encode_soundfile(tmp, samples, sr, *_SOUNDFILE[ext])
    elif ext in _PYAV:
        _encode_pyav(tmp, samples, sr, *_PYAV[ext])
    else:
        raise ValueError(f"no encoder for {path.name}")
    _tag(tmp, ext, path.stem)
    os.replace(tmp, path)


def _encode_soundfile(path: Path, samples: np.ndarray, sr: int, fmt: str, subtype: str
                      ) -> None:
    import soundfile as sf

    with sf.SoundFile(str(path), "w", samplerate=sr, channels=samples.shape[1], format=fmt,
                      subtype=subtype) as out:
        for start in range(0, samples.shape[0], sr):
            out.write(samples[start:start + sr])


def _encode_pyav(path: Path, samples: np.ndarray, sr: int, container: str, codec: str,
                 bit_rate: int) -> None:
    import av

    layout = "stereo" if samples.shape[1] == 2 else "mono"
    planar = np.ascontiguousarray(samples.T)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=sr)
        if not isinstance(stream, av.AudioStream):
            raise TypeError(f"{codec} did not give an audio stream")
        stream.layout = layout
        stream.bit_rate = bit_rate
        for start in range(0, planar.shape[1], 1024):
            chunk = np.ascontiguousarray(planar[:, start:start + 1024])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = sr
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _tag(path: Path, ext: str, title: str) -> None:
    """Ordinary tags (no genre), so decoding meets headers like a real library's."""
    import mutagen
    from mutagen.easyid3 import EasyID3
    from mutagen.easymp4 import EasyMP4

    values = {"title": f"Track {title}", "artist": "genred bench", "album": "Synthetic"}
    tags: mutagen.FileType | EasyID3 | None
    if ext == ".mp3":
        tags = EasyID3()
    elif ext == ".m4a":
        tags = EasyMP4(str(path))
    else:
        tags = mutagen.File(str(path))
        if tags is None:
            raise ValueError(f"mutagen cannot open the file it just wrote: {path}")
    for key, value in values.items():
        tags[key] = value
    if isinstance(tags, EasyID3):
        tags.save(str(path))
    else:
        tags.save()


def _make(spec: SongSpec) -> Path:
    if not spec.path.exists():
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        samples = (styled_song(spec.style, spec.seconds, spec.seed, spec.rate) if spec.style
                   else song(spec.seconds, spec.seed, spec.rate))
        encode(spec.path, samples[:, : spec.channels], spec.rate)
    return spec.path


def _nice() -> None:
    # Generation is preparation, not the thing measured: let other work go first.
    os.nice(10)


def generate(specs: Sequence[SongSpec], workers: int | None = None) -> list[Path]:
    """Make every missing file (in parallel, niced); returns the paths in order."""
    missing = [s for s in specs if not s.path.exists()]
    if missing:
        print(f"generating {len(missing)} input files (cached for later runs) ...",
              file=sys.stderr, flush=True)
        n = min(workers or os.cpu_count() or 1, len(missing))
        with ProcessPoolExecutor(max_workers=n, initializer=_nice) as pool:
            list(pool.map(_make, missing))
    return [s.path for s in specs]


def _durations(n: int, low: float, high: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [round(float(x), 1) for x in rng.uniform(low, high, n)]


def library(cache: Path, n: int, quick: bool = False) -> list[Path]:
    """``n`` songs of 3-5 minutes (quick: 35-45 s) in rotating formats."""
    folder = cache / ("library-quick" if quick else "library")
    low, high = (35.0, 45.0) if quick else (180.0, 300.0)
    seconds = _durations(max(n, 1), low, high, seed=1)
    specs = [SongSpec(folder / f"{i:05d}{FORMATS[i % len(FORMATS)]}", seconds[i], 10_000 + i)
             for i in range(n)]
    return generate(specs)


def short_tracks(cache: Path, n: int, quick: bool = False) -> list[Path]:
    """``n`` mono 22.05 kHz songs of 35-45 s (quick: 32-36 s), for runs over thousands of
    files (mono, low rate and short to keep generating 2,000 of them cheap)."""
    folder = cache / ("short-quick" if quick else "short")
    low, high = (32.0, 36.0) if quick else (35.0, 45.0)
    seconds = _durations(max(n, 1), low, high, seed=2)
    specs = [SongSpec(folder / f"{i:05d}{FORMATS[i % len(FORMATS)]}", seconds[i], 20_000 + i,
                      channels=1, rate=22050) for i in range(n)]
    return generate(specs)


# Genres of the starter model that the synthetic styles stand for in labelled sets.
STYLE_GENRES = {"Drone": "Classical", "Pulse": "Electronic", "Chirp": "Pop", "Noise": "Metal"}


def labelled(cache: Path, n: int, quick: bool = False) -> list[tuple[Path, str]]:
    """``n`` single-style 40 s songs (quick: 32 s) and their genre, styles in turn."""
    folder = cache / ("labelled-quick" if quick else "labelled")
    seconds = 32.0 if quick else 40.0
    specs = []
    for i in range(n):
        style = STYLES[i % len(STYLES)]
        specs.append(SongSpec(folder / f"{i:05d}-{style}{FORMATS[(i // 4) % len(FORMATS)]}",
                              seconds, 40_000 + i, style))
    paths = generate(specs)
    return [(p, STYLE_GENRES[s.style or ""]) for p, s in zip(paths, specs, strict=True)]


def long_pair(cache: Path, ext: str, quick: bool = False) -> tuple[Path, Path]:
    """A 1-minute and a 10-minute song in format ``ext`` (".mp3", ...); quick: mono at
    22.05 kHz, cheaper to make."""
    folder = cache / ("long-quick" if quick else "long")
    channels, rate = (1, 22050) if quick else (2, RATE)
    specs = [SongSpec(folder / f"{m:g}min{ext}", m * 60.0, 30_000 + int(m * 10),
                      channels=channels, rate=rate) for m in (1.0, 10.0)]
    short, long = generate(specs)
    return short, long


def link_into(paths: Sequence[Path], folder: Path) -> Path:
    """A folder holding exactly ``paths`` (hard links where possible, else copies), so a
    scan sees only them; the cached originals are never written to."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        target = folder / path.name
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
    return folder
