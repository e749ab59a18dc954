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
from datetime import UTC, datetime
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


def _env(root: Path, model_dir: Path) -> dict[str, str]:
    home = root / "home"
    home.mkdir()
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"), "XDG_CACHE_HOME": str(home / ".cache"),
            "GENRED_DB": f"sqlite:///{root / 'catalogue.db'}", "GENRED_MODEL": str(model_dir),
            "GENRED_CLIPS_PER_TRACK": "1", "GENRED_WORKERS": "1"}


@pytest.fixture
def env(tmp_path: Path, model_dir: Path) -> dict[str, str]:
    return _env(tmp_path, model_dir)


def genred(
    env: dict[str, str], *args: str | Path, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(GENRED), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=180)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def _library(root: Path) -> Path:
    lib = root / "lib"
    make_track(lib / "a.mp3", "Drone", 3.0, seed=1)
    make_track(lib / "sub" / "b.flac", "Pulse", 3.0, seed=2)
    make_track(lib / "sub" / "c.ogg", "Chirp", 3.0, seed=3)
    (lib / "broken.mp3").write_text("not music")
    return lib


@pytest.fixture
def library(tmp_path: Path) -> Path:
    return _library(tmp_path)


def query(env: dict[str, str], *args: str) -> list[dict[str, object]]:
    return json.loads(genred(env, "query", "--format", "json", *args).stdout)


def test_scan_query_correct_and_stats(env: dict[str, str], library: Path) -> None:
    scan = genred(env, "scan", library)
    assert scan.stdout.strip().splitlines()[-1] == \
        "scanned 4: 3 classified, 0 unchanged, 1 error"
    assert genred(env, "scan", library).stdout.strip() == \
        "scanned 4: 0 classified, 4 unchanged, 0 errors"
    status = json.loads(genred(env, "status", "--format", "json").stdout)
    assert status["last_scan"], "genred status must see a `genred scan`, not only the daemon's"

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


@pytest.fixture(scope="module")
def catalogued(tmp_path_factory: pytest.TempPathFactory, model_dir: Path
               ) -> tuple[dict[str, str], dict[str, Path]]:
    """(env, files): the library scanned (3 ok, broken.mp3 an error), a.mp3 corrected, and
    a file that is corrected but not scanned yet (pending). Built once for the module: the
    tests using it only query."""
    root = tmp_path_factory.mktemp("catalogued")
    env, library = _env(root, model_dir), _library(root)
    genred(env, "scan", library)
    genred(env, "correct", library / "a.mp3", "Jazz")
    late = make_track(root / "later" / "d.wav", "Noise", 3.0, seed=4)
    genred(env, "correct", late, "Rock")
    return env, {"a": library / "a.mp3", "broken": library / "broken.mp3", "pending": late}


def table(env: dict[str, str], *args: str) -> list[str]:
    return genred(env, "query", *args).stdout.splitlines()


def test_query_table_has_an_aligned_header_marks_and_a_legend(
    catalogued: tuple[dict[str, str], dict[str, Path]],
) -> None:
    env, files = catalogued
    header, *rows, footer = table(env)
    assert header.split() == ["PATH", "GENRE", "PREDICTED", "CONF", "ARTIST", "ALBUM",
                              "STATUS"]
    assert len(rows) == 5
    starts = [header.index(name) for name in ("GENRE", "PREDICTED", "ARTIST", "ALBUM",
                                              "STATUS")]
    conf_end = header.index("CONF") + len("CONF")
    for row in rows:  # every cell starts under its heading; CONF is right-aligned
        assert all(row[i - 2:i] == "  " and row[i] != " " for i in starts), row
        assert row[conf_end - 1] != " " and row[conf_end:conf_end + 2] == "  ", row
    by_path = {row.split()[0]: row for row in rows}
    corrected = by_path[str(files["a"])]
    assert corrected.split()[1] == "Jazz*" and corrected.split()[-1] == "ok"
    pending = by_path[str(files["pending"])]
    assert pending.split()[1:] == ["Rock*", "-", "-", "-", "-", "pending"]
    broken = by_path[str(files["broken"])]
    assert broken.split()[1:6] == ["-", "-", "-", "-", "-"]
    assert broken[starts[4]:].startswith("error: not an audio file")
    assert sum("*" in row for row in rows) == 2  # exactly the corrected rows
    assert footer == ("5 tracks, 2 corrected (* = genre from a correction or an imported "
                      "tag, not the model)")
    assert "[" not in "".join(rows)


