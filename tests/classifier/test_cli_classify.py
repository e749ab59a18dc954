"""`genred classify / evaluate / train` as real subprocesses with an isolated home."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.classifier.conftest import Trained

GENRED = Path(sys.executable).parent / "genred"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"), "XDG_CACHE_HOME": str(home / ".cache"),
            "GENRED_CONFIG": ""}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    if not GENRED.exists():
        pytest.fail(f"{GENRED} is missing: install genred into the venv (pip install -e .)")
    return subprocess.run([str(GENRED), *args], env=env, capture_output=True, text=True,
                          timeout=240, check=False)


def test_classify_json_lists_predictions_and_errors_and_exits_0(
    env: dict[str, str], synth_model: Trained, fresh_songs: list[tuple[Path, str]],
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.mp3"
    bad.write_text("not music")
    folder = fresh_songs[0][0].parent  # a folder: searched recursively
    proc = run(env, "classify", "--format", "json", "--model", str(synth_model.path),
               str(bad), str(folder))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert rows[0] == {"path": str(bad), "error": rows[0]["error"]} and rows[0]["error"]
    songs = rows[1:]
    assert len(songs) == len(list(folder.iterdir()))
    for row in songs:
        assert {"path", "genre", "confidence", "probabilities", "model"} <= set(row)
        assert row["genre"] == folder.name
        assert row["model"] == synth_model.result.version
        assert set(row["probabilities"]) == set(synth_model.result.labels)


def test_classify_table_and_the_bundled_starter(env: dict[str, str],
                                                fresh_songs: list[tuple[Path, str]]) -> None:
    proc = run(env, "classify", str(fresh_songs[0][0]))
    assert proc.returncode == 0, proc.stderr
    assert "GENRE" in proc.stdout and str(fresh_songs[0][0]) in proc.stdout


def test_classify_with_a_model_that_cannot_load_exits_1(env: dict[str, str],
                                                         fresh_songs: list[tuple[Path, str]]
                                                         ) -> None:
    proc = run(env, "classify", "--model", "no-such-model", str(fresh_songs[0][0]))
    assert proc.returncode == 1
    assert "no-such-model" in proc.stderr
    assert run(env, "classify").returncode == 2  # usage error: no files


def test_classify_with_damaged_weights_is_a_clean_error(env: dict[str, str],
                                                        synth_model: Trained,
                                                        fresh_songs: list[tuple[Path, str]],
                                                        tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(synth_model.path, damaged)
    (damaged / "model.safetensors").write_bytes(b"\0" * 64)
    proc = run(env, "classify", "--model", str(damaged), str(fresh_songs[0][0]))
    assert proc.returncode == 1
    assert "cannot load a model" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_json_has_the_documented_keys(env: dict[str, str], synth_model: Trained,
                                               fresh_songs: list[tuple[Path, str]]) -> None:
    data_dir = fresh_songs[0][0].parents[1]
    proc = run(env, "evaluate", str(data_dir), "--model", str(synth_model.path),
               "--format", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {"accuracy", "labels", "per_genre", "confusion", "n_songs", "n_clips"} <= set(result)
    assert result["n_songs"] == len(fresh_songs) and result["accuracy"] >= 0.9
    lists = result["genre_lists"]  # max_genres 2 by default: secondary genres judged too
    assert (lists["max_genres"], lists["n_songs"]) == (2, len(fresh_songs))
    assert lists["any_hit"] >= result["accuracy"]
    for genre, m in lists["per_genre"].items():
        assert m["recall"] >= result["per_genre"][genre]["recall"]
        assert m["predicted"] >= m["as_secondary"] >= m["secondary_hits"]
    table = run({**env, "GENRED_SECONDARY_THRESHOLD": "0.0"}, "evaluate", str(data_dir),
                "--model", str(synth_model.path)).stdout
    assert "genre lists (max_genres 2, secondary_threshold 0)" in table
    one = run({**env, "GENRED_MAX_GENRES": "1"}, "evaluate", str(data_dir), "--model",
              str(synth_model.path), "--format", "json")
    assert "genre_lists" not in json.loads(one.stdout)


def test_train_puts_a_new_version_in_the_store_without_activating_it(
    env: dict[str, str], synth_library: Path, synth_cache: Path
) -> None:
    proc = run(env, "train", str(synth_library), "--arch", "pooled", "--epochs", "1",
               "--clips-per-song", "2", "--cache", str(synth_cache), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    store = Path(env["XDG_DATA_HOME"]) / "genred" / "models"
    versions = [p for p in store.iterdir() if (p / "model.json").is_file()]
    assert len(versions) == 1 and str(versions[0]) in proc.stdout
    assert json.loads((versions[0] / "model.json").read_text())["arch"] == "pooled"
    assert not (store / "ACTIVE").exists()
    proc = run(env, "classify", "--format", "json", "--model", versions[0].name,
               str(next(synth_library.rglob("*.flac"))))
    assert json.loads(proc.stdout)[0]["model"] == versions[0].name


def test_train_with_activate_makes_the_new_model_active(
        env: dict[str, str], backbone_trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    # The default network on a library whose embeddings are stored already (a copy of the
    # shared cache): training through the CLI, not embedding, is what this test is about
    # (tests/classifier/test_backbone.py trains from a cold cache).
    library, stored, _ = backbone_trained
    cache = shutil.copytree(stored, tmp_path / "cache")
    out = tmp_path / "mine"
    proc = run(env, "train", str(library), "--out", str(out), "--cache", str(cache),
               "--activate", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "model.json").read_text())
    assert meta["arch"] == "backbone"  # the default network
    version = meta["version"]
    proc = run(env, "classify", "--format", "json", str(next(library.rglob("*.ogg"))))
    assert json.loads(proc.stdout)[0]["model"] == version


@pytest.mark.parametrize("name", ["Ro\x1b[2Jck", "_", "x" * 65])
def test_a_genre_folder_that_cannot_be_a_genre_name_is_refused_by_train_and_evaluate(
        env: dict[str, str], tmp_path: Path, name: str) -> None:
    """Folder names become labels (model.json, tags, terminal tables): the genre-name rule
    applies to them too (issue 14 item 5)."""
    from tests.audiogen import make_track

    data = tmp_path / "data"
    make_track(data / "Jazz" / "a.wav", "Drone", 2.0)
    make_track(data / name / "b.wav", "Pulse", 2.0)
    for args in (["train", str(data), "--epochs", "1", "--out", str(tmp_path / "model")],
                 ["evaluate", str(data)]):
        proc = run(env, *args)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"genre folder {name!a} in {data}" in proc.stderr, proc.stderr
        assert "\x1b" not in proc.stderr + proc.stdout
    assert not (tmp_path / "model").exists()
