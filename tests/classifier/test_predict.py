"""Whole-track prediction and the log-mel features it rests on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from classifier.predict import Classifier
from tests.audiogen import make_track
from tests.classifier.conftest import Trained


def test_prediction_averages_the_clips_probabilities(synth_model: Trained,
                                                     tmp_path: Path) -> None:
    clf = Classifier.load(synth_model.path, clips_per_track=3)
    path = make_track(tmp_path / "long.mp3", "Chirp", seconds=100.0, seed=9)
    info, feats = clf.features(path)
    assert feats.shape == (3, 323, 323)
    per_clip = clf.probabilities(feats)
    prediction = clf.predict_features(info, feats)
    expected = per_clip.mean(axis=0)
    assert prediction.probabilities == {g: float(p) for g, p in zip(clf.labels, expected,
                                                                    strict=True)}
    assert prediction.genre == "Chirp" and prediction.confidence == max(expected)
    assert prediction.model == synth_model.result.version
    assert 99.0 < prediction.duration < 101.0 and prediction.format == "mp3"
    assert clf.classify(path) == prediction


def test_features_run_without_torch_so_worker_processes_stay_light(
    synth_model: Trained, fresh_songs: list[tuple[Path, str]]
) -> None:
    code = (
        "import sys\n"
        "from classifier.predict import Classifier\n"
        "clf = Classifier.load(sys.argv[1])\n"
        "info, feats = clf.features(sys.argv[2])\n"
        "heavy = {'torch', 'librosa', 'numba'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "print(feats.shape)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(synth_model.path),
                           str(fresh_songs[0][0])], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(3, 323, 323)"
