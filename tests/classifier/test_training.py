"""Training on generated styles: accuracy, the song-level split, the feature cache,
growing the genre set with --from, fine-tuning, evaluation."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from classifier import audio, dataset, training
from classifier.dataset import DatasetError, Song
from classifier.extract import Extractor
from classifier.features import FeatureParams
from classifier.predict import Classifier
from tests.audiogen import STYLES
from tests.classifier.conftest import Trained, build_library


def test_synthetic_styles_reach_90_percent_on_held_out_songs_within_a_minute(
    synth_model: Trained, fresh_songs: list[tuple[Path, str]]
) -> None:
    # "Within a minute on the CPU": CPU seconds summed over threads and worker processes,
    # a stricter bound than wall time on an idle 2-core machine, and not inflated when
    # other jobs share it.
    assert synth_model.cpu_seconds < 60.0, synth_model
    assert synth_model.result.metrics["n_songs"] >= 4
    assert synth_model.result.accuracy >= 0.9
    fresh = training.evaluate(synth_model.path, fresh_songs)
    assert fresh["n_songs"] == len(fresh_songs)
    assert fresh["accuracy"] >= 0.9, fresh["confusion"]


def test_training_writes_reports(synth_model: Trained) -> None:
    report = json.loads((synth_model.path / "metrics.json").read_text())
    test = report["test"]
    assert set(STYLES) == set(test["labels"])
    assert {"accuracy", "per_genre", "confusion", "n_songs", "n_clips"} <= set(test)
    assert {"precision", "recall", "f1", "support"} <= set(test["per_genre"]["Drone"])
    assert len(report["history"]) == synth_model.result.epochs_run
    for png in ("confusion.png", "curve.png"):
        assert (synth_model.path / png).read_bytes()[:4] == b"\x89PNG"


def test_split_is_by_song_deterministic_and_leaks_nothing(synth_library: Path,
                                                          synth_model: Trained) -> None:
    songs = dataset.scan(synth_library)
    a = dataset.split(songs, seed=0)
    b = dataset.split(songs, seed=0)
    c = dataset.split(songs, seed=7)
    paths = {k: {s.path for s in v} for k, v in a.items()}
    assert paths == {k: {s.path for s in v} for k, v in b.items()}
    assert paths["test"] != {s.path for s in c["test"]}
    assert not paths["train"] & paths["test"]
    assert not paths["train"] & paths["val"]
    assert not paths["val"] & paths["test"]
    assert paths["train"] | paths["val"] | paths["test"] == {s.path for s in songs}
    assert {s.genre for s in a["test"]} == set(STYLES)  # every genre is tested
    # The trained model's held-out songs are exactly that split's test songs.
    assert {Path(p) for p, _ in synth_model.result.test_songs} == paths["test"]


def test_split_spreads_each_source_over_train_and_test() -> None:
    songs = [Song(Path(f"/x/{src}-{i}.ogg"), "Electronic", src)
             for src in ("nexuiz", "singularity") for i in range(10)]
    songs += [Song(Path(f"/x/gtzan-{i}.ogg"), "Rock", "gtzan") for i in range(6)]
    parts = dataset.split(songs, seed=1)
    for source in ("nexuiz", "singularity", "gtzan"):
        assert any(s.source == source for s in parts["test"])
        assert any(s.source == source for s in parts["train"])


def test_manifest_source_column_names_the_source(tmp_path: Path) -> None:
    (tmp_path / "Rock").mkdir()
    (tmp_path / "Rock" / "a.ogg").write_bytes(b"x")
    (tmp_path / "Rock" / "b--c.ogg").write_bytes(b"x")
    (tmp_path / "manifest.csv").write_text('path,genre,source\nRock/a.ogg,Rock,"GTZAN, 30 s"\n')
    sources = {s.path.name: s.source for s in dataset.scan(tmp_path)}
    assert sources == {"a.ogg": "GTZAN, 30 s", "b--c.ogg": "b"}


def test_second_training_run_reads_the_feature_cache_and_reproduces_the_model(
    synth_model: Trained, synth_library: Path, synth_cache: Path, tmp_path: Path
) -> None:
    frames_before = audio.stats.frames
    again = training.train(synth_library, tmp_path / "again", arch="pooled", seed=0,
                           clips_per_song=2, epochs=1, cache_dir=synth_cache, progress=False)
    assert again.decoded == 0
    assert again.cache_misses == 0
    assert again.cache_hits == len(dataset.scan(synth_library))
    # No clip window is decoded again: the only audio read is the fingerprint of each
    # training song that the bundle records (a 50 ms read, one or two frames per song).
    songs = len(dataset.scan(synth_library))
    assert audio.stats.frames - frames_before <= 2 * songs
    twin = training.train(synth_library, tmp_path / "twin", arch="pooled", seed=0, clips_per_song=2,
                          epochs=1, cache_dir=synth_cache, progress=False)
    # the same seed and data reproduce the same weights, byte for byte
    weights = "model.safetensors"
    assert (twin.out_dir / weights).read_bytes() == (again.out_dir / weights).read_bytes()


def test_other_clips_or_edited_audio_are_not_served_from_the_cache(
    synth_library: Path, tmp_path: Path
) -> None:
    song = dataset.scan(synth_library)[0]
    ex = Extractor(FeatureParams(), tmp_path / "cache", progress=False, workers=1)
    first = ex.run([(song, 2, 0)])[0]
    assert ex.run([(song, 2, 0)])[0] is not None and ex.cache.hits == 1
    ex.run([(song, 2, 1), (song, 3, None)])  # another seed, spread clips: new entries
    assert (ex.cache.hits, ex.decoded) == (1, 3)
    edited = tmp_path / song.path.name
    shutil.copy(song.path, edited)
    with edited.open("ab") as fh:  # other bytes: another content hash
        fh.write(b"\0" * 16)
    again = ex.run([(Song(edited, song.genre, song.source), 2, 0)])[0]
    assert ex.decoded == 4 and again is not None and first is not None


def test_from_model_adds_a_genre_and_keeps_the_old_ones(
    tmp_path: Path, synth_library: Path, synth_cache: Path,
    fresh_songs: list[tuple[Path, str]],
) -> None:
    old_styles = ("Drone", "Pulse", "Chirp")
    base_dir = tmp_path / "base"
    for style in old_styles:  # byte-identical copies: their features come from the cache
        shutil.copytree(synth_library / style, base_dir / style)
    base = training.train(base_dir, tmp_path / "m-base", arch="pooled", seed=0,
                          clips_per_song=2, epochs=4, cache_dir=synth_cache, progress=False)
    assert base.labels == sorted(old_styles)
    grown_dir = tmp_path / "grown"
    shutil.copytree(synth_library, grown_dir)
    (grown_dir / "Noise" / "broken.mp3").write_bytes(b"not audio at all" * 10)
    grown = training.train(grown_dir, tmp_path / "m-grown", arch="pooled", seed=0, clips_per_song=2,
                           epochs=5, from_model=base.out_dir, cache_dir=synth_cache,
                           progress=False)
    assert grown.labels[:3] == base.labels and grown.labels[3] == "Noise"
    assert Classifier.load(grown.out_dir).meta.parent == base.version
    assert grown.base_metrics is not None  # the base judged on the same held-out songs
    assert [s["path"] for s in grown.skipped] == [str(grown_dir / "Noise" / "broken.mp3")]
    result = training.evaluate(grown.out_dir, fresh_songs)
    for style in STYLES:
        assert result["per_genre"][style]["recall"] >= 0.75, (style, result["confusion"])


def test_fine_tune_on_labelled_pairs_evaluates_base_and_new_on_the_same_holdout(
    synth_model: Trained, synth_library: Path, synth_cache: Path,
    fresh_songs: list[tuple[Path, str]], tmp_path: Path,
) -> None:
    labelled = [(p, p.parent.name) for p in sorted(synth_library.rglob("*.*"))][::2]
    holdout = fresh_songs[::2]
    result = training.fine_tune(synth_model.path, labelled, tmp_path / "tuned",
                                holdout=holdout, epochs=2, clips_per_song=2,
                                cache_dir=synth_cache, progress=False)
    assert result.test_songs == [(str(p), g) for p, g in holdout]
    assert result.base_metrics is not None
    assert result.base_metrics["n_songs"] == result.metrics["n_songs"] == len(holdout)
    assert result.labels == synth_model.result.labels
    assert result.accuracy >= 0.75


def test_evaluate_counts_a_genre_the_model_lacks_as_wrong(
    synth_model: Trained, fresh_songs: list[tuple[Path, str]], tmp_path: Path
) -> None:
    odd = tmp_path / "odd.flac"
    shutil.copy(fresh_songs[0][0], odd)
    bad = tmp_path / "bad.mp3"
    bad.write_text("nope")
    result = training.evaluate(synth_model.path, [(odd, "Polka"), (bad, "Drone"),
                                                  *fresh_songs[1:3]])
    assert result["labels"][-1] == "Polka"
    assert result["n_songs"] == 3 and result["n_clips"] >= 3
    assert result["per_genre"]["Polka"]["recall"] == 0.0
    assert result["errors"] == [{"path": str(bad), "error": result["errors"][0]["error"]}]
    assert result["accuracy"] <= 0.667


def test_data_that_cannot_train_a_model_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a directory"):
        training.train(tmp_path / "nope", tmp_path / "out", progress=False)
    (tmp_path / "lib" / "Only").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no audio"):
        training.train(tmp_path / "lib", tmp_path / "out", progress=False)
    build_library(tmp_path / "lib", ("Drone",), 3, seed0=1)
    with pytest.raises(DatasetError, match="two genres"):
        training.train(tmp_path / "lib", tmp_path / "out", epochs=1, progress=False)
    assert not (tmp_path / "out").exists()


def test_cold_and_warm_cache_give_the_same_features(synth_library: Path, tmp_path: Path) -> None:
    song = dataset.scan(synth_library)[1]
    cold = Extractor(FeatureParams(), tmp_path / "cache", progress=False, workers=1)
    computed = cold.run([(song, 2, 0)])[0]
    warm = Extractor(FeatureParams(), tmp_path / "cache", progress=False, workers=1)
    cached = warm.run([(song, 2, 0)])[0]
    assert warm.cache.hits == 1 and computed is not None and cached is not None
    assert np.array_equal(computed, cached)


def test_stack_holds_the_readable_songs_clips_once_in_job_order(
    synth_library: Path, tmp_path: Path
) -> None:
    songs = dataset.scan(synth_library)[:3]
    bad = tmp_path / "bad.flac"
    bad.write_text("not audio")
    jobs = [(songs[0], 2, 0), (Song(bad, "Drone", "x"), 2, 0), (songs[1], 2, 0),
            (songs[2], 2, 0)]
    ex = Extractor(FeatureParams(), tmp_path / "cache", progress=False, workers=1)
    x, rows = ex.stack(jobs)
    assert rows == [2, 0, 2, 2]  # the unreadable song has no rows; the gap is closed
    assert x.dtype == np.float16 and x.shape == (6, 323, 323)
    assert [s["path"] for s in ex.skipped] == [str(bad)]
    each = Extractor(FeatureParams(), tmp_path / "cache", progress=False, workers=1).run(jobs)
    assert each[1] is None
    np.testing.assert_array_equal(x, np.concatenate([f for f in each if f is not None]))


def test_fine_tune_with_every_label_held_out_still_trains_and_says_so(
    synth_model: Trained, fresh_songs: list[tuple[Path, str]], synth_cache: Path,
    tmp_path: Path,
) -> None:
    few = fresh_songs[::4]  # one song per genre: too few to hold any out
    result = training.fine_tune(synth_model.path, few, tmp_path / "tuned", holdout=few,
                                epochs=1, clips_per_song=2, cache_dir=synth_cache,
                                progress=False)
    meta = json.loads((result.out_dir / "model.json").read_text())
    assert meta["training"]["holdout_is_training_data"] is True
    assert result.metrics["n_songs"] == len(few)
    with pytest.raises(DatasetError):
        training.fine_tune(synth_model.path, [], tmp_path / "none", holdout=few,
                           progress=False)


def test_features_are_still_computed_when_worker_processes_cannot_start(
    synth_library: Path,
) -> None:
    # A script fed on stdin cannot be re-imported by spawned workers: the pool breaks and
    # the extractor must finish the work in its own process.
    script = (
        "from classifier import dataset\n"
        "from classifier.extract import Extractor\n"
        "from classifier.features import FeatureParams\n"
        f"songs = dataset.scan({str(synth_library)!r})[:16]\n"
        "ex = Extractor(FeatureParams(), None, progress=False, workers=2)\n"
        "feats = ex.run([(s, 1, None) for s in songs])\n"
        "print(sum(f is not None for f in feats), len(ex.skipped))\n"
    )
    proc = subprocess.run([sys.executable, "-"], input=script, capture_output=True,
                          text=True, timeout=240, check=False,
                          cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["16", "0"]
    assert "feature workers failed" in proc.stderr  # the fallback, not the pool, did it


def test_fine_tuning_on_two_genres_keeps_the_others_when_given_anchor_tracks(
    synth_model: Trained, synth_library: Path, synth_cache: Path,
    fresh_songs: list[tuple[Path, str]], tmp_path: Path,
) -> None:
    labelled = [(p, g) for p, g in fresh_songs if g in ("Noise", "Drone")]
    others = [(p, g) for p, g in fresh_songs if g in ("Chirp", "Pulse")]
    anchors = [p for p in sorted(synth_library.rglob("*.*"))]  # unlabelled library tracks
    recalls = {}
    for name, extra in (("plain", ()), ("anchored", anchors)):
        result = training.fine_tune(synth_model.path, labelled, tmp_path / name,
                                    holdout=0.25, epochs=5, clips_per_song=2,
                                    cache_dir=synth_cache, progress=False, anchors=extra)
        report = training.evaluate(result.out_dir, others)
        recalls[name] = min(report["per_genre"][g]["recall"] for g in ("Chirp", "Pulse"))
        assert result.metrics["accuracy"] >= 0.75  # the labelled genres are learned
    assert recalls["anchored"] >= 0.75, recalls
    # Without anchors the unlabelled genres usually fade within these 5 epochs, but not on
    # every run (a fresh-clone CI run kept them at 1.0): the product promise is the anchored
    # recall above; this only says anchors never make it worse.
    assert recalls["plain"] <= recalls["anchored"], recalls
