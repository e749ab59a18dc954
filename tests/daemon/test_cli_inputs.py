"""Values a user types or writes into files: numbers in bounds, genre names that are
names, config and CSV files that are not what they should be. Each ends in one line that
names the flag, the variable or the key, never a traceback (issue 14 items 5 and 10,
issue 9 item 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.audiogen import make_track
from tests.storage.modelkit import tiny_bundle

GENRED = Path(sys.executable).with_name("genred")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def song(tmp_path: Path) -> Path:
    return make_track(tmp_path / "music" / "song.wav", "Pulse", 4.0, seed=1)


@pytest.fixture
def env(tmp_path: Path, model_dir: Path) -> dict[str, str]:
    home = tmp_path / "home"
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"), "XDG_CACHE_HOME": str(home / ".cache"),
            "GENRED_CONFIG": "", "GENRED_MODEL": str(model_dir), "GENRED_WORKERS": "1",
            "GENRED_DB": f"sqlite:///{tmp_path / 'catalogue.db'}"}


def genred(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GENRED), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=240)


def in_process(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
               capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """``genred ARGS`` through the same entry point, in this process (many cases, fast):
    (exit status, stdout, stderr)."""
    from daemon.cli import main

    for key in [k for k in os.environ if k.startswith("GENRED_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level  # main() sets logging up anew
    capsys.readouterr()
    try:
        status = main([str(a) for a in args])
    except SystemExit as e:  # argparse's usage errors
        status = int(e.code or 0)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    out, err = capsys.readouterr()
    return status, out, err


def _usage_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


@pytest.mark.parametrize(("args", "flag"), [
    (["scan", "{music}", "--clips", "1e20"], "--clips"),
    (["scan", "{music}", "--clips", "100000000000000000000"], "--clips"),
    (["scan", "{music}", "--workers", "-3"], "--workers"),
    (["scan", "{music}", "--tag-threshold", "nan"], "--tag-threshold"),
    (["classify", "{song}", "--clips", "0"], "--clips"),
    (["query", "--limit", str(10**30)], "--limit"),
    (["query", "--min-confidence", "inf"], "--min-confidence"),
    (["run", "--watch", "{music}", "--settle-seconds", "nan"], "--settle-seconds"),
    (["run", "--watch", "{music}", "--clips-per-track", "1e9"], "--clips-per-track"),
    (["train", "{music}", "--epochs", str(10**30)], "--epochs"),
    (["train", "{music}", "--seed", str(10**30)], "--seed"),
])
def test_a_flag_value_out_of_bounds_names_the_flag(
    args: list[str], flag: str, env: dict[str, str], song: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    status, _, err = in_process(env, monkeypatch, capsys,
                                *[a.format(music=song.parent, song=song) for a in args])
    assert status == 2 and f"argument {flag}" in err, err


def test_a_flag_and_a_variable_out_of_bounds_as_a_user_runs_them(
    env: dict[str, str], song: Path,
) -> None:
    _usage_error(genred(env, "scan", song.parent, "--clips", "1e20"), "argument --clips")
    _usage_error(genred({**env, "GENRED_WORKERS": "two"}, "scan", song.parent),
                 "genred: GENRED_WORKERS: expected a whole number")


@pytest.mark.parametrize(("variable", "value"), [
    ("GENRED_WORKERS", "two"), ("GENRED_WORKERS", "1e400"), ("GENRED_RESCAN_HOURS", "nan"),
    ("GENRED_RESCAN_HOURS", "1e-7"), ("GENRED_CLIPS_PER_TRACK", "1e20"),
    ("GENRED_SETTLE_SECONDS", "-1"), ("GENRED_TAG_THRESHOLD", "2"),
    ("GENRED_RETRAIN_EPOCHS", "0"), ("GENRED_WRITE_TAGS", "maybe"),
])
def test_an_environment_value_out_of_bounds_names_the_variable(
    variable: str, value: str, env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    status, _, err = in_process({**env, variable: value}, monkeypatch, capsys, "config", "show")
    assert status == 2 and err.startswith(f"genred: {variable}:"), err


@pytest.mark.parametrize(("text", "words"), [
    ("rescan_hours = nan\n", ["rescan_hours", "from 0.1 to 8760"]),
    ("rescan_hours = 1e-7\n", ["rescan_hours"]),
    ("settle_seconds = inf\n", ["settle_seconds"]),
    ("clips_per_track = 1e20\n", ["clips_per_track"]),
    ("workers = 100000000000000000000000\n", ["workers"]),
    ("[retrain]\nmin_new_labels = -1\n", ["retrain.min_new_labels"]),
    ("[aliases]\n\"nu jazz\" = \"Ja\\u001bzz\"\n", ["[aliases]", "control"]),
    ("[aliases]\n\"_\" = \"Jazz\"\n", ["[aliases]", "no letter or digit"]),
    ('db = "/tmp/a\\u0000b.db"\n', ["'db'", "NUL"]),
    ('watch = ["/music", "/mu\\u0000sic"]\n', ["'watch'", "NUL"]),
    ("[aliases]\n\"long\" = \"" + "x" * 65 + "\"\n", ["[aliases]", "at most 64"]),
])
def test_a_config_value_out_of_bounds_names_the_key_and_the_file(
    text: str, words: list[str], env: dict[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    env = {k: v for k, v in env.items() if k not in ("GENRED_WORKERS", "GENRED_DB")}
    status, _, err = in_process(env, monkeypatch, capsys, "--config", config, "config", "show")
    assert status == 2, err
    for word in (str(config), *words):
        assert word in err, err


def test_a_config_file_that_is_not_there_is_the_missing_path_error_naming_its_source(
    env: dict[str, str], tmp_path: Path,
) -> None:
    gone = tmp_path / "no" / "config.toml"
    proc = genred(env, "--config", gone, "stats")
    _usage_error(proc, f"genred: --config: no such file or folder: {gone}")
    proc = genred({**env, "GENRED_CONFIG": str(gone)}, "stats")
    _usage_error(proc, f"genred: GENRED_CONFIG: no such file or folder: {gone}")
    _usage_error(genred(env, "--config", tmp_path, "stats"), "is a folder, not a config file")


def test_a_config_file_that_is_not_utf8_or_nested_too_deep_is_one_line(
    env: dict[str, str], tmp_path: Path,
) -> None:
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'watch = ["/m"]\n[aliases]\n"caf\xe9" = "Jazz"\n')
    _usage_error(genred(env, "--config", latin, "stats"), "line 3 is not UTF-8")
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 200_000 + "]" * 200_000 + "\n")
    _usage_error(genred(env, "--config", deep, "stats"), "nested too deeply")


@pytest.mark.parametrize("genre", ["", " ", "_", "?!", "Ro\x1b[31mck", "Rock\nPop",
                                   "Ro\u202eck", "x" * 65])
def test_a_genre_that_is_not_a_name_is_refused_and_nothing_is_recorded(
    genre: str, env: dict[str, str], song: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    status, _, err = in_process(env, monkeypatch, capsys, "correct", song, genre)
    assert status == 2 and "genre name" in err, err
    status, out, _ = in_process(env, monkeypatch, capsys, "query", "--format", "json")
    assert status == 0
    assert all(row["corrected_genre"] is None for row in json.loads(out))


@pytest.mark.parametrize("names", [["Rock", "_"], ["Rock", ""], ["", "Rock"], [" ", "Jazz"]])
@pytest.mark.parametrize("verb", ["rename", "merge"])
def test_genres_rename_and_merge_refuse_a_blank_name(
    verb: str, names: list[str], env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    status, _, err = in_process(env, monkeypatch, capsys, "genres", verb, *names)
    assert status == 2 and "has no letter or digit" in err, err


def test_a_genre_with_an_escape_sequence_from_a_real_genred_is_one_line(
    env: dict[str, str], song: Path,
) -> None:
    proc = genred(env, "correct", song, "Ro\x1b[2Jck")
    _usage_error(proc, "genre name 'Ro\\x1b[2Jck' holds control")
    assert "\x1b" not in proc.stderr  # shown escaped, never sent to the terminal


def test_a_genre_is_trimmed_and_a_query_for_a_bad_name_is_a_usage_error(
    env: dict[str, str], song: Path,
) -> None:
    # A new genre (issue 10: --new-genre) keeps the user's spelling, trimmed.
    assert genred(env, "correct", song, "  sea   shanty \n", "--new-genre").returncode == 0
    proc = genred(env, "query", "--format", "json")
    (row,) = json.loads(proc.stdout)
    assert row["corrected_genre"] == "sea shanty"
    _usage_error(genred(env, "query", "--genre", "\x1b]0;owned\x07"), "genre name")


def test_a_label_csv_with_bad_lines_reports_each_and_keeps_the_good_ones(
    env: dict[str, str], song: Path, tmp_path: Path,
) -> None:
    other = make_track(song.parent / "other.wav", "Drone", 4.0, seed=2)
    csv_file = tmp_path / "labels.csv"
    csv_file.write_bytes(
        b"path,genre\n"
        + f"{song},Jazz\n".encode()
        + b"caf\xe9.wav,Rock\n"  # Latin-1, not UTF-8
        + b"huge.wav," + b"A" * (10 << 20) + b"\n"  # a 10 MB line
        + f"{other},_\n".encode()
        + f"{other},Ro\x00ck\n".encode()
        + f"{other},Blues\n".encode()
    )
    proc = genred(env, "correct", "--from-csv", csv_file)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "line 3: not UTF-8" in proc.stdout
    assert "line 4: longer than 64 KiB" in proc.stdout
    assert "line 5: genre name '_'" in proc.stdout
    assert "line 6: genre name 'Ro\\x00ck'" in proc.stdout
    assert "2 corrected" in proc.stdout
    rows = json.loads(genred(env, "query", "--format", "json").stdout)
    assert {Path(r["path"]).name: r["corrected_genre"] for r in rows} == {
        "song.wav": "Jazz", "other.wav": "Blues"}


def test_an_imported_tag_with_control_characters_is_not_a_label(
    env: dict[str, str], tmp_path: Path,
) -> None:
    from mutagen.flac import FLAC

    music = tmp_path / "tagged"
    for name, genre in (("bad", "Ro\x1b[2Jck"), ("good", "Jazz")):
        flac = FLAC(make_track(music / f"{name}.flac", "Pulse", 4.0, seed=3))
        flac["genre"] = [genre]  # written by another program
        flac.save()
    proc = genred(env, "import-tags", music)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "1 imported" in proc.stdout, proc.stdout
    assert "1 with a genre tag that is not a genre name" in proc.stdout
