"""The catalogue verbs, run as real `genred` processes on real files and a real catalogue."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage import tags
from tests.audiogen import make_track
from tests.storage.modelkit import tiny_bundle

GENRED = Path(sys.executable).with_name("genred")
KEYS = {"path", "genre", "predicted_genre", "confidence", "probabilities", "corrected_genre",
        "model", "status", "error"}


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


def genred(
    env: dict[str, str], *args: str | Path, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(GENRED), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=180)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def library(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    make_track(lib / "a.mp3", "Drone", 3.0, seed=1)
    make_track(lib / "sub" / "b.flac", "Pulse", 3.0, seed=2)
    make_track(lib / "sub" / "c.ogg", "Chirp", 3.0, seed=3)
    (lib / "broken.mp3").write_text("not music")
    return lib


def query(env: dict[str, str], *args: str) -> list[dict[str, object]]:
    return json.loads(genred(env, "query", "--format", "json", *args).stdout)


def test_scan_query_correct_and_stats(env: dict[str, str], library: Path) -> None:
    scan = genred(env, "scan", library)
    assert scan.stdout.strip().splitlines()[-1] == \
        "scanned 4: 3 classified, 0 unchanged, 1 errors"
    assert genred(env, "scan", library).stdout.strip() == \
        "scanned 4: 0 classified, 4 unchanged, 0 errors"

    rows = query(env)
    assert len(rows) == 4 and all(set(r) >= KEYS for r in rows)
    broken = next(r for r in rows if str(r["path"]).endswith("broken.mp3"))
    assert broken["status"] == "error" and broken["error"]
    table = genred(env, "query", "--status", "ok").stdout
    assert "a.mp3" in table and "broken.mp3" not in table
    header = next(csv.reader(io.StringIO(genred(env, "query", "--format", "csv").stdout)))
    assert header[:3] == ["path", "genre", "predicted_genre"]

    genred(env, "correct", library / "a.mp3", "hip-hop")
    (row,) = query(env, "--corrected")
    assert (row["genre"], row["corrected_genre"]) == ("Rap", "Rap")
    assert [r["path"] for r in query(env, "--genre", "RAP")] == [row["path"]]

    stats = json.loads(genred(env, "stats", "--format", "json").stdout)
    assert stats["tracks"] == 4 and stats["status"] == {"ok": 3, "error": 1}
    assert stats["genres"]["Rap"] == 1 and stats["corrected"] == 1

    genred(env, "uncorrect", library)
    assert query(env, "--corrected") == []


def test_correct_folders_csv_and_files_not_scanned_yet(env: dict[str, str], library: Path,
                                                     tmp_path: Path) -> None:
    genred(env, "correct", library / "sub", "Jazz")  # nothing scanned yet: queued
    rows = query(env, "--genre", "jazz")
    assert sorted(Path(str(r["path"])).name for r in rows) == ["b.flac", "c.ogg"]
    assert {r["status"] for r in rows} == {"pending"}
    labels = tmp_path / "labels.csv"
    labels.write_text(f"path,genre\n{library / 'a.mp3'},techno\nnowhere.mp3,Rock\n"
                      "labels.csv,Pop\n")
    out = genred(env, "correct", "--from-csv", labels).stdout
    assert "skipped" in out and "nowhere.mp3" in out
    assert "labels.csv: no audio" in out  # not audio: no track is made for it
    genred(env, "scan", library)
    rows = {Path(str(r["path"])).name: r for r in query(env, "--corrected")}
    assert {n: r["genre"] for n, r in rows.items()} == {
        "a.mp3": "Electronic", "b.flac": "Jazz", "c.ogg": "Jazz"}
    assert all(r["status"] == "ok" and r["predicted_genre"] for r in rows.values())


def md5s(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_tags_pretend_write_restore_and_import(env: dict[str, str], library: Path) -> None:
    tags.update(library / "a.mp3", {"TCON": ["Bossa Nova"]})
    original = tags.read_values(library / "a.mp3")
    genred(env, "scan", library)
    genred(env, "correct", library / "sub" / "b.flac", "Blues")
    before = md5s(library)

    pretend = genred(env, "tags", "write", "--pretend", "--tag-threshold", "0", library)
    assert md5s(library) == before
    assert "would-write" in pretend.stdout and "b.flac" in pretend.stdout
    pretend = genred(env, "scan", "--force", "--write-tags", "--pretend", "--tag-threshold",
                     "0", library)
    assert md5s(library) == before
    assert "would-write" in pretend.stdout and pretend.stdout.strip().endswith(
        "(tags skipped 1, tags would-write 2)")

    genred(env, "tags", "write", "--tag-threshold", "0", library)
    assert tags.read_genres(library / "sub" / "b.flac") == ["Blues"]
    assert tags.read_genres(library / "a.mp3") == ["Bossa Nova"]  # kept: overwrite_existing off
    predicted = tags.read_genres(library / "sub" / "c.ogg")
    assert len(predicted) == 1
    assert genred(env, "scan", library).stdout.strip().endswith("4 unchanged, 0 errors")

    imported = genred(env, "import-tags", library).stdout
    assert "1 imported" in imported  # Bossa Nova; b.flac's Blues is the user's already
    assert "tagged by genred's model" in imported  # c.ogg: a prediction is not a label

    restore = genred(env, "tags", "restore", library).stdout
    assert "2 restored" in restore
    assert tags.read_genres(library / "sub" / "b.flac") == []
    assert tags.read_values(library / "a.mp3") == original


def test_usage_errors_exit_2_and_name_the_problem(env: dict[str, str], tmp_path: Path) -> None:
    proc = genred(env, "scan", tmp_path / "nope", ok=False)
    assert proc.returncode == 2 and "no such file" in proc.stderr
    assert genred(env, "correct", tmp_path, ok=False).returncode == 2
    assert genred(env, "query", "--status", "bogus", ok=False).returncode == 2
    bad_db = dict(env, GENRED_DB=f"sqlite:///{tmp_path / 'file.txt' / 'x.db'}")
    (tmp_path / "file.txt").write_text("")
    proc = genred(bad_db, "stats", ok=False)
    assert proc.returncode == 1 and "cannot create" in proc.stderr


def test_a_damaged_model_stops_the_scan_with_a_clear_error(
    env: dict[str, str], library: Path, model_dir: Path, tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "model.json").write_bytes((model_dir / "model.json").read_bytes())
    (damaged / "model.safetensors").write_bytes(b"\0" * 64)
    proc = genred(dict(env, GENRED_MODEL=str(damaged)), "scan", library, ok=False)
    assert proc.returncode == 1 and "cannot use the model" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_query_works_while_a_scan_is_writing(env: dict[str, str], tmp_path: Path) -> None:
    lib = tmp_path / "big"
    for i in range(16):
        make_track(lib / f"{i:02d}.flac", ("Drone", "Pulse", "Chirp", "Noise")[i % 4], 3.0,
                   seed=i)
    genred(env, "stats")  # create the catalogue first so both sides start on it
    scan = subprocess.Popen([str(GENRED), "scan", str(lib)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    overlapped = 0
    try:
        deadline = time.monotonic() + 120
        while scan.poll() is None and time.monotonic() < deadline:
            rows = query(env)  # asserts exit 0
            if scan.poll() is None and rows:
                overlapped += 1
            time.sleep(0.2)
    finally:
        out, err = scan.communicate(timeout=120)
    assert scan.returncode == 0, err
    assert overlapped >= 1, "the scan finished before any query overlapped it"
    assert out.strip().endswith("scanned 16: 16 classified, 0 unchanged, 0 errors")
    assert len(query(env)) == 16


def test_catalogue_verbs_do_not_import_heavy_modules_for_help() -> None:
    code = ("import sys, daemon.cli_catalogue; "
            "bad = {'torch', 'librosa', 'sqlalchemy'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_with_write_tags_on_corrections_reach_the_files_at_once(
    env: dict[str, str], library: Path
) -> None:
    env = dict(env, GENRED_WRITE_TAGS="true", GENRED_TAG_THRESHOLD="0")
    song = library / "sub" / "b.flac"
    genred(env, "scan", library)
    predicted = tags.read_genres(song)
    assert len(predicted) == 1  # written as it was classified
    genred(env, "correct", song, "Blues")
    assert tags.read_genres(song) == ["Blues"]
    genred(env, "uncorrect", song)
    assert tags.read_genres(song) == predicted
