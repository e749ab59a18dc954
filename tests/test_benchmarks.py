"""The benchmark scripts run end to end at a tiny size, so they cannot rot: each must exit 0
and print the machine and its figures. The numbers themselves are not judged here (a
benchmark is not a timed test) beyond being figures at all; the inputs they generate are
checked to be real, varied audio in the formats they claim.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import inputs
from benchmarks.common import percentile

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One input cache for every script of this module (each generates only what it lacks)."""
    return tmp_path_factory.mktemp("bench-cache")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bundle with the default architecture and feature parameters (so decoding
    costs what it costs in use) and random weights: the scripts measure, never judge."""
    import torch

    from classifier import bundle
    from classifier import model as cnn
    from classifier.features import FeatureParams

    params = FeatureParams()
    labels = sorted(set(inputs.STYLE_GENRES.values()))
    torch.manual_seed(0)
    net = cnn.build("pooled", len(labels), params.n_mels, params.frames)
    meta = bundle.BundleMeta(version="bench-test-v1", labels=labels, params=params,
                             arch="pooled")
    return bundle.save(tmp_path_factory.mktemp("bench-model") / "model", net, meta)


def run_bench(name: str, cache: Path, model: Path, *extra: str, timeout: float = 240
              ) -> dict[str, str]:
    """Run ``benchmarks/<name>.py --quick``; returns its RESULT figures by name."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--quick",
           "--cache", str(cache), "--model", str(model), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    assert f"== genred benchmark: {name.removeprefix('bench_')} ==" in proc.stdout
    for fact in ("nproc", "cpu", "ram_gib", "python", "torch"):
        assert f"machine {fact}: " in proc.stdout, f"{name} does not print the {fact}"
    figures = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            key, _, value = line.removeprefix("RESULT ").partition(" = ")
            figures[key] = value.split()[0]
    return figures


def number(figures: dict[str, str], key: str) -> float:
    assert key in figures, f"no figure {key!r} in {sorted(figures)}"
    value = float(figures[key])
    assert math.isfinite(value)
    return value


def test_generated_songs_are_varied_stereo_audio_of_the_asked_length() -> None:
    y = inputs.song(45.0, seed=3, sr=22050)
    assert y.shape == (int(45.0 * 22050), 2) or abs(y.shape[0] - 45.0 * 22050) < 22050
    assert np.abs(y).max() > 0.5  # not silence
    # Sections differ: the loudness of 5 s windows is not constant through the song.
    rms = [float(np.sqrt(np.mean(y[i:i + 110250, 0] ** 2))) for i in range(0, 8 * 110250,
                                                                           110250)]
    assert max(rms) > 1.3 * min(rms)
    assert not np.allclose(y[:, 0], y[:, 1])  # two channels, not a copy


def test_inputs_are_real_files_in_the_four_formats_and_reused(bench_cache: Path) -> None:
    import mutagen

    paths = inputs.library(bench_cache, 4, quick=True)
    assert [p.suffix for p in paths] == [".mp3", ".flac", ".m4a", ".ogg"]
    for path in paths:
        audio = mutagen.File(str(path))
        assert audio is not None, path
        assert 34.0 <= audio.info.length <= 46.0
        assert audio.info.channels == 2 and audio.info.sample_rate == 44100
    mtimes = [p.stat().st_mtime_ns for p in paths]
    assert inputs.library(bench_cache, 4, quick=True) == paths
    assert [p.stat().st_mtime_ns for p in paths] == mtimes  # cached, not regenerated


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([1.0, 2.0], 95) == pytest.approx(1.95)
    assert percentile([7.0], 95) == 7.0


def test_bench_scan_reports_scan_and_floor(bench_cache: Path, model: Path, tmp_path: Path
                                           ) -> None:
    out = tmp_path / "scan.json"
    figures = run_bench("bench_scan", bench_cache, model, "--tracks", "4", "--repeat", "2",
                         "--json", str(out))
    assert number(figures, "scan_tracks_per_second") > 0
    assert number(figures, "floor_tracks_per_second") > 0
    assert number(figures, "scan_to_floor_ratio") > 0
    assert number(figures, "tracks_recorded_ok") == 4
    data = json.loads(out.read_text())
    assert data["machine"]["nproc"] >= 1 and data["results"]["scan_to_floor_ratio"]["value"] > 0
    rounds = [float(x) for x in data["results"]["scan_to_floor_ratio_rounds"]["value"].split()]
    assert len(rounds) == 2 and all(x > 0 for x in rounds)  # --repeat 2: two (scan, floor)
    assert min(rounds) <= number(figures, "scan_to_floor_ratio") <= max(rounds)  # the median
    table = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "table.py"), str(out)],
                           capture_output=True, text=True, check=True).stdout
    assert "| scan | scan_to_floor_ratio |" in table and "Machine: " in table


def test_bench_long_compares_a_10_minute_file_with_a_1_minute_file(bench_cache: Path,
                                                                  model: Path) -> None:
    figures = run_bench("bench_long", bench_cache, model)
    assert number(figures, "flac_classify_ratio") > 0
    assert number(figures, "flac_decode_ratio") > 0


def test_bench_memory_scans_two_sizes(bench_cache: Path, model: Path) -> None:
    figures = run_bench("bench_memory", bench_cache, model, "--tracks", "4")
    assert number(figures, "scan4_tree_pss") > 10  # MiB: a Python process at least
    assert number(figures, "scan1_tree_pss") > 10
    assert number(figures, "pss_growth") > 0


def test_bench_daemon_measures_close_to_row(bench_cache: Path, model: Path) -> None:
    figures = run_bench("bench_daemon", bench_cache, model, "--tracks", "3", "--settle", "1",
                        "--interval", "0.5")
    assert number(figures, "settle_seconds") == 1.0
    assert number(figures, "close_to_classified_median") > 0
    assert number(figures, "close_to_classified_p95") >= number(
        figures, "close_to_classified_median")


def test_bench_query_times_query_and_startup(bench_cache: Path, model: Path) -> None:
    figures = run_bench("bench_query", bench_cache, model, "--tracks", "300")
    assert number(figures, "query_rows") > 0
    assert number(figures, "query_time") > 0
    assert number(figures, "query_command_total") > number(figures, "query_time")
    assert figures["help_imports_torch"] in ("True", "False")


def test_bench_train_times_epochs_and_retrain(bench_cache: Path, model: Path) -> None:
    figures = run_bench("bench_train", bench_cache, model, "--tracks", "4")
    assert number(figures, "pooled_seconds_per_epoch_per_1000_clips") > 0
    assert "retrain_seconds" in figures


def test_bench_backbone_times_patches_heads_and_reclassification(bench_cache: Path,
                                                                 model: Path) -> None:
    figures = run_bench("bench_backbone", bench_cache, model)
    assert number(figures, "patch_ms_batch6") > 0
    assert number(figures, "engine_patch_ms_1thread_batch2") > 0
    assert number(figures, "head_200_labels_fit_seconds") > 0
    assert number(figures, "reclassify_10000_stored_seconds") > 0


def test_bench_workers_measures_workers_scan_and_the_queue(
        bench_cache: Path, model: Path, postgres_url: str) -> None:
    admin = postgres_url  # a database on a server that answers (skips or fails otherwise)
    figures = run_bench("bench_workers", bench_cache, model, "--tracks", "3", "--pg", admin,
                        "--claimers", "2", timeout=900)
    for name in ("scan_tracks_per_second", "workers_1_tracks_per_second",
                 "workers_2_tracks_per_second", "queue_tracks_per_second"):
        assert float(figures[name]) > 0, name