def test_query_table_footer_counts_in_good_english(
    catalogued: tuple[dict[str, str], dict[str, Path]],
) -> None:
    env, _ = catalogued
    assert table(env, "--status", "error")[-1] == "1 track"  # no legend: nothing marked
    assert table(env, "--uncorrected", "--status", "ok")[-1] == "2 tracks"
    assert table(env, "--corrected", "--status", "ok")[-1].startswith("1 track, 1 corrected (*")
    assert table(env, "--genre", "polka") == ["no tracks match"]


def test_query_csv_carries_the_json_fields_with_iso_timestamps(
    catalogued: tuple[dict[str, str], dict[str, Path]],
) -> None:
    env, files = catalogued
    rows = query(env)
    text = genred(env, "query", "--format", "csv").stdout
    header, *records = list(csv.reader(io.StringIO(text)))
    assert header == list(rows[0])  # the same fields, in the same order
    assert "corrected (" not in text and "*" not in text  # the legend is the table's alone
    assert len(records) == len(rows)
    for row, record in zip(rows, records, strict=True):
        as_csv = dict(zip(header, record, strict=True))
        for key, value in row.items():
            if key == "probabilities":
                assert (json.loads(as_csv[key]) if as_csv[key] else None) == value
            elif key == "genres":  # "Rock; Blues", as `genred correct` takes them
                assert as_csv[key] == ("; ".join(value) if value else "")
            else:
                assert as_csv[key] == ("" if value is None else str(value)), key
        for stamp in (row["last_seen"], row["mtime"]):
            if stamp is not None:
                assert "T" in str(stamp)
                assert datetime.fromisoformat(str(stamp)).tzinfo == UTC
    done = next(r for r in rows if r["path"] == str(files["a"]))
    assert (done["correction_source"], done["size"]) == ("user", files["a"].stat().st_size)
    assert done["mtime"] == datetime.fromtimestamp(
        int(files["a"].stat().st_mtime), UTC).isoformat()


def test_query_sorts_tracks_without_confidence_last(
    catalogued: tuple[dict[str, str], dict[str, Path]],
) -> None:
    env, _ = catalogued
    for order in ((), ("--desc",)):
        statuses = [r["status"] for r in query(env, "--sort", "confidence", *order)]
        assert statuses[:3] == ["ok"] * 3 and sorted(statuses[3:]) == ["error", "pending"]
        tail = [line.split()[-1] for line in table(env, "--sort", "confidence", *order)[4:6]]
        assert sorted(tail) == ["data", "pending"]  # the error row ends with its reason


@pytest.mark.parametrize(("args", "flag"), [
    (("--min-confidence", "2"), "--min-confidence"),
    (("--min-confidence", "-0.1"), "--min-confidence"),
    (("--max-confidence", "1.5"), "--max-confidence"),
    (("--max-confidence", "nan"), "--max-confidence"),
    (("--min-confidence", "0.8", "--max-confidence", "0.2"), "--max-confidence"),
    (("--limit", "-1"), "--limit"),
])
def test_query_rejects_bounds_no_track_can_meet(
    env: dict[str, str], args: tuple[str, ...], flag: str
) -> None:
    proc = genred(env, "query", *args, ok=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"argument {flag}:" in proc.stderr and "Traceback" not in proc.stderr


def test_query_accepts_the_edges_of_the_confidence_range(env: dict[str, str]) -> None:
    genred(env, "query", "--min-confidence", "0", "--max-confidence", "1")
    genred(env, "query", "--min-confidence", "0.5", "--max-confidence", "0.5")


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
        "a.mp3": "Techno", "b.flac": "Jazz", "c.ogg": "Jazz"}  # "techno": a sub-genre
    assert all(r["status"] == "ok" and r["predicted_genre"] for r in rows.values())


def test_correcting_a_folder_leaves_its_unreadable_files_unlabelled(
        env: dict[str, str], library: Path) -> None:
    genred(env, "scan", library)
    out = genred(env, "correct", library, "Jazz").stdout
    assert f"skipped {library / 'broken.mp3'}: unreadable" in out
    assert "3 corrected" in out and "1 skipped" in out
    assert sorted(Path(str(r["path"])).name for r in query(env, "--corrected")) == [
        "a.mp3", "b.flac", "c.ogg"]
    genred(env, "correct", library / "broken.mp3", "Jazz")  # named alone: the user's call
    assert len(query(env, "--corrected")) == 4


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
