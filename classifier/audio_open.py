"""Opening an audio file for decoding: the errors, the facts, and the PyAV container.

:class:`UnreadableAudio` (and :class:`IncompleteAudio`) are the decode errors the rest of
genred catches, and :class:`AudioInfo` what a file is; classifier.audio gives them to its
callers. :func:`check_file` refuses what is not worth handing to a decoder (missing, a
folder, empty, unreadable); :func:`open_av` opens the file with PyAV through the bounded
reader (classifier.audio_bounds), so a file with no audio in it costs a bounded read;
:func:`failure_reason` turns a decoder's exception into a one-line reason.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier.audio_bounds import BoundedFile, search_budget

log = logging.getLogger(__name__)


class UnreadableAudio(Exception):
    """The one documented decode error: the file is missing, empty, not audio, corrupt or
    has no decodable samples. ``str(e) == f"{path}: {reason}"`` and is one line."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(str(reason).split()) or "unreadable"
        super().__init__(f"{self.path}: {self.reason}")


class IncompleteAudio(UnreadableAudio):
    """The audio stops well before the duration the file's header gives: still being
    copied, or cut short. No other decoder is tried (libsndfile would read what is there
    and call it whole)."""


class NoAudioInBudget(UnreadableAudio):
    """The search budget ran out with no audio found: no other decoder is tried (libsndfile
    would read on through the whole file too)."""


@dataclass(frozen=True)
class AudioInfo:
    duration: float  # seconds (0.0 when the container does not say)
    codec: str
    container: str
    sample_rate: int
    channels: int

    @property
    def format(self) -> str:
        """Short user-facing format, e.g. ``mp3``, ``flac``, ``ogg/vorbis``, ``mp4/alac``."""
        if self.codec.startswith(self.container) or self.container in ("", self.codec, "mpc"):
            return self.codec[:32]
        return f"{self.container}/{self.codec}"[:32]


def check_file(path: Path) -> None:
    """Raise UnreadableAudio for a path no decoder should be given."""
    try:
        st = path.stat()
    except FileNotFoundError as e:
        raise UnreadableAudio(path, "file not found") from e
    except OSError as e:
        raise UnreadableAudio(path, f"cannot stat: {e.strerror}") from e
    if path.is_dir():
        raise UnreadableAudio(path, "is a directory")
    if st.st_size == 0:
        raise UnreadableAudio(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise UnreadableAudio(path, "permission denied")


CODEC_NAMES = {"mp3float": "mp3", "mp3": "mp3", "mpc7": "musepack", "mpc8": "musepack"}


def short_name(fmt_name: str) -> str:
    first = fmt_name.split(",")[0]
    return {"mov": "mp4", "matroska": "mkv"}.get(first, first)


@contextmanager
def open_av(path: Path) -> Iterator[tuple[Any, Any, AudioInfo, BoundedFile]]:
    """Open with PyAV; yields (container, audio stream, info, the bounded file: tell it
    when audio is found). PyAV errors propagate; a
    file in which no audio is found within the search budget raises UnreadableAudio."""
    import av
    import av.logging

    av.logging.set_level(None)  # FFmpeg's own chatter on stderr; errors reach us as raises
    source = BoundedFile(path, search_budget(path))
    try:
        container: Any = av.open(source, metadata_errors="ignore")
    except BaseException:
        source.close()
        raise
    try:
        if not container.streams.audio:
            raise UnreadableAudio(path, "no audio stream")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        if ctx is None:  # FFmpeg knows the container but has no decoder for this codec
            raise UnreadableAudio(path, "its audio codec is not one FFmpeg can decode")
        if not ctx.sample_rate or not ctx.channels:
            raise no_audio_found(path, source)
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        if duration <= 0 and container.duration:
            duration = container.duration / 1_000_000
        info = AudioInfo(
            duration=max(duration, 0.0),
            codec=CODEC_NAMES.get(ctx.name, ctx.name or "unknown"),
            container=short_name(container.format.name or ""),
            sample_rate=int(ctx.sample_rate or 0),
            channels=int(ctx.channels or 0),
        )
        yield container, stream, info, source
    finally:
        container.close()
        source.close()


def no_audio_found(path: Path, source: BoundedFile) -> UnreadableAudio:
    """The error for a file in which no audio was found (within the budget, or at all)."""
    if source.exhausted:
        return NoAudioInBudget(path, f"no audio found in its first {source.budget >> 20} MiB "
                                "(not an audio file, or corrupt)")
    return UnreadableAudio(path, "no audio found (not an audio file, or corrupt)")


def failure_reason(e: BaseException) -> str:
    """A one-line human reason from a PyAV/FFmpeg error. Only FFmpeg's and the operating
    system's own words reach the user; any other exception is an internal failure on odd
    data, whose text ("'NoneType' object has no attribute ...") would mean nothing."""
    import av

    if not isinstance(e, av.FFmpegError | OSError):
        log.debug("decoder failure", exc_info=e)
        return "cannot decode (the decoder failed on this file's data: corrupt or unusual)"
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    text = str(text).split(":")[0] if "Errno" in str(text) else str(text)
    if "Invalid data found" in text:
        return "not an audio file, or corrupt: FFmpeg found invalid data"
    return f"cannot decode ({text})"
