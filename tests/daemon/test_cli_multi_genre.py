"""Several genres per track at the command line: `genred correct f "Rock; Blues"`, in a
CSV, in `query` (JSON, CSV, table), into the file's tags, and the vocabulary rule for each
name."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import mutagen

from tests.daemon.test_cli_catalogue import env, genred, library, model_dir, query

__all__ = ["env", "library", "model_dir"]  # fixtures


def _write_config(env: dict[str, str], text: str) -> None:
    """The config file the genred commands run with ``env`` find (XDG)."""
    config = Path(env["XDG_CONFIG_HOME"]) / "genred" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(text)


def test_correct_takes_several_genres_main_first_and_query_shows_them(
        env: dict[str, str], library: Path, tmp_path: Path) -> None:
    genred(env, "scan", library)
    out = genred(env, "correct", library / "a.mp3", "rock; blues").stdout
    assert "corrected" in out and "Rock; Blues" in out
    (row,) = query(env, "--corrected")
    assert (row["genre"], row["genres"], row["corrected_genre"]) == (
        "Rock", ["Rock", "Blues"], "Rock")
    others = [r for r in query(env, "--uncorrected") if r["status"] == "ok"]
    assert others and all(r["genres"] and r["genres"][0] == r["genre"] for r in others)

    rows = list(csv.DictReader(io.StringIO(genred(env, "query", "--format", "csv").stdout)))
    by_name = {Path(r["path"]).name: r for r in rows}
    assert by_name["a.mp3"]["genres"] == "Rock; Blues"
    assert by_name["broken.mp3"]["genres"] == ""
    table = genred(env, "query", "--corrected").stdout
    assert "Rock; Blues*" in table

    labels = tmp_path / "labels.csv"
    labels.write_text(f"path,genre\n{library / 'sub' / 'b.flac'},Jazz; Soul\n")
    genred(env, "correct", "--from-csv", labels, "--new-genre")
    genres = {Path(str(r["path"])).name: r["genres"] for r in query(env, "--corrected")}
    assert genres == {"a.mp3": ["Rock", "Blues"], "b.flac": ["Jazz", "Soul"]}


def test_an_unknown_genre_in_a_list_refuses_the_whole_correction(
        env: dict[str, str], library: Path) -> None:
    genred(env, "scan", library)
    refused = genred(env, "correct", library / "a.mp3", "Rock; Bluez", ok=False)
    assert refused.returncode == 2
    assert "unknown genre 'Bluez'" in refused.stderr and "Blues" in refused.stderr
    assert query(env, "--corrected") == []
    bad = genred(env, "correct", library / "a.mp3", "Rock; \x1b[31m", ok=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_with_write_tags_a_two_genre_correction_reaches_the_file(
        env: dict[str, str], library: Path) -> None:
    genred(env, "scan", library)
    flac = library / "sub" / "b.flac"
    genred({**env, "GENRED_WRITE_TAGS": "1"}, "correct", flac, "Rock; Blues")
    assert mutagen.File(flac).tags["genre"] == ["Rock", "Blues"]
    genred({**env, "GENRED_WRITE_TAGS": "1", "GENRED_WRITE_GENRES": "main"},
           "correct", flac, "Blues; Rock")
    assert mutagen.File(flac).tags["genre"] == ["Blues"]
    genred(env, "tags", "restore", flac)
    assert "genre" not in (mutagen.File(flac).tags or {})


def test_a_sub_genre_correction_is_found_by_its_parent_and_tagged_under_it(
        env: dict[str, str], library: Path) -> None:
    _write_config(env, 'write_parent_genres = true\n[genre_tree]\n"Slow Drone" = "Drone"\n')
    genred(env, "scan", library)
    genred(env, "correct", library / "a.mp3", "house")  # built in: House under Electronic
    genred(env, "correct", library / "sub" / "b.flac", "slow drone")  # from [genre_tree]
    assert {Path(str(r["path"])).name: r["genre"] for r in query(env, "--corrected")} == {
        "a.mp3": "House", "b.flac": "Slow Drone"}
    assert [Path(str(r["path"])).name for r in query(env, "--genre", "electronic")] == ["a.mp3"]
    assert "b.flac" in [Path(str(r["path"])).name for r in query(env, "--genre", "Drone")]
    assert query(env, "--genre", "Techno") == []

    listing = {r["genre"]: r["state"] for r in json.loads(
        genred(env, "genres", "--format", "json").stdout)}
    # the tiny model knows Drone: one Slow Drone song trains as Drone until it has three
    assert listing["Slow Drone"] == ("waiting: 1 of 3 labelled songs; trains as Drone "
                                     "meanwhile")

    out = genred({**env, "GENRED_WRITE_TAGS": "1"}, "tags", "write", library).stdout
    assert "Electronic; House" in out
    assert mutagen.File(library / "a.mp3").tags["TCON"].text == ["Electronic", "House"]
    assert mutagen.File(library / "sub" / "b.flac").tags["genre"] == ["Drone", "Slow Drone"]


def test_the_daemons_answers_roll_sub_genre_probabilities_up_to_the_parent(
        env: dict[str, str], library: Path) -> None:
    # the tiny model's outputs made parent and child: Pulse (and Chirp) under Drone
    _write_config(env, '[genre_tree]\n"Pulse" = "Drone"\n"Chirp" = "Pulse"\n')
    genred(env, "scan", library)
    rows = [r for r in query(env) if r["status"] == "ok"]
    assert len(rows) == 3
    for row in rows:
        p = row["probabilities"]
        assert isinstance(p, dict)
        assert p["Drone"] >= p["Pulse"] >= p["Chirp"] > 0
        # the top-level genres (Drone holding its sub-genres, Noise) share the whole answer
        assert abs(p["Drone"] + p["Noise"] - 1) < 1e-4
        # the main genre is where the tree's rule stops, with its rolled-up probability
        assert row["confidence"] == p[str(row["genre"])]
    # `classify` (no catalogue) answers as the catalogue records
    answers = json.loads(genred(env, "classify", "--format", "json", library / "sub").stdout)
    by_path = {str(r["path"]): r for r in rows}
    for answer in answers:
        stored = by_path[answer["path"]]
        assert (answer["genre"], answer["genres"]) == (stored["genre"], stored["genres"])
        assert answer["probabilities"]["Drone"] >= answer["probabilities"]["Pulse"]
