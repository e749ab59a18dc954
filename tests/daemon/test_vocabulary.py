"""The genre vocabulary and safe tag imports, as a user meets them: real `genred`
processes on real files and a real catalogue (the tiny model knows Drone, Pulse, Chirp and
Noise)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storage import tags
from tests.audiogen import make_track
from tests.daemon.test_cli_catalogue import genred
from tests.storage.modelkit import tiny_bundle


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("models") / "tiny-v1")


@pytest.fixture
def env(tmp_path: Path, model_dir: Path) -> dict[str, str]:
    from tests.daemon.test_cli_catalogue import env as catalogue_env

    return catalogue_env.__wrapped__(tmp_path, model_dir)  # type: ignore[attr-defined]


def query(env: dict[str, str], *args: str) -> list[dict[str, object]]:
    return json.loads(genred(env, "query", "--format", "json", *args).stdout)


def labels(env: dict[str, str]) -> dict[str, object]:
    return {Path(str(r["path"])).name: r["corrected_genre"] for r in query(env, "--corrected")}


@pytest.fixture
def songs(tmp_path: Path) -> list[Path]:
    return [make_track(tmp_path / "lib" / f"s{i}.ogg", "Drone", 3.0, seed=i) for i in range(6)]


def test_a_typo_is_refused_with_a_suggestion_and_records_nothing(
        env: dict[str, str], songs: list[Path]) -> None:
    genred(env, "scan", songs[0].parent)
    typo = genred(env, "correct", songs[0], "Dron", ok=False)
    assert typo.returncode == 2
    assert "did you mean Drone" in typo.stderr and "--new-genre" in typo.stderr
    assert labels(env) == {}
    names = [r["genre"] for r in json.loads(genred(env, "genres", "--format", "json").stdout)]
    assert names == ["Drone", "Pulse", "Chirp", "Noise"]


def test_a_new_genre_keeps_the_users_spelling_and_matches_case_insensitively(
        env: dict[str, str], songs: list[Path]) -> None:
    genred(env, "scan", songs[0].parent)
    out = genred(env, "correct", songs[0], "IDM", "--new-genre").stdout
    assert "new genre(s): IDM" in out
    genred(env, "correct", songs[1], "idm")  # known now: no flag needed, first spelling wins
    genred(env, "correct", songs[2], "SynSwing", "--new-genre")
    genred(env, "correct", songs[3], "Drum & Bass", "--new-genre")
    alias = genred(env, "correct", songs[4], "hip hop").stdout  # an alias: no flag needed
    assert "alias of Rap" in alias
    assert labels(env) == {"s0.ogg": "IDM", "s1.ogg": "IDM", "s2.ogg": "SynSwing",
                           "s3.ogg": "Drum & Bass", "s4.ogg": "Rap"}
    listing = {r["genre"]: r for r in json.loads(genred(env, "genres", "--format",
                                                        "json").stdout)}
    assert listing["IDM"]["labels"] == 2 and listing["IDM"]["tracks"] == 2
    assert listing["IDM"]["state"] == "waiting: 2 of 3 labelled songs"
    assert listing["Drone"]["state"] == "in the model"
    assert set(listing) >= {"Drone", "Pulse", "Chirp", "Noise", "IDM", "SynSwing",
                            "Drum & Bass", "Rap"}


def test_a_csv_with_an_unknown_genre_applies_none_of_its_lines(
        env: dict[str, str], songs: list[Path], tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text(f"path,genre\n{songs[0]},Drone\n{songs[1]},Pulze\n{songs[2]},Polka\n")
    refused = genred(env, "correct", "--from-csv", csv, ok=False)
    assert refused.returncode == 2
    assert "'Pulze': did you mean Pulse?" in refused.stderr and "line 3" in refused.stderr
    assert "'Polka'" in refused.stderr and "line 4" in refused.stderr
    assert "nothing applied" in refused.stderr and labels(env) == {}
    csv.write_text(f"{songs[0]},Drone\n{songs[2]},Polka\n")
    genred(env, "correct", "--from-csv", csv, "--new-genre")
    assert labels(env) == {"s0.ogg": "Drone", "s2.ogg": "Polka"}


def test_rename_and_merge_fix_labels_predictions_and_tags(
        env: dict[str, str], songs: list[Path], tmp_path: Path) -> None:
    genred(env, "scan", songs[0].parent)
    genred(env, "correct", songs[0], "Synthwave", "--new-genre")
    genred(env, "correct", songs[1], "Synthwve", "--new-genre")  # a typo made a genre
    predicted = {Path(str(r["path"])).name: str(r["predicted_genre"]) for r in query(env)}
    model_genre = predicted["s5.ogg"]
    same = sorted(n for n, g in predicted.items() if g == model_genre)
    genred(env, "tags", "write", "--tag-threshold", "0", songs[0].parent)
    assert tags.read_genres(songs[5]) == [model_genre]

    merged = genred(env, "genres", "merge", "synthwve", "Synthwave").stdout
    assert "Synthwve merged into Synthwave: 1 label(s)" in merged
    assert labels(env)["s1.ogg"] == "Synthwave"
    assert tags.read_genres(songs[1]) == ["Synthwave"]  # genred's tag follows the label

    renamed = genred(env, "genres", "rename", model_genre, "Static").stdout
    assert f"{len(same)} prediction(s)" in renamed and "file tag(s) rewritten" in renamed
    now = {Path(str(r["path"])).name: r["predicted_genre"] for r in query(env)}
    assert sorted(n for n, g in now.items() if g == "Static") == same
    assert model_genre not in now.values()
    assert tags.read_genres(songs[5]) == ["Static"]
    # Later predictions of the same model are recorded under the new name too.
    late = make_track(songs[0].parent / "late.ogg", "Drone", 3.0, seed=99)
    genred(env, "scan", late)
    assert query(env, "--path", str(late))[0]["predicted_genre"] in (
        {"Static"} | {"Drone", "Pulse", "Chirp", "Noise"} - {model_genre})
    names = [r["genre"] for r in json.loads(genred(env, "genres", "--format", "json").stdout)]
    assert "Static" in names and model_genre not in names and "Synthwve" not in names
    clash = genred(env, "genres", "rename", "Static", "synthwave", ok=False)
    assert clash.returncode == 2 and "genres merge" in clash.stderr


def test_import_tags_skips_placeholders_and_reports_new_genres_first(
        env: dict[str, str], tmp_path: Path) -> None:
    lib = tmp_path / "tagged"
    values = {"a.mp3": ["the genre"], "b.mp3": ["Other"], "c.mp3": ["(255)"],
              "d.ogg": ["misc"], "e.ogg": ["Podcast"], "f.ogg": ["SynSwing"],
              "g.mp3": ["(8)"], "h.ogg": ["Unknown"], "i.flac": ["Genre"]}
    for i, (name, genre) in enumerate(values.items()):
        make_track(lib / name, "Pulse", 3.0, seed=i)
        tags.update(lib / name, {tags.genre_key(tags.read_values(lib / name)[0]): genre})
    make_track(lib / "untagged.ogg", "Pulse", 3.0, seed=50)
    config = tmp_path / "config.toml"
    config.write_text('ignore_genres = ["podcast"]\n')
    pretend = genred(env, "--config", config, "import-tags", "--pretend", lib).stdout
    assert pretend.splitlines()[0] == "new genre(s): SynSwing (1 file(s))"
    assert f"would import {lib / 'f.ogg'}: SynSwing (new genre)" in pretend
    assert f"would import {lib / 'g.mp3'}: Jazz" in pretend  # ID3 code 8 is Jazz
    assert "7 with a placeholder genre (skipped)" in pretend
    assert labels(env) == {}  # --pretend records nothing

    done = genred(env, "--config", config, "import-tags", lib).stdout
    assert "new genre(s): SynSwing" in done and "2 imported" in done
    assert labels(env) == {"f.ogg": "SynSwing", "g.mp3": "Jazz"}
    names = [r["genre"] for r in json.loads(genred(env, "genres", "--format", "json").stdout)]
    assert "SynSwing" in names and not {"the genre", "Other", "misc", "Podcast"} & set(names)


def test_a_tag_edited_elsewhere_after_genred_wrote_it_is_imported_as_a_label(
        env: dict[str, str], songs: list[Path]) -> None:
    genred(env, "scan", songs[0].parent)
    genred(env, "tags", "write", "--tag-threshold", "0", songs[0].parent)
    kind, written = tags.read_values(songs[0])
    assert tags.provenance(kind, written) not in (None, tags.USER_PROVENANCE)
    # Another tagger changes only the genre; genred's provenance keys stay on the file.
    tags.update(songs[0], {tags.genre_key(kind): ["Shoegaze"]})
    assert tags.provenance(*tags.read_values(songs[0])) == tags.provenance(kind, written)

    out = genred(env, "import-tags", songs[0].parent).stdout
    assert "1 imported" in out and "5 tagged by genred's model" in out
    assert labels(env) == {"s0.ogg": "Shoegaze"}
    restore = genred(env, "tags", "restore", songs[0].parent).stdout
    assert "genre changed since genred wrote it (Shoegaze); left alone" in restore
    assert tags.read_genres(songs[0]) == ["Shoegaze"]
    assert "5 restored" in restore


def test_status_says_when_pending_work_waits_for_a_daemon(
        env: dict[str, str], songs: list[Path]) -> None:
    genred(env, "correct", songs[0], "Drone")  # not scanned yet: queued
    status = genred(env, "status").stdout
    assert "1 pending (waiting for a daemon: none is running" in status
    assert json.loads(genred(env, "status", "--format", "json").stdout)[
        "queue_waits_for_daemon"] is True


def test_activating_a_model_that_lacks_genres_in_use_warns(
        env: dict[str, str], songs: list[Path], tmp_path: Path) -> None:
    genred(env, "scan", songs[0].parent)
    genred(env, "correct", songs[0], "Polka", "--new-genre")
    store = tmp_path / "store"
    tiny_bundle(store / "tiny-v2", version="tiny-v2")
    activated = genred(env, "--config", _store_config(tmp_path, store), "models", "activate",
                       "tiny-v2")
    assert "active model: tiny-v2" in activated.stdout
    assert "lacks genres your catalogue uses: Polka (1 label(s))" in activated.stderr


def _store_config(tmp_path: Path, store: Path) -> Path:
    config = tmp_path / "store.toml"
    config.write_text(f'model_store = "{store}"\n')
    return config
