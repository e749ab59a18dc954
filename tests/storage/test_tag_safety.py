"""What a tag write refuses to do to a user's file, caused as a user or a second program
would: another process writing it, a truncated WAV/AIFF, an incomplete download, links,
a 240-byte name, a full disk, a genre with control characters."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import filewrite, tags
from tests.audiogen import make_track

WRITER = """
import sys
mode = sys.argv[2]
fh = open(sys.argv[1], mode)
print("open", flush=True)
sys.stdin.read()  # hold the file open until the test closes our stdin
"""


class Holder:
    """A real second process holding ``path`` open with ``mode`` until ``close()``."""

    def __init__(self, path: Path, mode: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), mode],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "open"

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        if holder.proc.poll() is None:
            holder.close()


def jazz(path: Path) -> tags.Values:
    kind, _ = tags.read_values(path)
    return tags.update(path, tags.genre_values(kind, "Jazz", "v1", 0.9))


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- another program writing the file --------------------------------------------------

def test_a_file_another_program_has_open_for_writing_is_never_replaced(
    tmp_path: Path, holders: list[Holder]
) -> None:
    song = make_track(tmp_path / "download.mp3", "Pulse", 3.0)
    before = song.read_bytes()
    holders.append(Holder(song, "ab"))  # a stalled copy: open for writing, nothing written

    with pytest.raises(tags.TagRefused, match="open for writing"):
        jazz(song)
    assert song.read_bytes() == before
    assert files_in(tmp_path) == ["download.mp3"]

    holders[0].close()  # the copy finished
    jazz(song)
    assert tags.read_genres(song) == ["Jazz"]


def test_a_program_that_opens_the_file_during_the_write_stops_the_rename(
    tmp_path: Path, holders: list[Holder]
) -> None:
    song = make_track(tmp_path / "a.flac", "Drone", 3.0)
    before = song.read_bytes()

    def meanwhile_a_writer_opens_it(tmp: str) -> None:
        holders.append(Holder(song, "ab"))  # opens it, writes nothing: size and mtime stay

    with pytest.raises(tags.TagRefused, match="open for writing"):
        tags.atomic_rewrite(song, meanwhile_a_writer_opens_it)
    assert song.read_bytes() == before
    assert files_in(tmp_path) == ["a.flac"]


def test_readers_do_not_block_a_write_and_both_probes_see_writers(
    tmp_path: Path, holders: list[Holder]
) -> None:
    song = make_track(tmp_path / "a.ogg", "Drone", 3.0)
    holders.append(Holder(song, "rb"))  # a player reading the file
    assert not filewrite.open_for_writing(song)
    assert not filewrite.writers_in_proc(song)
    jazz(song)  # replaced under the reader: it keeps reading the old inode, as with any tagger

    holders.append(Holder(song, "r+b"))
    assert filewrite.open_for_writing(song)  # the lease probe
    assert filewrite.writers_in_proc(song)  # the fallback where leases are not allowed


# --- the decoded audio must stay the same ---------------------------------------------

def truncated(path: Path) -> Path:
    """A file cut short, as an interrupted copy leaves it (the header still says 10 s)."""
    make_track(path, "Pulse", 10.0, seed=1)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    return path


@pytest.mark.parametrize("ext", ["wav", "aiff"])
def test_a_truncated_wav_or_aiff_is_refused_because_the_tag_would_become_audio(
    tmp_path: Path, ext: str
) -> None:
    song = truncated(tmp_path / f"cut.{ext}")
    before = song.read_bytes()
    for _ in range(2):  # every run refuses again; nothing accumulates
        with pytest.raises(tags.TagRefused, match="would change the decoded audio"):
            jazz(song)
        assert song.read_bytes() == before
    assert files_in(tmp_path) == [song.name]


def test_any_change_to_the_decoded_samples_is_refused(tmp_path: Path) -> None:
    song = make_track(tmp_path / "a.wav", "Chirp", 3.0)
    before = song.read_bytes()

    def damage_the_samples(tmp: str) -> None:
        with open(tmp, "r+b") as fh:
            fh.seek(len(before) // 2)
            fh.write(b"\x7f" * 64)  # same size, same tags, different audio

    with pytest.raises(tags.TagRefused, match="would change the decoded audio"):
        tags.atomic_rewrite(song, damage_the_samples)
    assert song.read_bytes() == before
    assert files_in(tmp_path) == ["a.wav"]


def test_audio_ending_early_against_its_header_is_refused_as_incomplete(tmp_path: Path) -> None:
    song = truncated(tmp_path / "partial.mp3")  # the Xing header still says 10 s
    before = song.read_bytes()
    with pytest.raises(tags.TagRefused, match=r"ends at 6\.\d s but its header says 10\.0 s"):
        jazz(song)
    assert song.read_bytes() == before


# --- links -------------------------------------------------------------------------------

def test_a_symlinked_track_is_written_through_the_link_which_stays(tmp_path: Path) -> None:
    real = make_track(tmp_path / "store" / "a.flac", "Drone", 3.0)
    (tmp_path / "lib").mkdir()
    link = tmp_path / "lib" / "a.flac"
    link.symlink_to(real)
    link_inode = os.lstat(link).st_ino

    jazz(link)

    assert link.is_symlink() and os.readlink(link) == str(real)
    assert os.lstat(link).st_ino == link_inode
    assert tags.read_genres(real) == ["Jazz"]  # the file itself has the tag: no duplicate
    assert files_in(tmp_path / "lib") == ["a.flac"]
    assert files_in(tmp_path / "store") == ["a.flac"]


def test_a_relative_symlink_chain_is_followed_to_the_real_file(tmp_path: Path) -> None:
    real = make_track(tmp_path / "a" / "song.mp3", "Drone", 3.0)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "hop.mp3").symlink_to(Path("..") / "a" / "song.mp3")
    (tmp_path / "c.mp3").symlink_to(Path("b") / "hop.mp3")
    jazz(tmp_path / "c.mp3")
    assert (tmp_path / "c.mp3").is_symlink() and (tmp_path / "b" / "hop.mp3").is_symlink()
    assert tags.read_genres(real) == ["Jazz"]


def test_a_hard_linked_file_is_refused_unless_splitting_is_allowed(tmp_path: Path) -> None:
    song = make_track(tmp_path / "a.mp3", "Drone", 3.0)
    other = tmp_path / "same-song.mp3"
    os.link(song, other)
    before = song.read_bytes()

    with pytest.raises(tags.TagRefused, match=r"2 hard links.*split_hard_links"):
        jazz(song)
    assert song.read_bytes() == before and os.stat(song).st_nlink == 2

    kind, _ = tags.read_values(song)
    tags.update(song, tags.genre_values(kind, "Jazz", "v1", 0.9), split_hard_links=True)
    assert tags.read_genres(song) == ["Jazz"]
    assert other.read_bytes() == before  # the split the user allowed
    assert os.stat(song).st_nlink == os.stat(other).st_nlink == 1


# --- names and disks ---------------------------------------------------------------------

def test_a_240_byte_file_name_is_tagged_through_a_short_temp_copy(tmp_path: Path) -> None:
    name = "ü" * 118 + ".mp3"  # 236 bytes of UTF-8 + 4: a long temp name would not fit
    assert len(name.encode()) == 240
    song = make_track(tmp_path / name, "Drone", 3.0)
    seen: list[str] = []
    tags.atomic_rewrite(song, lambda tmp: seen.append(os.path.basename(tmp)))
    assert len(seen[0].encode()) < 32 and tags.is_temp_file(seen[0])
    jazz(song)
    assert tags.read_genres(song) == ["Jazz"]
    assert files_in(tmp_path) == [name]


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs (root only; skipped where it cannot be mounted)."""
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_a_tag_error_naming_it_and_leaves_the_file(full_disk: Path,
                                                                   tmp_path: Path) -> None:
    song = full_disk / "big.wav"
    make_track(tmp_path / "big.wav", "Pulse", 14.0)  # ~620 kB: a second copy cannot fit
    song.write_bytes((tmp_path / "big.wav").read_bytes())
    before = song.read_bytes()

    with pytest.raises(tags.TagError, match="no space left on device"):
        jazz(song)
    assert song.read_bytes() == before
    assert files_in(full_disk) == ["big.wav"]


