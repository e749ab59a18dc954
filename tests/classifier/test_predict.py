"""Whole-track prediction and the log-mel features it rests on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from classifier.audio import CLIP_SECONDS, SAMPLE_RATE
from classifier.features import FeatureParams, log_mel
from classifier.predict import Classifier
from tests.audiogen import make_track, synth
from tests.classifier.conftest import Trained


def test_a_30_second_clip_gives_the_papers_323_by_323_log_mel() -> None:
    params = FeatureParams()
    clip = synth("Chirp", CLIP_SECONDS, seed=1)
    assert clip.size == params.clip_samples == round(CLIP_SECONDS * SAMPLE_RATE)
    mel = log_mel(clip, params)
    assert mel.shape == (323, 323) and mel.dtype == np.float32
    assert mel.max() == 0.0 and mel.min() >= -80.0  # dB below the clip's loudest bin
    # A high chirp puts its energy in the upper mel bands, a drone in the lower ones.
    drone = log_mel(synth("Drone", CLIP_SECONDS, seed=1), params)
    assert mel[200:].mean() > drone[200:].mean() and drone[:60].mean() > mel[:60].mean()


def test_loudness_is_not_a_feature() -> None:
    params = FeatureParams()
    clip = synth("Pulse", CLIP_SECONDS, seed=2)
    np.testing.assert_allclose(log_mel(clip, params), log_mel(0.1 * clip, params), atol=1e-3)


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
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(feats.shape)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(synth_model.path),
                           str(fresh_songs[0][0])], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(3, 323, 323)"
