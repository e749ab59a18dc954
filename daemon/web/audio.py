"""The audio a review row plays: the catalogued file itself when a browser can play its
format, else an MP3 made from it through PyAV (kept in a small cache, so seeking into the
clip windows works with Range requests like any file).

Only tracks of the catalogue are served, by id: a URL never carries a path.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Track.format (classifier.audio.AudioInfo.format) -> the MIME type browsers play as is.
PLAYABLE = {
    "mp3": "audio/mpeg", "flac": "audio/flac", "ogg/vorbis": "audio/ogg",
    "ogg/opus": "audio/ogg", "ogg/flac": "audio/ogg", "opus": "audio/ogg",
    "vorbis": "audio/ogg", "mp4/aac": "audio/mp4", "aac": "audio/aac",
    "wav/pcm_s16le": "audio/wav", "wav/pcm_s24le": "audio/wav", "wav/pcm_u8": "audio/wav",
    "wav/pcm_f32le": "audio/wav", "webm/opus": "audio/webm", "webm/vorbis": "audio/webm",
}
TRANSCODED_MIME = "audio/mpeg"
CACHE_FILES = 64  # transcoded files kept (least recently used go first)


class AudioUnavailable(Exception):
    """The track's audio cannot be served (file gone, undecodable); the message says why."""


@dataclass(frozen=True)
class Playable:
    path: Path
    mime: str
    transcoded: bool


def browser_plays(fmt: str | None) -> bool:
    return (fmt or "") in PLAYABLE


class AudioCache:
    """Transcoded copies under ``root``, one per (track, size, mtime)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def playable(self, track_id: int, path: str, fmt: str | None) -> Playable:
        """What to send for the catalogued file ``path`` (blocking: may transcode)."""
        try:
            st = os.stat(path)
        except OSError as e:
            raise AudioUnavailable(f"the file is gone ({e.strerror})") from e
        if not os.path.isfile(path):
            raise AudioUnavailable("not a regular file")
        if browser_plays(fmt):
            return Playable(Path(path), PLAYABLE[fmt or ""], False)
        name = f"{track_id}-{st.st_size}-{st.st_mtime_ns}.mp3"
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:  # one transcode per file, however many requests ask at once
            target = self.root / name
            if not target.exists():
                self.root.mkdir(parents=True, exist_ok=True)
                transcode_mp3(path, target)
                self._evict(keep=target)
            else:
                os.utime(target)  # most recently used
        return Playable(target, TRANSCODED_MIME, True)

    def _evict(self, keep: Path) -> None:
        files = sorted((p for p in self.root.glob("*.mp3") if p != keep),
                       key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in files[CACHE_FILES - 1:]:
            stale.unlink(missing_ok=True)


def transcode_mp3(source: str, target: Path) -> None:
    """Decode ``source`` with PyAV and encode it as MP3 (LAME, 192 kb/s, 44.1 kHz, mono
    or stereo) into ``target``, atomically (a temporary file renamed)."""
    import av
    import av.logging

    av.logging.set_level(None)
    tmp = target.with_name(f".{target.name}.part-{os.getpid()}-{threading.get_ident()}")
    try:
        with av.open(source, metadata_errors="ignore") as inp:
            if not inp.streams.audio:
                raise AudioUnavailable("no audio stream")
            stream = inp.streams.audio[0]
            layout = "mono" if (stream.codec_context.channels or 1) == 1 else "stereo"
            with av.open(str(tmp), "w", format="mp3") as out:
                enc = out.add_stream("libmp3lame", rate=44100)
                enc.layout = layout
                enc.bit_rate = 192000
                resampler = av.AudioResampler(format="s16p", layout=layout, rate=44100)
                for frame in inp.decode(stream):
                    frame.pts = None
                    for chunk in resampler.resample(frame):
                        for packet in enc.encode(chunk):
                            out.mux(packet)
                for chunk in resampler.resample(None):
                    for packet in enc.encode(chunk):
                        out.mux(packet)
                for packet in enc.encode(None):
                    out.mux(packet)
        os.replace(tmp, target)
    except AudioUnavailable:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise AudioUnavailable(f"cannot transcode for the browser: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)