# --- values -------------------------------------------------------------------------------

@pytest.mark.parametrize("genre", ["Rock\nPop", "Ro\x00ck", "Jazz\x1b]0;owned\x07", " ",
                                   "Rock\u2028Pop"])
def test_a_genre_that_is_not_printable_text_is_never_put_in_a_tag(genre: str) -> None:
    with pytest.raises(ValueError, match="not printable"):
        tags.genre_values("id3", genre, "v1", 0.9)
    assert tags.genre_values("id3", "Drum & Bass / Jungle (UK)", "v1", 0.9)["TCON"] == \
        ["Drum & Bass / Jungle (UK)"]


LEASE_HOLDER = """
import fcntl, os, sys
from storage import filewrite
fd = os.open(sys.argv[1], os.O_RDONLY)
filewrite.take_read_lease(fd)
print("leased", flush=True)
sys.stdin.readline()
fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
print("alive", flush=True)
"""


def test_a_writer_opening_the_file_during_the_lease_probe_does_not_kill_us(
    tmp_path: Path, holders: list[Holder]
) -> None:
    """The kernel signals a lease holder when a writer opens the file; with the default
    SIGIO that signal would end the daemon."""
    from tests.daemon.daemon_helpers import wait_for

    song = make_track(tmp_path / "a.mp3", "Drone", 2.0)
    holder = subprocess.Popen([sys.executable, "-c", LEASE_HOLDER, str(song)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "leased"
        writer = subprocess.Popen([sys.executable, "-c", f"open({str(song)!r}, 'ab')"])
        inode = f":{os.stat(song).st_ino} "
        wait_for(lambda: any("BREAKING" in line and inode in line
                             for line in Path("/proc/locks").read_text().splitlines()),
                 60, "the kernel to start breaking the lease (the signal is sent then)")
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "alive"
        assert writer.wait(timeout=60) == 0
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_the_audio_check_needs_no_torch(tmp_path: Path) -> None:
    """storage/ never loads torch: the check uses classifier.audio's PyAV decoder only."""
    song = make_track(tmp_path / "a.flac", "Drone", 2.0)
    script = ("import sys\nfrom storage import tags\n"
              f"tags.update({str(song)!r}, tags.genre_values('vorbis', 'Jazz', 'v1', 0.5))\n"
              "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "False"
    assert tags.read_genres(song) == ["Jazz"]
