"""Decode any audio file to mono float32 at 22050 Hz, reading only the clip windows.

PyAV (FFmpeg) does the work for every format FFmpeg knows (mp3, flac, ogg/vorbis, opus,
m4a with AAC or ALAC, wav, aiff, wavpack, ape, musepack, dsf, ...); soundfile is the
fallback for the few files PyAV refuses. Either way a file that cannot be read raises
:class:`UnreadableAudio` with a one-line reason; nothing else escapes.

Why we seek: a whole-track prediction needs only K windows of 30 s, so we seek to each
window's start and decode just that window; a 10-minute file costs about what a 1-minute
file costs. Decoding is bounded (a cap on demuxed packets), so a broken file cannot hang.

Padding: audio shorter than a clip is **looped** to fill it (the clip repeats the audio
from its start), never padded with silence, so "silence at the end" can never become a
feature the model learns (e.g. "short files are Classical").

Opening a file (its checks, the errors, AudioInfo) is classifier.audio_open, the bounded
reader classifier.audio_bounds, the completeness rule classifier.audio_complete and the
soundfile reading classifier.audio_sf; this module places, decodes and fingerprints.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classifier.audio_bounds import BoundedFile
from classifier.audio_complete import incompleteness
from classifier.audio_open import (
    AudioInfo,
    IncompleteAudio,
    NoAudioInBudget,
    UnreadableAudio,
    check_file,
    failure_reason,
    no_audio_found,
    open_av,
)
from classifier.resample import resample

log = logging.getLogger(__name__)

SAMPLE_RATE = 22050
CLIP_SECONDS = 30.0
# A clip spread never starts in the first/last few seconds of a long track (intros, fades).
EDGE_FRACTION = 0.1
EDGE_MAX_SECONDS = 15.0
# Bounds that keep a broken file from hanging the decoder.
MAX_PACKETS_PER_WINDOW = 40_000
# Seconds decoded either side of a window resampled with kaiser_best (its half-length is
# 50 zero crossings: 3 ms at 44.1 kHz, 6 ms at 8 kHz).
KAISER_MARGIN = 0.02
RESAMPLERS = ("ffmpeg", "kaiser_best")
FINGERPRINT_PACKETS = 2_000
FINGERPRINT_BYTES = 1 << 20  # lossless packets are big: ~9 s of CD-quality FLAC


@dataclass
class DecodeStats:
    """Counters of decoding work done in this process (tests assert seeking with them)."""

    frames: int = 0
    packets: int = 0
    samples: int = 0


stats = DecodeStats()


def clip_starts(duration: float, n_clips: int, clip_seconds: float = CLIP_SECONDS) -> list[float]:
    """Start times of ``n_clips`` windows spread evenly over the track, keeping away from the
    first and last 10 % (at most 15 s) when the track is long enough. A track no longer
    than one clip gives a single start, 0.0 (that clip is looped to length)."""
    slack = duration - clip_seconds
    if n_clips < 1 or slack <= 0:
        return [0.0]
    margin = min(EDGE_FRACTION * duration, EDGE_MAX_SECONDS, slack / 2)
    lo, hi = margin, slack - margin
    return [round(lo + (hi - lo) * (i + 0.5) / n_clips, 3) for i in range(n_clips)]


def _resampler(sr: int, kaiser: bool) -> Any:
    """FFmpeg's resampler to mono at ``sr``; with ``kaiser``, only to planar float at the
    native rate and layout (the channels are averaged and resampled by classifier.resample,
    as librosa did for the models that need it)."""
    import av

    if kaiser:
        return av.AudioResampler(format="fltp")
    return av.AudioResampler(format="flt", layout="mono", rate=sr)


def _frames_to_mono(frames: list[Any]) -> tuple[np.ndarray, int]:
    """Planar frames -> (channel mean, native rate)."""
    if not frames:
        return np.zeros(0, dtype=np.float32), 0
    y = np.concatenate([f.to_ndarray() for f in frames], axis=1).astype(np.float32)
    return y.mean(axis=0, dtype=np.float32), int(frames[0].sample_rate)


def _frames_to_array(frames: list[Any]) -> np.ndarray:
    if not frames:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32)


def _decode_window(
    container: Any, stream: Any, start: float, seconds: float, sr: int, fresh: bool,
    source: BoundedFile, kaiser: bool = False,
) -> np.ndarray:
    """Seek to ``start`` (seconds from the stream's first sample) and decode ``seconds`` of
    audio (fewer at the end of the track). ``fresh``: nothing was read since opening.
    ``kaiser``: resample with resampy's kaiser_best instead of FFmpeg's resampler; a margin
    either side is decoded so the window's edges are filtered as in a whole-track resample."""
    if not kaiser:
        y, _ = _decode_span(container, stream, start, seconds, sr, fresh, source, kaiser=False)
        return y
    margin = min(KAISER_MARGIN, start)
    y, native = _decode_span(container, stream, start - margin, seconds + margin + KAISER_MARGIN,
                             sr, fresh, source, kaiser=True)
    if y.size == 0:
        return y
    out = resample(y, native, sr)
    skip = round(margin * sr)
    return out[skip : skip + round(seconds * sr)]


def _decode_span(
    container: Any, stream: Any, start: float, seconds: float, sr: int, fresh: bool,
    source: BoundedFile, kaiser: bool,
) -> tuple[np.ndarray, int]:
    """(samples, their rate): mono at ``sr``, or with ``kaiser`` the channel mean at the
    native rate."""
    # Timestamps count from the stream's start_time, which is not always zero.
    offset = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
    start += offset
    if start > offset or not fresh:
        container.seek(int(start / stream.time_base), stream=stream, backward=True)
    resampler = _resampler(sr, kaiser)
    out: list[Any] = []
    first_time: float | None = None
    end = start + seconds
    for n_packets, packet in enumerate(container.demux(stream), start=1):
        stats.packets += 1
        if n_packets > MAX_PACKETS_PER_WINDOW:
            raise UnreadableAudio(source.name, "decoder made no progress (packet cap hit)")
        if packet.size:
            source.found_audio()
        for frame in packet.decode():
            stats.frames += 1
            t = float(frame.time) if frame.time is not None else None
            if first_time is None:
                first_time = t if t is not None else start
            out.extend(resampler.resample(frame))
            if t is not None and t + frame.samples / frame.sample_rate >= end:
                break
        else:
            continue
        break
    out.extend(resampler.resample(None))
    if kaiser:
        y, rate = _frames_to_mono(out)
    else:
        y, rate = _frames_to_array(out), sr
    skip = max(0, round((start - (first_time or 0.0)) * rate))
    return y[skip : skip + round(seconds * rate)], rate


def _loop_to(y: np.ndarray, n: int) -> np.ndarray:
    if y.size >= n:
        return y[:n]
    reps = -(-n // y.size)
    return np.tile(y, reps)[:n]


def _finish(path: Path, y: np.ndarray, n: int) -> np.ndarray:
    if y.size == 0 or not np.isfinite(y).all():
        raise UnreadableAudio(path, "no audio samples decoded")
    stats.samples += y.size
    return np.ascontiguousarray(_loop_to(y, n), dtype=np.float32)


@dataclass(frozen=True)
class Track:
    """What one open of a file gives: its facts, the decoded clips and (when asked for)
    its fingerprint (see :func:`fingerprint`)."""

    info: AudioInfo
    clips: list[np.ndarray]
    fingerprint: str | None = None


def _packet_digest(path: Path, container: Any, stream: Any, info: AudioInfo,
                   source: BoundedFile) -> str:
    """The fingerprint of an open file: reads (does not decode) its first packets."""
    digest = hashlib.sha256()
    digest.update(f"{info.codec}|{info.sample_rate}|{info.channels}".encode())
    n = size = 0
    for packet in container.demux(stream):
        if packet.size:
            source.found_audio()
            digest.update(memoryview(packet))
            n += 1
            size += packet.size
        if n >= FINGERPRINT_PACKETS or size >= FINGERPRINT_BYTES:
            break
    if n == 0:
        raise no_audio_found(path, source)
    digest.update(f"|{round(info.duration, 1)}".encode())
    return digest.hexdigest()


def _av_track(path: Path, n_clips: int, starts: list[float] | None, seconds: float, sr: int,
              want_fingerprint: bool, kaiser: bool = False, complete: bool = True) -> Track:
    n = round(seconds * sr)
    with open_av(path) as (container, stream, info, source):
        if starts is None:
            starts = clip_starts(info.duration, n_clips, seconds)
        digest = (_packet_digest(path, container, stream, info, source) if want_fingerprint
                  else None)
        clips = []
        for i, start in enumerate(starts):
            fresh = i == 0 and digest is None  # nothing read since opening
            y = _decode_window(container, stream, start, seconds, sr, fresh, source, kaiser)
            if y.size < n and start > 0:  # near the end / duration overstated: read from 0
                y = _decode_window(container, stream, 0.0, seconds, sr, False, source, kaiser)
            clips.append(_finish(path, y, n))
        if complete:
            _check_complete(path, container, stream, info, sr, source)
    return Track(info, clips, digest)


def _check_complete(path: Path, container: Any, stream: Any, info: AudioInfo, sr: int,
                    source: BoundedFile) -> None:
    """Raise IncompleteAudio when nothing decodes near the end the header gives (one seek
    and a quarter second of decoding)."""
    def has_audio_at(at: float) -> bool:
        return _decode_window(container, stream, at, 0.25, sr, False, source).size > 0

    reason = incompleteness(path, info, has_audio_at)
    if reason is not None:
        raise IncompleteAudio(path, reason)


def _with_fallback(path: Path, n_clips: int, starts: list[float] | None, seconds: float,
                   sr: int, want_fingerprint: bool = False, kaiser: bool = False,
                   complete: bool = True) -> Track:
    check_file(path)
    try:
        return _av_track(path, n_clips, starts, seconds, sr, want_fingerprint, kaiser, complete)
    except (NoAudioInBudget, IncompleteAudio):
        raise
    except UnreadableAudio as e:
        first = e.reason
    except Exception as e:  # any FFmpeg/PyAV failure: try soundfile next
        first = failure_reason(e)
    try:
        from classifier.audio_sf import sf_track

        return sf_track(path, n_clips, starts, seconds, sr, want_fingerprint, kaiser)
    except UnreadableAudio:
        raise
    except Exception as e:  # libsndfile failure: report PyAV's reason
        log.debug("soundfile fallback failed for %s: %s", path, e)
    raise UnreadableAudio(path, first)


def probe(path: str | Path) -> AudioInfo:
    """Container/codec facts without decoding. Raises UnreadableAudio."""
    path = Path(path)
    check_file(path)
    try:
        with open_av(path) as (_, _, info, _):
            return info
    except UnreadableAudio:
        raise
    except Exception as e:  # try soundfile before giving up
        first = failure_reason(e)
    try:
        from classifier.audio_sf import sf_track

        return sf_track(path, 1, [0.0], 0.05, SAMPLE_RATE, False).info
    except Exception as e:
        raise UnreadableAudio(path, first) from e


def read_clip(
    path: str | Path, start: float, clip_seconds: float = CLIP_SECONDS, sr: int = SAMPLE_RATE,
    resampler: str = "ffmpeg",
) -> np.ndarray:
    """``clip_seconds`` of mono float32 at ``sr`` from ``start``; only that window is decoded.
    Shorter audio is looped to length. Raises UnreadableAudio."""
    return read_track(path, 1, clip_seconds, sr, [float(start)], resampler=resampler).clips[0]


def read_track(
    path: str | Path,
    n_clips: int,
    clip_seconds: float = CLIP_SECONDS,
    sr: int = SAMPLE_RATE,
    starts: list[float] | None = None,
    fingerprint: bool = False,
    resampler: str = "ffmpeg",
    complete: bool = True,
) -> Track:
    """Up to ``n_clips`` clips spread over the track (see :func:`clip_starts`) and, with
    ``fingerprint``, the file's fingerprint, all from one open of the file; ``starts``
    overrides the placement. A track no longer than one clip gives one (looped) clip.
    ``resampler``: "ffmpeg" (FFmpeg's downmix and resampler) or "kaiser_best" (channel mean,
    then classifier.resample: what the pretrained backbone was trained on).
    ``complete``: raise IncompleteAudio when the audio stops well before the duration the
    header gives (one more seek); off where only the file's identity is wanted.
    Raises UnreadableAudio."""
    if resampler not in RESAMPLERS:
        raise ValueError(f"unknown resampler {resampler!r}; one of {', '.join(RESAMPLERS)}")
    return _with_fallback(Path(path), n_clips, starts, clip_seconds, sr, fingerprint,
                          resampler == "kaiser_best", complete)


def read_clips(
    path: str | Path,
    n_clips: int,
    clip_seconds: float = CLIP_SECONDS,
    sr: int = SAMPLE_RATE,
    starts: list[float] | None = None,
    resampler: str = "ffmpeg",
) -> tuple[AudioInfo, list[np.ndarray]]:
    """:func:`read_track` without the fingerprint, as (info, clips)."""
    track = read_track(path, n_clips, clip_seconds, sr, starts, resampler=resampler)
    return track.info, track.clips


def fingerprint(path: str | Path) -> str:
    """sha256 hex of the audio stream's first compressed packets (2000 of them or 1 MiB,
    whichever comes first) and its duration.
    Tags live outside the audio packets, so a tag edit or a move keeps the fingerprint;
    different audio changes it. A file only soundfile can read is fingerprinted by its
    first 10 s of samples instead. :func:`read_track` gives the same value for free.
    Raises UnreadableAudio."""
    digest = read_track(path, 1, clip_seconds=0.05, starts=[0.0], fingerprint=True,
                        complete=False).fingerprint
    assert digest is not None
    return digest


@dataclass(frozen=True)
class DecodedAudio:
    """What decoding a whole file gives, for checking that a tag edit kept the audio:
    ``digest`` is the sha256 of every decoded sample (native rate, layout and sample
    format, no resampling), ``seconds`` how much audio decoded and ``header_seconds`` what
    the container claims (0.0 when it does not say)."""

    digest: str
    seconds: float
    header_seconds: float


def decode_all(path: str | Path) -> DecodedAudio:
    """Decode every sample of ``path`` with PyAV (no soundfile fallback: the point is to
    compare two files with the very same decoder). Raises UnreadableAudio."""
    path = Path(path)
    check_file(path)
    digest = hashlib.sha256()
    samples = 0
    try:
        with open_av(path) as (container, stream, info, source):
            digest.update(f"{info.codec}|{info.sample_rate}|{info.channels}|".encode())
            for frame in container.decode(stream):
                if not samples:
                    source.lift()  # audio found: read the whole file, however long
                digest.update(frame.to_ndarray().tobytes())
                samples += frame.samples
    except UnreadableAudio:
        raise
    except Exception as e:  # any FFmpeg/PyAV failure
        raise UnreadableAudio(path, failure_reason(e)) from e
    rate = info.sample_rate or 1
    return DecodedAudio(digest.hexdigest(), samples / rate, info.duration)
