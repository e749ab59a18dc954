"""The decode floor: the least work any scan must do per track — decode the same clip
windows and compute their log-mel features — in a pool of the same number of processes,
with nothing else (no fingerprint, no model, no catalogue). A scan is compared to it.

Also per-stage timings on a few tracks in this process, to show where a scan's extra time
goes (probe, clip decoding, features, fingerprint, CNN inference).
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_params: Any = None
_n_clips = 3


def _init(params: Any, n_clips: int) -> None:
    global _params, _n_clips
    from classifier.features import log_mel, one_thread_per_process

    one_thread_per_process()  # as genred's decode processes do
    _params, _n_clips = params, n_clips
    log_mel(np.zeros(int(params.sample_rate * params.clip_seconds), np.float32), params)


def _wait(seconds: float) -> None:
    time.sleep(seconds)


def _features_of(path: str) -> bool:
    """Decode the clip windows and compute their features; False if the file is unreadable."""
    from classifier.audio import UnreadableAudio, read_clips
    from classifier.features import log_mel

    try:
        _info, clips = read_clips(path, _n_clips, clip_seconds=_params.clip_seconds,
                                  sr=_params.sample_rate, resampler=_params.resampler)
    except UnreadableAudio:
        return False
    for clip in clips:
        log_mel(clip, _params)
    return True


@dataclass(frozen=True)
class Floor:
    seconds: float
    tracks: int
    unreadable: int
    cpu_seconds: float  # of the pool processes, start-up and warm-up included

    @property
    def tracks_per_second(self) -> float:
        return self.tracks / self.seconds


def model_settings(model: str | None = None) -> tuple[Any, int, int]:
    """(feature params, clips per track, workers) that `genred scan` uses by default:
    the model's (default: the bundled one) feature parameters and the default config."""
    from classifier.features import FeatureParams
    from daemon.config import Config

    cfg = Config()
    try:
        from classifier.predict import Classifier

        params = Classifier.load(model).params
    except Exception:  # the model cannot load: the default parameters are the contract's
        params = FeatureParams()
    return params, cfg.clips_per_track, cfg.worker_count


def measure(paths: Sequence[Path], workers: int, params: Any, n_clips: int) -> Floor:
    """Time decoding + features of ``paths`` over a warmed-up pool of ``workers``."""
    ctx = multiprocessing.get_context("spawn")  # workers without torch, like a lean scan
    before = _children_cpu()
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init,
                             initargs=(params, n_clips)) as pool:
        list(pool.map(_wait, [0.5] * workers))  # start every worker before timing
        start = time.perf_counter()
        ok = list(pool.map(_features_of, [str(p) for p in paths]))
        elapsed = time.perf_counter() - start
    return Floor(elapsed, len(paths), ok.count(False), _children_cpu() - before)


def _children_cpu() -> float:
    """CPU seconds of this process's reaped children (the pool's, once it is shut down)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stage_timings(paths: Sequence[Path], params: Any, n_clips: int, model: str | None = None
                  ) -> dict[str, float]:
    """Median milliseconds per track of each stage, measured serially in this process:
    decoding the clip windows alone (the floor's decode), the same with the fingerprint in
    the same open (a scan's decode), the features, and the CNN (a backbone model: the
    embedding on one thread, then the head)."""
    from classifier.audio import read_track
    from classifier.features import log_mel

    stages: dict[str, list[float]] = {"decode_clips": [], "decode_clips_and_fingerprint": [],
                                      "features": [], "inference": []}
    classifier = _classifier(model)
    for path in paths:
        t0 = time.perf_counter()
        read_track(path, n_clips, params.clip_seconds, params.sample_rate,
                   resampler=params.resampler)
        t1 = time.perf_counter()
        track = read_track(path, n_clips, params.clip_seconds, params.sample_rate,
                           fingerprint=True, resampler=params.resampler)
        t2 = time.perf_counter()
        feats = np.stack([log_mel(c, params) for c in track.clips])
        t3 = time.perf_counter()
        stages["decode_clips"].append(t1 - t0)
        stages["decode_clips_and_fingerprint"].append(t2 - t1)
        stages["features"].append(t3 - t2)
        if classifier is not None and classifier.embeds:
            _backbone_stages(classifier, track.info, feats, stages)
        elif classifier is not None:
            classifier.predict_features(track.info, feats)
            stages["inference"].append(time.perf_counter() - t3)
    return {k: 1000 * float(np.median(v)) for k, v in stages.items() if v}


def _backbone_stages(classifier: Any, info: Any, feats: np.ndarray,
                     stages: dict[str, list[float]]) -> None:
    """A backbone model: the track embedding on one thread (what each decode process of a
    scan runs, daemon/decoding.py), then the head (the scan's main process)."""
    from classifier import musicnn_ort
    from classifier.predict import track_embedding

    musicnn_ort.set_threads(1)
    try:
        t0 = time.perf_counter()
        emb = track_embedding(feats, classifier.backbone)
        t1 = time.perf_counter()
    finally:
        musicnn_ort.set_threads(None)
    classifier.predict_embedding(emb, info.duration, info.format)
    stages.setdefault("embedding_1thread", []).append(t1 - t0)
    stages.setdefault("head", []).append(time.perf_counter() - t1)


def _classifier(model: str | None) -> Any:
    try:
        from classifier.predict import Classifier

        return Classifier.load(model)
    except Exception:  # reported as a missing stage, not a failed benchmark
        return None
