"""The pretrained backbone: the converted weights and genred's front end reproduce the
original MSD_musicnn (TensorFlow + librosa + resampy) on a stored reference.

data/musicnn_reference/ holds a 6 s stereo 44.1 kHz FLAC (synthetic tones, made for this
test) and what tools/musicnn/convert.py's ORIGINAL pipeline made of it: its log-mel
patches, tag probabilities and embeddings. No TensorFlow is needed here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from classifier import audio
from classifier.features import log_mel, musicnn_params, patches
from classifier.musicnn import load_backbone
from classifier.musicnn_spec import EMBEDDING_DIM, MSD_TAGS, WEIGHTS
from classifier.resample import resample

REF = Path(__file__).parent / "data" / "musicnn_reference"


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(REF / "expected.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return load_backbone()


def genred_patches(path: Path) -> np.ndarray:
    params = musicnn_params()
    y = audio.read_track(path, 1, 7.0, params.sample_rate, starts=[0.0],
                         resampler="kaiser_best").clips[0]
    return patches(log_mel(y[: round(audio.probe(path).duration * params.sample_rate)],
                           params))


def test_the_converted_weights_reproduce_the_original_network(
    net: torch.nn.Module, expected: dict[str, np.ndarray]
) -> None:
    assert WEIGHTS["msd_musicnn"].stat().st_size > 3_000_000  # 792,079 float32 values
    with torch.inference_mode():
        out = net.features(torch.from_numpy(expected["patches"]))
    assert out["taggram"].shape == (2, len(MSD_TAGS))
    assert out["mean_pool"].shape == (2, EMBEDDING_DIM)
    for key in ("taggram", "mean_pool", "penultimate", "max_pool"):
        diff = np.abs(out[key].numpy() - expected[key]).max()
        assert diff < 1e-3, f"{key} differs from the original by {diff:.1e}"


def test_genreds_front_end_makes_the_originals_patches(expected: dict[str, np.ndarray]) -> None:
    ours = genred_patches(REF / "input.flac")
    assert ours.shape == expected["patches"].shape == (2, 187, 96)
    assert np.abs(ours - expected["patches"]).max() < 1e-3


def test_whole_pipeline_matches_the_original_tags_and_embeddings(
    net: torch.nn.Module, expected: dict[str, np.ndarray]
) -> None:
    with torch.inference_mode():
        out = net.features(torch.from_numpy(genred_patches(REF / "input.flac")))
    for key in ("taggram", "mean_pool", "penultimate"):
        diff = np.abs(out[key].numpy() - expected[key]).max()
        assert diff < 1e-3, f"{key} differs from the original by {diff:.1e}"


def test_kaiser_best_resampler_keeps_the_passband_and_cuts_above_the_rolloff() -> None:
    sr = 44100
    t = np.arange(sr) / sr
    for freq, kept in ((1000.0, True), (7000.0, True), (7800.0, False)):
        y = resample(np.sin(2 * np.pi * freq * t).astype(np.float32), sr, 16000)
        rms = float(np.sqrt(np.mean(y[2000:-2000] ** 2)))
        assert (rms > 0.6) == kept, (freq, rms)  # a full-scale sine has rms 0.707
    assert resample(np.zeros(44100, np.float32), 44100, 16000).size == 16000
