"""Genre tags per format: round trips, restore, the audio never changes, writes are atomic."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from mutagen.id3 import ID3, TCON
from mutagen.mp4 import MP4

from storage import tags
from tests.audiogen import make_track

FORMATS = ["wav", "flac", "ogg", "aiff", "mp3", "m4a", "alac.m4a", "opus", "wv"]


def decoded(path: Path) -> np.ndarray:
    """Every decoded sample of the file (PyAV), to compare audio before/after a write."""
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray() for f in container.decode(audio=0)]
    return np.concatenate([f.reshape(f.shape[0], -1) for f in frames], axis=1)


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("formats")
    return {ext: make_track(folder / f"song.{ext}", "Pulse", 4.0, seed=1) for ext in FORMATS}


@pytest.fixture
def song(request: pytest.FixtureRequest, originals: dict[str, Path], tmp_path: Path) -> Path:
    src = originals[request.param]
    dst = tmp_path / src.name
    dst.write_bytes(src.read_bytes())
    return dst


@pytest.mark.parametrize("song", FORMATS, indirect=True)
def test_write_then_restore_round_trips_and_keeps_the_audio(song: Path) -> None:
    kind, _ = tags.read_values(song)
    tags.update(song, {tags.genre_key(kind): ["Jazz"]})  # the user's own genre tag
    kind, original = tags.read_values(song)
    assert tags.read_genres(song) == ["Jazz"]
    audio_before = decoded(song)

    after = tags.update(song, tags.genre_values(kind, "Rock", "v1", 0.87))

    assert tags.read_genres(song) == ["Rock"]
    assert tags.provenance(kind, after) == "v1"
    assert np.array_equal(decoded(song), audio_before)
    tags.update(song, {key: original.get(key) for key in set(after) | set(original)})
    assert tags.read_values(song) == (kind, original)
    assert tags.read_genres(song) == ["Jazz"]
    assert np.array_equal(decoded(song), audio_before)
    assert [p.name for p in song.parent.iterdir()] == [song.name]  # no temp copies left


@pytest.mark.parametrize("version", [3, 4])
def test_id3_keeps_its_version_and_writes_one_named_tcon(tmp_path: Path, version: int) -> None:
    song = make_track(tmp_path / "a.mp3", "Drone", 3.0)
    id3 = ID3()
    id3.add(TCON(encoding=1, text=["(17)"]))  # numeric ID3v1 code for Rock
    id3.save(song, v2_version=version)
    assert tags.read_genres(song) == ["Rock"]

    tags.update(song, tags.genre_values("id3", "Jazz", "v1", 0.9))

    saved = ID3(song)
    assert saved.version[1] == version
    assert len(saved.getall("TCON")) == 1
    assert saved.getall("TCON")[0].text == ["Jazz"]
    assert saved.getall("TXXX:GENRED_MODEL")[0].text == ["v1"]


def test_mp4_genre_is_replaced_with_freeform_provenance(tmp_path: Path) -> None:
    song = make_track(tmp_path / "a.m4a", "Drone", 3.0)
    mp4 = MP4(song)
    mp4["©gen"] = ["Rock"]
    mp4.save()
    assert tags.read_genres(song) == ["Rock"]
    tags.update(song, tags.genre_values("mp4", "Jazz", "v1", 0.5))
    assert MP4(song)["©gen"] == ["Jazz"]
    assert MP4(song)["----:com.genred:confidence"][0] == b"0.500"


def test_read_only_file_is_refused_and_untouched(tmp_path: Path) -> None:
    song = make_track(tmp_path / "a.flac", "Drone", 3.0)
    before = song.read_bytes()
    song.chmod(0o444)
    with pytest.raises(tags.TagError, match="read-only"):
        tags.update(song, tags.genre_values("vorbis", "Rock", "v1", 0.9))
    assert song.read_bytes() == before


def test_vanished_file_is_a_tag_error(tmp_path: Path) -> None:
    with pytest.raises(tags.TagError, match="vanished"):
        tags.update(tmp_path / "gone.mp3", {"TCON": ["Rock"]})


def test_failure_mid_write_leaves_the_original_and_no_temp_file(tmp_path: Path) -> None:
    song = make_track(tmp_path / "a.ogg", "Chirp", 3.0)
    before = song.read_bytes()

    def mutate_then_die(tmp: str) -> None:
        Path(tmp).write_bytes(b"half written")  # the copy is damaged, then we "crash"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tags.atomic_rewrite(song, mutate_then_die)
    assert song.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ogg"]


def test_file_changed_during_the_write_is_not_replaced(tmp_path: Path) -> None:
    song = make_track(tmp_path / "a.flac", "Chirp", 3.0)

    def someone_else_writes(tmp: str) -> None:
        with song.open("ab") as fh:
            fh.write(b"\0")  # the user's tagger saved the file meanwhile

    with pytest.raises(tags.TagError, match="changed while writing"):
        tags.atomic_rewrite(song, someone_else_writes)
    assert song.read_bytes().endswith(b"\0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.flac"]


def test_write_keeps_permissions(tmp_path: Path) -> None:
    song = make_track(tmp_path / "a.mp3", "Drone", 3.0)
    song.chmod(0o640)
    tags.update(song, tags.genre_values("id3", "Rock", "v1", 0.9))
    assert stat.S_IMODE(os.stat(song).st_mode) == 0o640
    assert tags.is_temp_file(tmp_path / ".a.x1.genred-tmp.mp3")


ODD_FILES = Path(__file__).parents[2] / ".." / "shared" / "corpus" / "odd-files"
CORPUS_FORMATS = ["full.ape", "full.mpc", "full.wma", "full.dsf", "full.aiff", "full.m4a",
                  "full.alac.m4a", "full.mp3", "full.flac", "full.ogg", "full.opus", "full.wv"]
UNDECODABLE = {"full.wma"}  # FFmpeg cannot decode this WMA variant (nor can genred classify it)


@pytest.mark.corpus
@pytest.mark.skipif(not ODD_FILES.is_dir(), reason=f"{ODD_FILES} is absent")
@pytest.mark.parametrize("name", CORPUS_FORMATS)
def test_real_files_of_every_tag_format_round_trip(name: str, tmp_path: Path) -> None:
    song = tmp_path / name
    song.write_bytes((ODD_FILES / name).read_bytes())
    kind, original = tags.read_values(song)
    assert tags.read_genres(song) == ["the genre"]
    if name in UNDECODABLE:  # the audio cannot be checked, so the file is never written
        before = song.read_bytes()
        with pytest.raises(tags.TagRefused, match="cannot decode the file"):
            tags.update(song, tags.genre_values(kind, "Rock", "v1", 0.5))
        assert song.read_bytes() == before
        return

    after = tags.update(song, tags.genre_values(kind, "Rock", "v1", 0.5))
    assert tags.read_genres(song) == ["Rock"]
    assert tags.provenance(kind, after) == "v1"

    tags.update(song, {key: original.get(key) for key in set(after) | set(original)})
    assert tags.read_values(song) == (kind, original)


KILL_LOOP = """
import sys
from storage import tags
song, n = sys.argv[1], 0
kind, _ = tags.read_values(song)
print("ready", flush=True)
while True:
    n += 1
    tags.update(song, tags.genre_values(kind, f"Genre {n}", "v1", 0.5))
