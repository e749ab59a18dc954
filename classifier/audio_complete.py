"""Is a file's audio whole? The rule for audio that stops before its header's duration.

A copy still in progress, or a download cut short, has a header promising more audio than
the file holds. classifier.audio raises IncompleteAudio for it (one seek near the end the
header gives, and a WAV's declared data size); storage/filewrite.py refuses a tag write by
the same tolerance (:func:`early_end_tolerance`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from classifier.audio_open import AudioInfo

# Audio that stops this long before the duration its header gives (EARLY_END_SECONDS, or
# EARLY_END_FRACTION of a long track) is incomplete: a copy still in progress or cut short.
# Real files of every format decode to within 0.13 s of their header (storage/filewrite.py
# refuses tag writes by the same rule).
EARLY_END_SECONDS, EARLY_END_FRACTION = 1.0, 0.02


def early_end_tolerance(header_seconds: float) -> float:
    """How much shorter than ``header_seconds`` audio may decode and still be whole."""
    return max(EARLY_END_SECONDS, EARLY_END_FRACTION * header_seconds)


# FFmpeg gives a WAV's duration from the bytes present, not from the size its header
# declares for the sample data (an AIFF's comes from the header's frame count): read it here.
PCM_CONTAINERS = ("wav",)


def pcm_header_seconds(path: Path, present_seconds: float) -> float | None:
    """The duration a WAV header declares (scaled from the ``present_seconds`` of the bytes
    present), or None where it declares none (a streaming writer's 0 or 0xFFFFFFFF, RF64)
    or cannot be read."""
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 16)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        chunk, length = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if chunk == b"data":
            present = size - (pos + 8)
            if length in (0, 0xFFFFFFFF) or present <= 0 or length <= present:
                return None
            return present_seconds * length / present
        pos += 8 + length + (length & 1)
    return None


def incompleteness(path: Path, info: AudioInfo,
                   has_audio_at: Callable[[float], bool]) -> str | None:
    """Why the audio of ``path`` is incomplete, or None when it looks whole.
    ``has_audio_at(seconds)``: whether anything decodes from there (the caller seeks and
    decodes a quarter second)."""
    if info.duration <= 0:
        return None
    header = pcm_header_seconds(path, info.duration) if info.container in PCM_CONTAINERS else None
    if header is not None and header - info.duration > early_end_tolerance(header):
        return (f"incomplete: its audio ends at {info.duration:.1f} s of the {header:.1f} s "
                "its header gives (still being copied, or cut short?)")
    at = info.duration - early_end_tolerance(info.duration)
    if at <= 0 or has_audio_at(at):
        return None
    return (f"incomplete: no audio after {at:.1f} s of the {info.duration:.1f} s its header "
            "gives (still being copied, or cut short?)")
