"""`genred tags write|restore` as real processes: a kill -9 right after the rename, a full
disk and a 240-byte name in the middle of a run, links."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import tags
from storage.filewrite import PAUSE_ENV
from tests.audiogen import make_track

GENRED = Path(sys.executable).with_name("genred")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"), "XDG_CACHE_HOME": str(home / ".cache"),
            "GENRED_DB": f"sqlite:///{tmp_path / 'catalogue.db'}"}


def genred(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(GENRED), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def tagged(path: Path, genre: str) -> Path:
    """A track the user tagged ``genre`` before genred came along."""
    make_track(path, "Drone", 3.0)
    kind, _ = tags.read_values(path)
    tags.update(path, {tags.genre_key(kind): [genre]})
    return path


def wait_for(marker: Path, proc: subprocess.Popen[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"genred ended before the marker ({proc.returncode}): {out} {err}")
        if time.monotonic() > deadline:
            pytest.fail(f"no marker after {timeout} s")
        time.sleep(0.05)


def _as_from_a_shell() -> None:
    """SIGINT as a terminal's shell leaves it for a command: default action, not blocked.
    In the full suite the pytest process had once left it ignored or blocked for its
    children (the Ctrl-C never arrived), which is not what a user's genred meets."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_kill_9_right_after_the_rename_never_loses_the_original_genre(
    env: dict[str, str], tmp_path: Path, sig: signal.Signals
) -> None:
    """SIGKILL: nothing runs after the rename. SIGINT (Ctrl-C): the interrupted write's
    clean-up runs, and must not take the backup of a file that was already replaced."""
    song = tagged(tmp_path / "lib" / "a.mp3", "Bossa Nova")
    kind, original = tags.read_values(song)
    genred(env, "correct", song, "Jazz")
    marker = tmp_path / "renamed"

    proc = subprocess.Popen([str(GENRED), "tags", "write", song],
                            env={**env, PAUSE_ENV: str(marker)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_as_from_a_shell)
    try:
        wait_for(marker, proc)  # the new file is in place; the bookkeeping has not run
        assert tags.read_genres(song) == ["Jazz"]
        os.kill(proc.pid, sig)
        proc.wait(timeout=300)  # a hang guard: a busy machine slows the clean-up, not the outcome
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert proc.returncode != 0

    restore = genred(env, "tags", "restore", song)
    assert "restored" in restore.stdout and "Jazz -> Bossa Nova" in restore.stdout
    assert tags.read_values(song) == (kind, original)


def test_kill_9_right_after_a_restores_rename_is_settled_by_the_next_restore(
    env: dict[str, str], tmp_path: Path
) -> None:
    song = tagged(tmp_path / "lib" / "a.flac", "Bossa Nova")
    kind, original = tags.read_values(song)
    genred(env, "correct", song, "Jazz")
    genred(env, "tags", "write", song)
    marker = tmp_path / "renamed"
    proc = subprocess.Popen([str(GENRED), "tags", "restore", song],
                            env={**env, PAUSE_ENV: str(marker)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(marker, proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert tags.read_values(song) == (kind, original)

    again = genred(env, "tags", "restore", song)
    assert "already holds its original genre (Bossa Nova)" in again.stdout
    assert genred(env, "tags", "restore", song).stdout.strip() == "nothing to restore"


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
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


def test_a_run_records_each_files_fault_and_goes_on(env: dict[str, str], tmp_path: Path,
                                                   full_disk: Path) -> None:
    lib = tmp_path / "lib"
    long_name = lib / ("n" * 236 + ".mp3")  # 240 bytes
    make_track(long_name, "Drone", 3.0)
    make_track(tmp_path / "big.wav", "Pulse", 14.0)  # ~620 kB: no room for a copy
    full = full_disk / "big.wav"
    full.write_bytes((tmp_path / "big.wav").read_bytes())
    before = full.read_bytes()
    writer_held = make_track(lib / "downloading.ogg", "Chirp", 3.0)
    for path in (long_name, full, writer_held):
        genred(env, "correct", path, "Jazz")

    with writer_held.open("ab"):  # a download still in progress
        out = genred(env, "tags", "write", lib, full_disk).stdout.splitlines()

    def line(name: str) -> str:
        (found,) = [x for x in out if f"/{name}: " in x]
        return found

    assert line("big.wav").startswith("failed") and "no space left on device" in line("big.wav")
    assert line("downloading.ogg").startswith("refused")
    assert "open for writing" in line("downloading.ogg")
    assert line(long_name.name).startswith("written")
    assert out[-1] == "1 failed, 1 refused, 1 written"
    assert full.read_bytes() == before and sorted(os.listdir(full_disk)) == ["big.wav"]
    assert tags.read_genres(long_name) == ["Jazz"]
    assert sorted(p.name for p in lib.iterdir()) == sorted([long_name.name, "downloading.ogg"])


def test_links_are_kept_by_write_and_restore(env: dict[str, str], tmp_path: Path) -> None:
    real = tagged(tmp_path / "store" / "a.ogg", "Bossa Nova")
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a.ogg").symlink_to(real)
    hard = tagged(tmp_path / "store" / "b.ogg", "Samba")
    os.link(hard, lib / "b.ogg")
    genred(env, "correct", lib, "Jazz")

    out = genred(env, "tags", "write", lib).stdout
    assert "refused" in out and "2 hard links" in out
    assert (lib / "a.ogg").is_symlink() and tags.read_genres(real) == ["Jazz"]
    assert tags.read_genres(hard) == ["Samba"] and os.stat(hard).st_nlink == 2

    restore = genred(env, "tags", "restore", lib).stdout
    assert restore.strip().splitlines()[-1] == "1 restored"
    assert (lib / "a.ogg").is_symlink() and tags.read_genres(real) == ["Bossa Nova"]


def test_split_hard_links_in_the_config_lets_tags_write_split_them(env: dict[str, str],
                                                                   tmp_path: Path) -> None:
    song = tagged(tmp_path / "lib" / "b.ogg", "Samba")
    os.link(song, tmp_path / "elsewhere.ogg")
    config = tmp_path / "config.toml"
    config.write_text("split_hard_links = true\n")
    genred(env, "correct", song, "Jazz")
    out = genred(env, "--config", config, "tags", "write", song).stdout
    assert out.strip().splitlines()[-1] == "1 written"
    assert tags.read_genres(song) == ["Jazz"]
    assert tags.read_genres(tmp_path / "elsewhere.ogg") == ["Samba"]  # the split allowed
