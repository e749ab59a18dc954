"""Decoding: every format, only the needed window, looping, clear errors, fingerprints."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from classifier import audio
from classifier.audio import CLIP_SECONDS, SAMPLE_RATE, UnreadableAudio
from tests.audiogen import make_track, synth, write_audio

ALL_FORMATS = (".wav", ".flac", ".ogg", ".aiff", ".mp3", ".m4a", ".alac.m4a", ".opus", ".wv")
CLIP = round(CLIP_SECONDS * SAMPLE_RATE)


@pytest.mark.parametrize("ext", ALL_FORMATS)
def test_every_generated_format_decodes_to_a_mono_22050_clip(tmp_path: Path, ext: str) -> None:
    path = make_track(tmp_path / f"song{ext}", "Pulse", seconds=40.0, seed=3)
    info, clips = audio.read_clips(path, 2)
    assert 39.0 < info.duration < 41.5
    assert len(clips) == 2
    for clip in clips:
        assert clip.dtype == np.float32 and clip.shape == (CLIP,)
        assert 0.05 < float(np.abs(clip).max()) <= 1.01  # real signal, not silence


def test_decoded_audio_matches_the_source_samples(tmp_path: Path) -> None:
    y = synth("Drone", 40.0, seed=1)
    path = write_audio(tmp_path / "drone.flac", y)
    clip = audio.read_clip(path, 5.0)
    start = 5 * SAMPLE_RATE
    np.testing.assert_allclose(clip[:1000], y[start : start + 1000], atol=2e-3)


def test_a_clip_of_a_ten_minute_file_decodes_about_as_much_as_of_a_one_minute_file(
    tmp_path: Path,
) -> None:
    long_file = write_audio(tmp_path / "long.flac", synth("Noise", 600.0, seed=2))
    short_file = write_audio(tmp_path / "short.flac", synth("Noise", 60.0, seed=2))
    before = audio.stats.frames
    audio.read_clip(short_file, 15.0)
    short_cost = audio.stats.frames - before
    before = audio.stats.frames
    audio.read_clip(long_file, 400.0)
    long_cost = audio.stats.frames - before
    whole_file_frames = 600 * SAMPLE_RATE / 4608  # flac blocks are at most 4608 samples
    assert long_cost < 1.5 * short_cost + 5
    assert long_cost < whole_file_frames / 5


def test_seeking_lands_on_the_requested_time(tmp_path: Path) -> None:
    # A tone whose pitch changes every 10 s: the clip at 60 s must have that pitch.
    t = np.arange(90 * SAMPLE_RATE) / SAMPLE_RATE
    freq = 200.0 + 50.0 * (t // 10)
    y = (0.5 * np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE)).astype(np.float32)
    path = write_audio(tmp_path / "steps.mp3", y)
    clip = audio.read_clip(path, 60.0, clip_seconds=5.0)
    spectrum = np.abs(np.fft.rfft(clip[: 4 * SAMPLE_RATE]))
    peak = np.argmax(spectrum) * SAMPLE_RATE / (4 * SAMPLE_RATE)
    assert abs(peak - 500.0) < 10.0


def test_short_audio_is_looped_to_a_full_clip_not_padded_with_silence(tmp_path: Path) -> None:
    y = synth("Chirp", 7.0, seed=4)
    path = write_audio(tmp_path / "short.wav", y)
    info, clips = audio.read_clips(path, 3)
    assert 6.9 < info.duration < 7.1
    assert len(clips) == 1  # one looped clip, not three copies of it
    clip = clips[0]
    assert clip.shape == (CLIP,)
    n = y.size
    np.testing.assert_allclose(clip[n : 2 * n], y, atol=1e-3)  # the second pass repeats it
    window = SAMPLE_RATE // 2
    quiet = [np.abs(clip[i : i + window]).max() for i in range(0, CLIP - window, window)]
    assert min(quiet) > 0.05  # no silent stretch anywhere


def test_clip_starts_spread_over_the_track_away_from_its_edges() -> None:
    starts = audio.clip_starts(300.0, 3)
    assert len(starts) == 3 and starts == sorted(starts)
    assert starts[0] >= 15.0 and starts[-1] + CLIP_SECONDS <= 285.0
    assert starts[1] - starts[0] > 30.0
    assert audio.clip_starts(20.0, 3) == [0.0]
    assert all(0 <= s <= 10.0 for s in audio.clip_starts(40.0, 3))


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.mp3", b"", ("empty file",)),
        ("notes.mp3", b"this is not music\n" * 50, ("not an audio file", "no audio")),
        ("random.flac", bytes(range(256)) * 40, ("not an audio file", "no audio")),
    ],
)
def test_non_audio_input_raises_unreadable_audio_with_a_one_line_reason(
    tmp_path: Path, name: str, content: bytes, reason: tuple[str, ...]
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableAudio) as err:
        audio.read_clips(path, 3)
    assert any(r in err.value.reason for r in reason), err.value.reason
    assert str(err.value) == f"{path}: {err.value.reason}"
    assert "\n" not in str(err.value)


def test_missing_file_and_directory_raise_unreadable_audio(tmp_path: Path) -> None:
    with pytest.raises(UnreadableAudio, match="file not found"):
        audio.read_clip(tmp_path / "gone.flac", 0.0)
    with pytest.raises(UnreadableAudio, match="is a directory"):
        audio.probe(tmp_path)


@pytest.mark.parametrize("ext", [".mp3", ".flac", ".m4a", ".ogg"])
def test_truncated_file_classifies_what_is_there_or_raises_unreadable(
    tmp_path: Path, ext: str
) -> None:
    full = make_track(tmp_path / f"full{ext}", "Drone", seconds=40.0)
    data = full.read_bytes()
    for keep in (len(data) // 2, 600, 40):
        cut = tmp_path / f"cut{keep}{ext}"
        cut.write_bytes(data[:keep])
        try:
            _, clips = audio.read_clips(cut, 3)
        except UnreadableAudio as e:
            assert e.reason
        else:
            assert all(c.shape == (CLIP,) and np.isfinite(c).all() for c in clips)


def test_fingerprint_survives_a_tag_edit_and_a_move(tmp_path: Path) -> None:
    import mutagen

    path = make_track(tmp_path / "a.flac", "Pulse", seconds=20.0, seed=1)
    before = audio.fingerprint(path)
    tags = mutagen.File(path)
    tags["genre"] = "Jazz"
    tags["title"] = "A much longer title than before"
    tags.save()
    moved = tmp_path / "sub" / "b.flac"
    moved.parent.mkdir()
    shutil.move(path, moved)
    assert audio.fingerprint(moved) == before


def test_fingerprint_of_an_mp3_survives_an_id3_edit(tmp_path: Path) -> None:
    from mutagen.easyid3 import EasyID3
    from mutagen.id3 import ID3NoHeaderError

    path = make_track(tmp_path / "a.mp3", "Chirp", seconds=20.0, seed=1)
    before = audio.fingerprint(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        tags = EasyID3(path)
    except ID3NoHeaderError:
        tags = EasyID3()
    tags["genre"] = "Rock"
    tags.save(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() != digest  # the file did change
    assert audio.fingerprint(path) == before


def test_different_audio_gives_a_different_fingerprint(tmp_path: Path) -> None:
    a = make_track(tmp_path / "a.flac", "Pulse", seconds=20.0, seed=1)
    b = make_track(tmp_path / "b.flac", "Pulse", seconds=20.0, seed=2)
    assert audio.fingerprint(a) != audio.fingerprint(b)
    assert len(audio.fingerprint(a)) == 64


def test_read_track_gets_clips_and_fingerprint_from_one_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import av

    path = make_track(tmp_path / "song.flac", "Chirp", seconds=100.0, seed=4)
    clips_alone = audio.read_clips(path, 3)[1]
    fp_alone = audio.fingerprint(path)
    opened: list[str] = []
    real_open = av.open

    def counting_open(file: object, *args: object, **kwargs: object) -> object:
        opened.append(str(getattr(file, "name", file)))  # a path, or the bounded file
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    track = audio.read_track(path, 3, fingerprint=True)
    assert opened == [str(path)]  # one open: duration, fingerprint and the three windows
    assert track.fingerprint == fp_alone
    assert len(track.clips) == 3
    for got, want in zip(track.clips, clips_alone, strict=True):
        np.testing.assert_array_equal(got, want)


def test_fingerprint_of_a_long_lossless_file_reads_a_bounded_head(tmp_path: Path) -> None:
    import mutagen

    rng = np.random.default_rng(0)
    noise = (0.3 * rng.standard_normal(44100 * 60)).astype(np.float32)  # ~5 MB as FLAC
    path = tmp_path / "long.flac"
    write_audio(path, noise, 44100)
    before = audio.fingerprint(path)
    tags = mutagen.File(path)
    tags["genre"] = "Noise"
    tags.save()
    assert audio.fingerprint(path) == before
    other = tmp_path / "other.flac"
    write_audio(other, noise[::-1].copy(), 44100)
    assert audio.fingerprint(other) != before


def test_fingerprint_of_non_audio_raises_unreadable_audio(tmp_path: Path) -> None:
    path = tmp_path / "x.ogg"
    path.write_text("nope")
    with pytest.raises(UnreadableAudio):
        audio.fingerprint(path)


def test_a_window_past_the_end_reads_the_track_from_its_start(tmp_path: Path) -> None:
    path = make_track(tmp_path / "song.ogg", "Drone", seconds=40.0, seed=5)
    from_start = audio.read_clip(path, 0.0)
    _, (late,) = audio.read_clips(path, 1, starts=[35.0])  # only 5 s left there
    np.testing.assert_allclose(late, from_start, atol=1e-6)


def test_decoding_is_bounded_so_a_broken_stream_cannot_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_track(tmp_path / "song.m4a", "Pulse", seconds=40.0)
    monkeypatch.setattr(audio, "MAX_PACKETS_PER_WINDOW", 20)  # ~0.9 s of AAC
    with pytest.raises(UnreadableAudio, match="packet cap"):
        audio.read_clip(path, 0.0)


@pytest.mark.parametrize("ext", [".wav", ".aiff", ".flac", ".mp3"])
def test_audio_that_ends_early_against_its_header_is_incomplete_not_classified(
    tmp_path: Path, ext: str
) -> None:
    """A copy still in progress (or cut short) holds the whole track's header but only part
    of its audio: it is refused as incomplete (issue 14), however much decodes; the whole
    file reads. (A FLAC cut inside a frame may fail as corrupt first: refused either way.)"""
    whole = make_track(tmp_path / f"whole{ext}", "Pulse", seconds=40.0, seed=3)
    data = whole.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) * 6 // 10])
    expected = UnreadableAudio if ext == ".flac" else audio.IncompleteAudio
    with pytest.raises(expected) as refused:
        audio.read_track(cut, 3)
    if ext != ".flac":
        assert "incomplete" in str(refused.value) and "40.0 s its header gives" in str(
            refused.value)
    assert len(audio.read_track(whole, 3).clips) == 3
    cut.write_bytes(data)  # the copy completes
    assert len(audio.read_track(cut, 3).clips) == 3