"""


@pytest.mark.parametrize("ext", ["mp3", "flac", "m4a"])
def test_a_kill_during_tag_writes_leaves_a_complete_file(
    ext: str, originals: dict[str, Path], tmp_path: Path
) -> None:
    import random
    import signal
    import subprocess
    import sys
    import time

    song = tmp_path / f"song.{ext}"
    song.write_bytes(originals[ext].read_bytes())
    audio = decoded(song)
    rnd = random.Random(ext)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", KILL_LOOP, str(song)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rnd.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        genres = tags.read_genres(song)  # the file parses...
        assert len(genres) <= 1 and all(g.startswith("Genre ") for g in genres)
        assert np.array_equal(decoded(song), audio)  # ...and its audio is whole
    leftovers = [p for p in tmp_path.iterdir() if p != song]
    assert all(tags.is_temp_file(p) and p.name.startswith(".") for p in leftovers)


def test_the_next_write_removes_stale_copies_of_an_interrupted_one(tmp_path: Path) -> None:
    import time

    song = make_track(tmp_path / "a.mp3", "Drone", 2.0)
    stale = tmp_path / f".a.x1y2{tags.TEMP_MARKER}.mp3"
    fresh = tmp_path / f".a.z3w4{tags.TEMP_MARKER}.mp3"  # maybe another write in progress
    for copy in (stale, fresh):
        copy.write_bytes(b"partial")
    os.utime(stale, (time.time() - tags.STALE_SECONDS - 1,) * 2)
    tags.update(song, tags.genre_values("id3", "Jazz", None, None))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([song.name, fresh.name])


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_as_root_the_owner_is_kept(tmp_path: Path) -> None:
    song = make_track(tmp_path / "a.flac", "Drone", 2.0)
    os.chown(song, 1234, 5678)
    tags.update(song, tags.genre_values("vorbis", "Jazz", None, None))
    assert (os.stat(song).st_uid, os.stat(song).st_gid) == (1234, 5678)
