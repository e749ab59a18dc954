"""The one log-mel function: the paper's input shape, loudness-free, librosa's numbers."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from classifier.audio import CLIP_SECONDS, SAMPLE_RATE
from classifier.features import FeatureParams, log_mel
from tests.audiogen import synth


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


def _librosa_log_mel(y: np.ndarray, params: FeatureParams) -> np.ndarray:
    librosa = pytest.importorskip("librosa", reason="librosa (a dev dependency) is the reference")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # empty low bands / short input
        basis = librosa.filters.mel(sr=params.sample_rate, n_fft=params.n_fft,
                                    n_mels=params.n_mels).astype(np.float32)
        spec = np.abs(librosa.stft(y, n_fft=params.n_fft, hop_length=params.hop_length)) ** 2
    return np.asarray(librosa.power_to_db(basis @ spec, ref=np.max, top_db=80.0), np.float32)


@pytest.mark.parametrize("params", [
    FeatureParams(),
    FeatureParams(sample_rate=16000, clip_seconds=5.0, n_fft=1024, hop_length=256, n_mels=128),
], ids=["paper", "other"])
def test_log_mel_gives_librosas_numbers(params: FeatureParams) -> None:
    rng = np.random.default_rng(3)
    n = params.clip_samples
    signals = {
        "noise": 0.1 * rng.standard_normal(n).astype(np.float32),
        "chirp": synth("Chirp", params.clip_seconds, seed=4)[:n]
        if params.sample_rate == SAMPLE_RATE else
        np.sin(np.linspace(0, 4000, n)).astype(np.float32),
        "silence": np.zeros(n, np.float32),
        "shorter than one FFT": 0.1 * rng.standard_normal(700).astype(np.float32),
    }
    for name, y in signals.items():
        ours, ref = log_mel(y, params), _librosa_log_mel(y, params)
        assert ours.shape == ref.shape, name
        np.testing.assert_allclose(ours, ref, atol=1e-3, err_msg=name)


def test_decode_processes_import_neither_librosa_nor_numba_and_use_one_blas_thread() -> None:
    code = (
        "import sys, numpy as np\n"
        "from threadpoolctl import threadpool_info\n"
        "from classifier.features import FeatureParams, log_mel, one_thread_per_process\n"
        "one_thread_per_process()\n"
        "log_mel(np.ones(FeatureParams().clip_samples, np.float32), FeatureParams())\n"
        "heavy = {'librosa', 'numba', 'torch'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "print(sorted({p['num_threads'] for p in threadpool_info()}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[1]"
