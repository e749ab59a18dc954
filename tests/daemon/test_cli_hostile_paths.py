"""Paths a hostile library holds, through real `genred` processes: a path that does not
exist, a name that is not UTF-8, names with terminal escapes and newlines, folders genred
may not read, FIFOs, device files and symlink loops."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage import catalogue, tags
from storage.corrections import corrected_genre
from storage.db import open_catalogue
from tests.audiogen import make_track
from tests.daemon.daemon_helpers import Daemon, Library, wait_for
from tests.storage.modelkit import tiny_bundle

GENRED = Path(sys.executable).with_name("genred")
BAD = b"bad\xffname.ogg"  # not UTF-8: a name only bytes can spell
EVIL = "evil\x1b]0;pwned\x07\nrow\x1b[2J\u202e.ogg"  # OSC title, newline, clear, RTL


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("models") / "tiny-v1")


@pytest.fixture
def env(tmp_path: Path, model_dir: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"), "XDG_CACHE_HOME": str(home / ".cache"),
            "GENRED_DB": f"sqlite:///{tmp_path / 'catalogue.db'}", "GENRED_MODEL": str(model_dir),
            "GENRED_CLIPS_PER_TRACK": "1", "GENRED_WORKERS": "1"}


def run(env: dict[str, str], *args: str | bytes | Path, prefix: tuple[str, ...] = (),
        code: int = 0) -> subprocess.CompletedProcess[bytes]:
    """`genred ARGS` with bytes in and out (argv and output may hold any bytes)."""
    argv = [*prefix, str(GENRED), *(a if isinstance(a, bytes) else os.fsencode(a) for a in args)]
    proc = subprocess.run(argv, env=env, capture_output=True, timeout=300)
    assert proc.returncode == code, proc.stderr.decode(errors="replace")
    return proc


# --- one rule for a path that does not exist ----------------------------------------------

@pytest.mark.parametrize("verb", [
    ["classify"], ["scan"], ["correct", "{}", "Drone"], ["uncorrect"], ["tags", "write"],
    ["tags", "restore"], ["import-tags"], ["run", "--watch"], ["correct", "--from-csv"]])
def test_a_path_that_does_not_exist_is_the_same_error_everywhere(
        env: dict[str, str], tmp_path: Path, verb: list[str]) -> None:
    gone = tmp_path / "no" / "such.ogg"
    args = [a.format(gone) for a in verb] if "{}" in verb else [*verb, str(gone)]
    proc = run(env, *args, code=2)
    assert proc.stderr.decode() == f"genred: no such file or folder: {gone}\n"
    assert proc.stdout == b""


def test_a_watch_folder_from_the_variable_or_the_config_that_does_not_exist_is_named(
        env: dict[str, str], tmp_path: Path) -> None:
    gone, a_file = tmp_path / "no" / "music", tmp_path / "notes.txt"
    a_file.write_text("not a folder\n")
    config = tmp_path / "config.toml"
    config.write_text(f'watch = ["{gone}"]\n')
    for extra, args, named in [({"GENRED_WATCH": str(gone)}, [], "GENRED_WATCH"),
                               ({}, ["--config", config], f"config key 'watch' in {config}")]:
        proc = run({**env, **extra}, *args, "run", code=2)
        assert proc.stderr.decode() == f"genred: {named}: no such file or folder: {gone}\n"
    proc = run({**env, "GENRED_WATCH": str(a_file)}, "run", code=2)
    assert proc.stderr.decode() == f"genred: GENRED_WATCH: {a_file} is not a folder\n"


def test_a_csv_line_naming_a_missing_file_is_reported_and_counted(
        env: dict[str, str], tmp_path: Path) -> None:
    song = make_track(tmp_path / "lib" / "a.ogg", "Drone", 2.0)
    labels = tmp_path / "labels.csv"
    labels.write_text(f"path,genre\n{song},Pulse\n{tmp_path / 'gone.ogg'},Drone\n")
    out = run(env, "correct", "--from-csv", labels).stdout.decode().splitlines()
    assert f"skipped: no such file or folder: {tmp_path / 'gone.ogg'}" in out
    assert out[-1] == "1 corrected, 0 already had that genre, 1 skipped"
    engine = open_catalogue(env["GENRED_DB"])
    assert corrected_genre(engine, song) == "Pulse"
    assert catalogue.get_track(engine, tmp_path / "gone.ogg") is None  # not applied either


# --- names that are not UTF-8, and names that would drive a terminal ----------------------

def test_a_name_that_is_not_utf8_goes_through_scan_query_correct_and_tags(
        env: dict[str, str], tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    make_track(lib / "good.ogg", "Drone", 2.0)
    bad = os.fsencode(lib) + b"/" + BAD
    shutil.copy(lib / "good.ogg", bad)
    assert run(env, "scan", lib).stdout.decode().splitlines()[-1] == \
        "scanned 2: 2 classified, 0 unchanged, 0 errors"
    table = run(env, "query").stdout.decode("utf-8")  # the table is valid UTF-8 text
    assert f"{lib}/bad\\xffname.ogg" in table
    rows = json.loads(run(env, "query", "--format", "json").stdout)
    assert sorted(os.fsencode(r["path"]) for r in rows) == sorted(
        [bad, os.fsencode(lib / "good.ogg")])
    raw_csv = run(env, "query", "--format", "csv").stdout  # the name's own bytes
    parsed = list(csv.reader(io.StringIO(raw_csv.decode("utf-8", "surrogateescape"))))
    assert bad in [os.fsencode(r[0]) for r in parsed[1:]]
    out = run(env, "correct", bad, "Pulse").stdout.decode()
    assert "corrected " + f"{lib}/bad\\xffname.ogg: Pulse" in out
    out = run(env, "tags", "write", "--tag-threshold", "0", lib).stdout.decode()
    assert "2 written" in out
    assert tags.read_genres(os.fsdecode(bad)) == ["Pulse"]
    assert sorted(os.listdir(os.fsencode(lib))) == [BAD, b"good.ogg"]  # no stray temp copy


def test_the_daemon_catalogues_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    library = Library.create(tmp_path)
    daemon = Daemon(library).ready()
    try:
        song = make_track(tmp_path / "song.ogg", "Drone", 2.0)
        bad = os.fsencode(library.music) + b"/" + BAD
        shutil.copy(song, bad)
        engine = open_catalogue(f"sqlite:///{library.db}")
        wait_for(lambda: (t := catalogue.get_track(engine, os.fsdecode(bad))) is not None
                 and t.status == "ok", 120, "the non-UTF-8 name classified")
        make_track(library.music / "after.ogg", "Pulse", 2.0)  # and it goes on serving
        wait_for(lambda: (t := catalogue.get_track(engine, library.music / "after.ogg"))
                 is not None and t.status == "ok", 120, "the next file classified")
        assert daemon.proc.poll() is None
    finally:
        code, _ = daemon.terminate()
        daemon.cleanup()
    assert code == 0, daemon.output()


def test_names_with_escapes_and_newlines_are_shown_escaped_and_kept_in_json(
        env: dict[str, str], tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    make_track(lib / "good.ogg", "Drone", 2.0)
    shutil.copy(lib / "good.ogg", lib / EVIL)
    shown = f"{lib}/evil\\x1b]0;pwned\\x07\\nrow\\x1b[2J\\u202e.ogg"
    run(env, "scan", lib)
    for out in (run(env, "query").stdout.decode(), run(env, "classify", lib).stdout.decode(),
                run(env, "correct", lib / EVIL, "Pulse").stdout.decode(),
                run(env, "tags", "write", lib).stdout.decode()):
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
        assert shown in out
        assert not any(line.startswith("row") for line in out.splitlines())
    table = run(env, "query").stdout.decode().splitlines()
    assert len(table) == 1 + 2 + 1  # header, one line per track, footer
    paths = [r["path"] for r in json.loads(run(env, "query", "--format", "json").stdout)]
    assert str(lib / EVIL) in paths


# --- folders genred may not read; FIFOs, devices and symlink loops -------------------------

def _as_unprivileged(tmp_path: Path) -> tuple[str, ...]:
    """Run a command as a user the file permissions apply to. As root (which bypasses
    them) that is root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, on folders owned by
    nobody: a plain `nobody` could not reach this venv's interpreter under /root."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot drop the permission bypass")
    probe = subprocess.run([setpriv, "--bounding-set=-dac_override,-dac_read_search",
                            sys.executable, "-c", "pass"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop capabilities here: {probe.stderr.decode().strip()}")
    return (setpriv, "--bounding-set=-dac_override,-dac_read_search")


def _lock(folder: Path, mode: int) -> None:
    if os.geteuid() == 0:
        os.chown(folder, 65534, 65534)
    folder.chmod(mode)


def test_unreadable_folders_are_counted_and_their_tracks_left_alone(
        env: dict[str, str], tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    make_track(lib / "open" / "a.ogg", "Drone", 2.0, seed=1)
    make_track(lib / "noexec" / "b.ogg", "Pulse", 2.0, seed=2)
    make_track(lib / "noread" / "c.ogg", "Chirp", 2.0, seed=3)
    run(env, "scan", lib)
    run(env, "correct", lib / "noexec" / "b.ogg", "Pulse")
    shutil.copy(lib / "noexec" / "b.ogg", lib / "open" / "copy-of-b.ogg")  # same audio
    prefix = _as_unprivileged(tmp_path)
    _lock(lib / "noexec", 0o644)  # names can be listed, not looked at
    _lock(lib / "noread", 0o311)  # can be entered, not listed
    try:
        proc = run(env, "scan", lib, prefix=prefix)
        summary = proc.stdout.decode().splitlines()[-1]
        assert summary == ("scanned 2: 1 classified, 1 unchanged, 0 errors "
                           "(2 folders unreadable)"), summary
        log = proc.stderr.decode()
        assert f"cannot read folder {lib / 'noexec'}: Permission denied" in log
        assert f"cannot read folder {lib / 'noread'}: Permission denied" in log
        classify = run(env, "classify", lib, prefix=prefix)
        assert "2 folders unreadable" in classify.stderr.decode()
        assert classify.stdout.decode().count(".ogg") == 2
    finally:
        (lib / "noexec").chmod(0o755)
        (lib / "noread").chmod(0o755)
    engine = open_catalogue(env["GENRED_DB"])
    for path in (lib / "noexec" / "b.ogg", lib / "noread" / "c.ogg"):
        assert catalogue.get_track(engine, path).status == "ok"  # type: ignore[union-attr]
    assert corrected_genre(engine, lib / "noexec" / "b.ogg") == "Pulse"  # history stays
    assert corrected_genre(engine, lib / "open" / "copy-of-b.ogg") is None


RESCAN = """
import json, sys
from daemon.reconcile import Reconciler
from daemon.watcher import FileStabilityTracker
from storage.db import open_catalogue
engine = open_catalogue(sys.argv[1])
counts = Reconciler(engine, [sys.argv[2]], FileStabilityTracker(1.0)).rescan(1.0)
print(json.dumps(counts))
"""


def test_the_daemons_rescan_leaves_the_tracks_of_unreadable_folders_alone(
        env: dict[str, str], tmp_path: Path) -> None:
    """The rescan `genred run` makes at start and every rescan_hours, in a process the
    folder permissions apply to: unreadable folders are counted, never taken for gone."""
    lib = tmp_path / "lib"
    make_track(lib / "open" / "a.ogg", "Drone", 2.0, seed=1)
    make_track(lib / "noexec" / "b.ogg", "Pulse", 2.0, seed=2)
    make_track(lib / "noread" / "c.ogg", "Chirp", 2.0, seed=3)
    run(env, "scan", lib)
    run(env, "correct", lib / "noexec" / "b.ogg", "Pulse")
    shutil.copy(lib / "noexec" / "b.ogg", lib / "open" / "copy-of-b.ogg")  # same audio
    hour_ago = time.time() - 3600  # copied earlier: queued by the walk, not left to settle
    os.utime(lib / "open" / "copy-of-b.ogg", (hour_ago, hour_ago))
    prefix = _as_unprivileged(tmp_path)
    _lock(lib / "noexec", 0o644)
    _lock(lib / "noread", 0o311)
    try:
        proc = subprocess.run([*prefix, sys.executable, "-c", RESCAN, env["GENRED_DB"],
                               str(lib)], env=env, capture_output=True, text=True,
                              timeout=300)
    finally:
        (lib / "noexec").chmod(0o755)
        (lib / "noread").chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)
    assert counts["unreadable"] == 2 and counts["missing"] == 0, counts
    assert counts["queued"] == 1 and counts["unchanged"] == 1, counts  # the copy; a.ogg
    engine = open_catalogue(env["GENRED_DB"])
    for path in (lib / "noexec" / "b.ogg", lib / "noread" / "c.ogg"):
        assert catalogue.get_track(engine, path).status == "ok"  # type: ignore[union-attr]
    assert corrected_genre(engine, lib / "noexec" / "b.ogg") == "Pulse"  # history stays
    assert catalogue.get_track(engine, lib / "open" / "copy-of-b.ogg").status == "pending"  # type: ignore[union-attr]


def test_fifos_devices_and_symlink_loops_are_counted_never_opened(
        env: dict[str, str], tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    make_track(lib / "good.ogg", "Drone", 2.0)
    os.mkfifo(lib / "pipe.ogg")  # opening it would block until a writer comes: never
    try:
        os.mknod(lib / "null.mp3", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:  # not root: a link to /dev/null is a device file all the same
        os.symlink("/dev/null", lib / "null.mp3")
    os.symlink("loop.flac", lib / "loop.flac")
    out = run(env, "scan", lib).stdout.decode().splitlines()[-1]
    assert out == "scanned 1: 1 classified, 0 unchanged, 0 errors " \
        "(3 skipped: not regular files)"
    classify = run(env, "classify", lib / "pipe.ogg", lib)
    assert "4 skipped: not regular files" in classify.stderr.decode()
    assert classify.stdout.decode().count(".ogg") == 1
    assert "3 skipped: not regular files" in run(env, "import-tags", lib).stdout.decode()
