"""Catalogue faults reach the user as one line and exit status 1 (2 for a URL that cannot
be used), in every command: real `genred` processes, real files, a real lock held by a
second program, a real full and a real read-only file system (issue 14, items 9 and 15)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.audiogen import make_track
from tests.storage.modelkit import tiny_bundle

GENRED = Path(sys.executable).with_name("genred")

# Every verb that opens the catalogue, with the arguments it needs ({song}, {music}).
COMMANDS = [
    ["stats"], ["query"], ["correct", "{song}", "Jazz"], ["uncorrect", "{song}"],
    ["import-tags", "{music}"], ["tags", "write"], ["tags", "restore"], ["scan", "{music}"],
    ["status"], ["retrain"], ["models", "activate", "starter"],
    ["run", "--watch", "{music}"],
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def music(tmp_path: Path) -> Path:
    make_track(tmp_path / "music" / "song.wav", "Pulse", 4.0, seed=1)
    return tmp_path / "music"


@pytest.fixture
def env(tmp_path: Path, model_dir: Path) -> dict[str, str]:
    home = tmp_path / "home"
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"), "XDG_CACHE_HOME": str(home / ".cache"),
            "GENRED_CONFIG": "", "GENRED_MODEL": str(model_dir), "GENRED_WORKERS": "1",
            "GENRED_CLIPS_PER_TRACK": "1"}


def genred(env: dict[str, str], *args: str | Path,
           prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, str(GENRED), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


def _args(command: list[str], music: Path) -> list[str]:
    return [a.format(song=music / "song.wav", music=music) for a in command]


def _one_line_failure(proc: subprocess.CompletedProcess[str], status: int, words: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("genred")]
    assert len(lines) == 1 and words in lines[0], proc.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_file_that_is_not_a_database_is_one_line_in_every_command(
    command: list[str], env: dict[str, str], music: Path, tmp_path: Path,
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my shopping list, not a catalogue\n" * 100)
    proc = genred(env, *_args(command, music), "--db", notes)
    _one_line_failure(proc, 1, "is not a genred catalogue")
    assert notes.read_text().startswith("my shopping list")  # left as it was


@pytest.mark.parametrize(("how", "value", "named", "command"), [
    ("--db", "bogus://nowhere", "--db", ["stats"]),
    ("GENRED_DB", "bogus://nowhere", "GENRED_DB", ["correct", "{song}", "Jazz"]),
    ("GENRED_DB", "sqlite://somehost/x.db", "GENRED_DB", ["status"]),
    ("--db", "postgresql+nosuchdriver://u@h/db", "--db", ["scan", "{music}"]),
])
def test_a_bad_catalogue_url_names_where_it_came_from_and_exits_2(
    command: list[str], how: str, value: str, named: str, env: dict[str, str], music: Path,
) -> None:
    args = _args(command, music)
    if how == "--db":
        proc = genred(env, *args, "--db", value)
    else:
        proc = genred({**env, how: value}, *args)
    _one_line_failure(proc, 2, named)


@pytest.mark.parametrize("value", ["::", "plain.db", "bogus"])
def test_a_plain_path_is_a_catalogue_file_from_the_flag_and_the_variable(
    value: str, env: dict[str, str], music: Path, tmp_path: Path,
) -> None:
    for how in ("--db", "GENRED_DB"):
        cwd = tmp_path / how
        cwd.mkdir()
        if how == "--db":
            proc = subprocess.run([str(GENRED), "correct", music / "song.wav", "Jazz", "--db",
                                   value], env=env, capture_output=True, text=True, cwd=cwd)
        else:
            proc = subprocess.run([str(GENRED), "correct", music / "song.wav", "Jazz"],
                                  env={**env, "GENRED_DB": value}, capture_output=True,
                                  text=True, cwd=cwd)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert (cwd / value).is_file()


def test_a_catalogue_path_with_percent_colon_hash_and_parentheses_works(
    env: dict[str, str], music: Path, tmp_path: Path,
) -> None:
    folder = tmp_path / "50% off: #1 (copy)"
    for db in (f"sqlite:///{folder / 'cat.db'}", str(folder / "other.db")):
        proc = genred(env, "correct", music / "song.wav", "Jazz", "--db", db)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        proc = genred(env, "query", "--genre", "jazz", "--format", "json", "--db", db)
        assert proc.returncode == 0 and "song.wav" in proc.stdout, proc.stderr


def test_a_folder_given_as_the_catalogue_says_so(env: dict[str, str], tmp_path: Path) -> None:
    _one_line_failure(genred(env, "stats", "--db", tmp_path), 1, "is a folder")


def test_a_lock_held_past_the_busy_timeout_is_one_line_and_loses_nothing(
    env: dict[str, str], music: Path, tmp_path: Path,
) -> None:
    db = tmp_path / "catalogue.db"
    assert genred(env, "correct", music / "song.wav", "Rock", "--db", db).returncode == 0
    other = sqlite3.connect(db, isolation_level=None)  # a second program, writing
    other.execute("BEGIN IMMEDIATE")
    try:  # held until the command is done: 1 s of busy timeout, not the default 30 s
        proc = genred({**env, "GENRED_BUSY_TIMEOUT_SECONDS": "1"}, "correct",
                      music / "song.wav", "Jazz", "--db", db)
    finally:
        other.execute("ROLLBACK")
        other.close()
    _one_line_failure(proc, 1, "is locked: another program held it for more than 1 s")
    proc = genred(env, "query", "--format", "csv", "--db", db)
    assert proc.returncode == 0 and "Rock" in proc.stdout, proc.stderr


def _namespace_mounts() -> bool:
    """Whether this process may mount a tmpfs in a user namespace of its own."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(
    not _namespace_mounts(),
    reason="cannot mount a tmpfs here (needs unshare and unprivileged user namespaces)")


