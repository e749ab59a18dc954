"""Fixtures for the classifier tests: a small synthetic genre library (tests/audiogen.py
styles in several real formats) and one model trained on it, built once per session."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.audiogen import STYLES, make_track

SONG_SECONDS = 35.0
FORMATS = (".flac", ".ogg", ".mp3", ".wav")
SHARED = Path(__file__).parents[2] / ".." / "shared"


def build_library(root: Path, styles: tuple[str, ...], per_style: int, seed0: int) -> Path:
    """root/<style>/<style>-<n>.<fmt>, formats cycling, distinct seeds per song."""
    for s, style in enumerate(styles):
        for i in range(per_style):
            ext = FORMATS[i % len(FORMATS)]
            make_track(root / style / f"{style.lower()}-{i}{ext}", style, SONG_SECONDS,
                       seed=seed0 + 100 * s + i)
    return root


@pytest.fixture(scope="session")
def synth_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_library(tmp_path_factory.mktemp("library"), STYLES, 8, seed0=1)


@pytest.fixture(scope="session")
def fresh_songs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    """Songs no model has seen (other seeds), for evaluation."""
    root = build_library(tmp_path_factory.mktemp("fresh"), STYLES, 4, seed0=5000)
    return [(p, p.parent.name) for p in sorted(root.rglob("*.*"))]


@pytest.fixture(scope="session")
def synth_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (feature workers): unlike wall
    time it does not grow when other jobs share the machine."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class Trained:
    result: Any  # classifier.training.TrainResult
    seconds: float  # wall time of the whole run: decoding, features, training, reports
    cpu_seconds: float  # CPU time of the same (all threads and worker processes)

    @property
    def path(self) -> Path:
        return Path(self.result.out_dir)


@pytest.fixture(scope="session")
def synth_model(tmp_path_factory: pytest.TempPathFactory, synth_library: Path,
                synth_cache: Path) -> Trained:
    from classifier import training

    out = tmp_path_factory.mktemp("models") / "synth"
    start, cpu = time.monotonic(), cpu_seconds()
    result = training.train(synth_library, out, arch="pooled", seed=0, clips_per_song=2,
                            epochs=5, cache_dir=synth_cache, progress=False)
    return Trained(result, time.monotonic() - start, cpu_seconds() - cpu)


def backbone_library(root: Path, per_style: int, seed0: int, seconds: float = 12.0) -> Path:
    """root/<style>/<style>-<n>.<fmt>: short songs, enough for a backbone head (it embeds
    a few 6 s windows per song whatever the song's length)."""
    for s, style in enumerate(STYLES):
        for i in range(per_style):
            make_track(root / style / f"{style.lower()}-{i}{FORMATS[i % len(FORMATS)]}", style,
                       seconds, seed=seed0 + 100 * s + i)
    return root


@pytest.fixture(scope="session")
def backbone_trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(library, cache dir, bundle) of a backbone model trained once, from a cold cache.
    Tests may add embeddings to the cache (never change one); a test that needs the cache
    as it was right after this training copies it first."""
    from classifier import training

    lib = backbone_library(tmp_path_factory.mktemp("backbone-lib"), 6, seed0=1)
    cache = tmp_path_factory.mktemp("backbone-cache")
    out = tmp_path_factory.mktemp("backbone-models") / "first"
    result = training.train(lib, out, arch="backbone", cache_dir=cache, progress=False)
    assert result.decoded == 4 * 6  # a cold store: every song decoded once
    return lib, cache, out


@pytest.fixture(scope="session")
def odd_files() -> Path:
    path = SHARED / "corpus" / "odd-files"
    if not path.is_dir():
        pytest.skip(f"{path} is absent (the shared corpus is not next to the repo)")
    return path
