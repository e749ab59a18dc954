"""Hostile files cost little: bounded reading while looking for audio, and reasons a user
can read (issue 14, items 12 and 15)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from classifier import audio
from classifier.audio import UnreadableAudio
from classifier.audio_bounds import SEARCH_BUDGET_BYTES
from tests.audiogen import make_track


def _bytes_read_by_this_process() -> int:
    """``rchar`` of /proc/self/io: every byte read() returned, page cache or not."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_a_4_gb_mp3_of_zeros_is_refused_after_reading_a_bounded_amount(tmp_path: Path) -> None:
    zeros = tmp_path / "zeros.mp3"
    with zeros.open("wb") as fh:  # sparse: costs no disk
        fh.truncate(4 << 30)
    before = _bytes_read_by_this_process()
    with pytest.raises(UnreadableAudio, match="no audio found") as caught:
        audio.read_track(zeros, 3, fingerprint=True)
    read = _bytes_read_by_this_process() - before
    assert read < 4 * SEARCH_BUDGET_BYTES, f"read {read >> 20} MiB of a 4 GiB file of zeros"
    assert "\n" not in str(caught.value)


def test_a_big_cover_in_the_id3_tag_does_not_use_up_the_search_budget(tmp_path: Path) -> None:
    from mutagen.id3 import APIC, ID3

    song = make_track(tmp_path / "cover.mp3", "Drone", seconds=35.0, seed=2)
    tags = ID3()
    tags.add(APIC(encoding=3, mime="image/jpeg", type=3, desc="front",
                  data=b"\xff\xd8" + bytes(SEARCH_BUDGET_BYTES + (4 << 20))))
    tags.save(song)
    assert song.stat().st_size > SEARCH_BUDGET_BYTES
    track = audio.read_track(song, 2, fingerprint=True)
    assert len(track.clips) == 2 and track.fingerprint


def _wav_with_codec_tag(path: Path, tag: int) -> Path:
    data = bytes(16000)
    fmt = struct.pack("<HHIIHH", tag, 1, 8000, 16000, 2, 16)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data))
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body) + len(data)) + body + data)
    return path


def test_a_codec_ffmpeg_cannot_decode_is_named_as_such_not_as_python_internals(
    tmp_path: Path,
) -> None:
    path = _wav_with_codec_tag(tmp_path / "odd.wav", 0x1234)
    with pytest.raises(UnreadableAudio) as caught:
        audio.read_track(path, 1, fingerprint=True)
    assert "codec" in caught.value.reason
    assert "NoneType" not in caught.value.reason and "attribute" not in caught.value.reason
    with pytest.raises(UnreadableAudio, match="codec"):
        audio.probe(path)


def test_decoding_a_whole_file_longer_than_the_search_budget_reads_all_of_it(
    tmp_path: Path,
) -> None:
    import numpy as np
    import soundfile as sf

    seconds = 1.2 * SEARCH_BUDGET_BYTES / (2 * 22050)  # 16-bit mono: past the budget
    t = np.arange(int(seconds * 22050)) / 22050
    path = tmp_path / "long.wav"
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 22050,
             subtype="PCM_16")
    assert path.stat().st_size > SEARCH_BUDGET_BYTES
    decoded = audio.decode_all(path)
    assert abs(decoded.seconds - seconds) < 0.1, (decoded.seconds, seconds)