def _in_namespace(env: dict[str, str], script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (bash) in a private mount namespace, where it may mount."""
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "bash", "-c",
                           script], env=env, capture_output=True, text=True, timeout=600)


@needs_mounts
@pytest.mark.parametrize("command", [["scan", "{music}"], ["correct", "{song}", "Jazz"],
                                     ["import-tags", "{music}"], ["query"]],
                         ids=lambda c: c[0])
def test_a_full_disk_says_disk_full_and_what_to_do(
    command: list[str], env: dict[str, str], music: Path, tmp_path: Path,
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    db = disk / "catalogue.db"
    args = " ".join(f"'{a}'" for a in _args(command, music))
    script = (f"set -e; mount -t tmpfs -o size=2m tmpfs '{disk}'; "
              f"'{GENRED}' stats --db '{db}' >/dev/null; "
              f"head -c 8m /dev/zero > '{disk}/filler' 2>/dev/null || true; "
              f"set +e; '{GENRED}' {args} --db '{db}'; echo \"status=$?\" >&2")
    proc = _in_namespace(env, script)
    assert "status=1" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "disk I/O error;" not in proc.stderr
    assert "the disk holding the catalogue" in proc.stderr and "is full" in proc.stderr
    assert "free some space" in proc.stderr


@needs_mounts
@pytest.mark.parametrize("command", [["stats"], ["correct", "{song}", "Jazz"],
                                     ["scan", "{music}"]], ids=lambda c: c[0])
def test_a_read_only_catalogue_is_one_line(
    command: list[str], env: dict[str, str], music: Path, tmp_path: Path,
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "catalogue.db"
    assert genred(env, "stats", "--db", db).returncode == 0
    args = " ".join(f"'{a}'" for a in _args(command, music))
    script = (f"set -e; mount --bind '{folder}' '{folder}'; "
              f"mount -o remount,ro,bind '{folder}'; "
              f"set +e; '{GENRED}' {args} --db '{db}'; echo \"status=$?\" >&2")
    proc = _in_namespace(env, script)
    assert "status=1" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "read-only" in proc.stderr


@pytest.mark.parametrize("command", [["stats"], ["genres"], ["status"]], ids=" ".join)
def test_a_catalogue_server_that_refuses_the_connection_is_one_line(
    command: list[str], env: dict[str, str],
) -> None:
    # Nothing listens on port 1: PostgreSQL's driver answers with two lines (the refusal,
    # then a tab-indented "Is the server running ...?"), which must reach the user as one.
    proc = genred(env, *command, "--db", "postgresql://postgres@127.0.0.1:1/test")
    _one_line_failure(proc, 1, "cannot open the catalogue postgresql://postgres@127.0.0.1:1")
    assert "Is the server running" in proc.stderr and "\t" not in proc.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_output_that_cannot_be_written_is_one_line_in_every_command(
    env: dict[str, str], music: Path, tmp_path: Path,
) -> None:
    """`genred query > /dev/full`: every write fails with ENOSPC, as on a full disk."""
    env = {**env, "GENRED_DB": f"sqlite:///{tmp_path / 'catalogue.db'}"}
    assert genred(env, "scan", music).returncode == 0
    runs = [({}, ["query"]), ({}, ["query", "--format", "json"]),
            ({}, ["query", "--format", "csv"]), ({}, ["stats"]), ({}, ["status"]),
            ({}, ["genres"]), ({}, ["config", "show"]), ({}, ["classify", "{song}"]),
            ({"PYTHONUNBUFFERED": "1"}, ["query"]),  # python -u: no buffer to fail at exit
            ({"PYTHONUNBUFFERED": ""}, ["query"])]
    for extra, command in runs:
        with open("/dev/full", "w") as full:
            proc = subprocess.run([str(GENRED), *_args(command, music)],
                                  env={**env, **extra}, stdout=full, stderr=subprocess.PIPE,
                                  text=True, timeout=300)
        assert "Exception ignored" not in proc.stderr, (command, proc.stderr)
        _one_line_failure(proc, 1, "cannot write the output: no space left on device")
    # The same commands with somewhere to write still work.
    proc = genred(env, "query", "--format", "json")
    assert proc.returncode == 0 and "song.wav" in proc.stdout, proc.stderr
