"""--arch backbone: a calibrated head over stored MSD_musicnn embeddings.

Real files (tests/audiogen.py styles in four formats), real training through
classifier.training, the real embedding store in tmp_path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classifier import training
from classifier.bundle import read_meta
from classifier.headfit import EMBEDDINGS_FILE
from classifier.predict import Classifier, Unclassifiable
from tests.audiogen import make_track, write_audio
from tests.classifier.conftest import backbone_library as library


@pytest.fixture(scope="module")
def trained(backbone_trained: tuple[Path, Path, Path]) -> tuple[Path, Path, Path]:
    """(library, cache dir, bundle) of a backbone model trained once (shared with the CLI
    tests, tests/classifier/conftest.py)."""
    return backbone_trained


def test_head_on_stored_embeddings_tells_the_styles_apart_and_is_calibrated(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    lib, cache, first = trained
    meta = read_meta(first)
    assert meta.arch == "backbone" and meta.params.frontend == "musicnn"
    assert meta.metrics["accuracy"] >= 0.9
    assert 0.0 <= meta.metrics["ece"] <= 1.0
    assert meta.training["temperature"] > 0
    report = json.loads((first / "metrics.json").read_text())
    assert "ece" in report["test"]
    # the same training again reads every embedding from the store: nothing is decoded
    again = training.train(lib, tmp_path / "again", arch="backbone", cache_dir=cache,
                           progress=False)
    assert again.decoded == 0
    assert again.accuracy >= 0.9


def test_evaluate_reports_accuracy_and_ece_on_new_songs(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, cache, first = trained
    fresh = library(tmp_path / "fresh", 2, seed0=7000)
    out = training.evaluate(first, fresh, cache_dir=cache)
    assert out["n_songs"] == 8 and out["accuracy"] >= 0.9
    assert 0.0 <= out["ece"] <= 1.0
    assert out["in_training_data"] == []
    # the bundle lists its training songs by fingerprint: evaluate names them
    lib = trained[0]
    seen = training.evaluate(first, lib, cache_dir=cache)["in_training_data"]
    assert len(seen) == sum(read_meta(first).training["songs"]["train"].values()) > 0


def test_a_retrain_after_corrections_decodes_only_what_was_never_embedded(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    lib, cache, first = trained
    known = sorted(p for p in lib.rglob("*.*"))[:18]
    new = library(tmp_path / "new", 1, seed0=9000)  # 4 songs never seen
    corrections = [(p, p.parent.name) for p in known] + [
        (p, p.parent.name) for p in sorted(new.rglob("*.*"))[:2]]
    assert len(corrections) == 20
    result = training.fine_tune(first, corrections, tmp_path / "grown", holdout=0.2,
                                cache_dir=cache, progress=False)
    assert result.decoded == 2
    meta = read_meta(tmp_path / "grown")
    assert meta.parent == read_meta(first).version
    # the base's own training embeddings were mixed in (its files need not exist)
    assert meta.training["base_embeddings"] > 0
    assert (tmp_path / "grown" / EMBEDDINGS_FILE).is_file()


def test_too_short_and_silent_audio_get_a_reason_not_a_genre(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    clf = Classifier.load(trained[2])
    short = make_track(tmp_path / "short.flac", "Pulse", 1.0, seed=3)
    with pytest.raises(Unclassifiable, match=r"too short to classify: 1\.0 s"):
        clf.classify(short)
    silent = write_audio(tmp_path / "silent.wav", np.zeros(22050 * 20, np.float32))
    with pytest.raises(Unclassifiable, match="silent"):
        clf.classify(silent)
    song = make_track(tmp_path / "song.mp3", "Chirp", 12.0, seed=4242)
    assert clf.classify(song).genre == "Chirp"
