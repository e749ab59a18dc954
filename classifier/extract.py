"""Log-mel features for many songs, through the feature cache, in worker processes.

Training and evaluation ask for (song, number of clips, seed) jobs: ``seed`` None means
clips spread over the track as in real use; a seed means that many random clips (a song
shorter than a clip is looped, and each copy starts at a random point of the loop so the
clips differ like a long song's do). Cached songs are read in this process; the rest are
decoded by a pool of ``workers`` processes (spawned, so they never inherit torch's
threads) when there are enough of them to be worth it. Unreadable songs are skipped and
listed with their reason.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from classifier import audio
from classifier.dataset import Song
from classifier.featurecache import FeatureCache, content_hash
from classifier.features import FeatureParams, one_thread_per_process
from classifier.predict import clip_features

log = logging.getLogger(__name__)

Job = tuple[Song, int, int | None]  # song, clips, seed (None = spread clips)
MIN_SONGS_FOR_POOL = 16


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _random_clips(path: Path, digest: str, n: int, seed: int, p: FeatureParams
                  ) -> list[np.ndarray]:
    info = audio.probe(path)
    rng = random.Random(f"{seed}-{digest}")
    slack = info.duration - p.clip_seconds
    if slack > 1.0:
        starts = sorted(rng.uniform(0.0, slack) for _ in range(n))
        return audio.read_clips(path, n, p.clip_seconds, p.sample_rate, starts,
                                p.resampler)[1]
    clip = audio.read_clip(path, 0.0, p.clip_seconds, p.sample_rate, p.resampler)
    period = round(info.duration * p.sample_rate) if info.duration > 0 else clip.size
    period = max(1, min(period, clip.size))
    return [np.roll(clip, -rng.randrange(period)) for _ in range(n)]


def _clips_name(n: int, seed: int | None) -> str:
    return f"spread{n}" if seed is None else f"random{n}-seed{seed}"


def compute(path: Path, digest: str, n: int, seed: int | None, params: FeatureParams,
            cache_root: Path | None) -> tuple[np.ndarray | None, str | None]:
    """Decode + log-mel one song and store it in the cache; (feats, None) or (None, reason).
    Runs in a worker process: it returns the reason instead of raising across processes."""
    try:
        if seed is None:
            _, clips = audio.read_clips(path, n, params.clip_seconds, params.sample_rate,
                                        resampler=params.resampler)
        else:
            clips = _random_clips(path, digest, n, seed, params)
    except audio.UnreadableAudio as e:
        return None, e.reason
    # float16, as the cache stores them: a run with a cold cache trains on exactly what a
    # run with a warm cache reads (reproducible models), in half the memory of float32.
    feats = clip_features(clips, params).astype(np.float16)
    FeatureCache(cache_root, params).put(digest, _clips_name(n, seed), feats)
    return feats, None


class Extractor:
    def __init__(self, params: FeatureParams, cache_dir: str | Path | None, progress: bool,
                 workers: int | None = None):
        self.params = params
        self.cache_root = Path(cache_dir).expanduser() if cache_dir else None
        self.cache = FeatureCache(self.cache_root, params)
        self.progress = progress
        self.workers = workers or default_workers()
        self.decoded = 0
        self.skipped: list[dict[str, str]] = []

    def _skip(self, song: Song, reason: str) -> None:
        log.warning("skipped: %s: %s", song.path, reason)
        self.skipped.append({"path": str(song.path), "error": reason})

    def run(self, jobs: list[Job], desc: str = "features") -> list[np.ndarray | None]:
        """Features per job, in order, as float16 (n, n_mels, frames) arrays (the cache's
        values; half the memory of float32); None for an unreadable song (listed in
        skipped)."""
        results: list[np.ndarray | None] = [None] * len(jobs)
        for i, feats in self._each(jobs, desc):
            results[i] = feats
        return results

    def stack(self, jobs: list[Job], desc: str = "features") -> tuple[np.ndarray, list[int]]:
        """Every readable job's clips in ONE float16 (N, n_mels, frames) array, in job
        order, and per job how many rows it has (0: unreadable, listed in skipped). Each
        song is copied in as soon as it is read and then dropped, so a training set is held
        once — not once as per-song arrays and again stacked (the heap keeps freed per-song
        arrays, so stacking afterwards doubled a retrain's memory)."""
        p = self.params
        offsets = np.cumsum([0] + [n for _, n, _ in jobs])
        out = np.empty((int(offsets[-1]), p.n_mels, p.frames), dtype=np.float16)
        rows = [0] * len(jobs)
        for i, feats in self._each(jobs, desc):
            k = min(len(feats), jobs[i][1])
            out[offsets[i] : offsets[i] + k] = feats[:k]
            rows[i] = k
        at = 0  # close the gaps left by unreadable songs (or fewer clips), in order
        for i, k in enumerate(rows):
            if k and offsets[i] != at:
                out[at : at + k] = out[offsets[i] : offsets[i] + k]
            at += k
        return out[:at], rows

    def _each(self, jobs: list[Job], desc: str) -> Iterator[tuple[int, np.ndarray]]:
        """(job index, features) of each readable job as it is read: cached songs first,
        then the decoded ones in order; unreadable songs are listed in skipped."""
        todo: list[tuple[int, str]] = []
        for i, (song, n, seed) in enumerate(jobs):
            try:
                digest = content_hash(song.path)
            except OSError as e:
                self._skip(song, f"cannot read: {e.strerror or e}")
                continue
            feats = self.cache.get(digest, _clips_name(n, seed))
            if feats is None:
                todo.append((i, digest))
            else:
                yield i, feats
        self.decoded += len(todo)
        for i, (feats, reason) in self._computed(jobs, todo, desc):
            if feats is None:
                self._skip(jobs[i][0], reason or "unreadable")
            else:
                yield i, feats

    def _computed(self, jobs: list[Job], todo: list[tuple[int, str]], desc: str
                  ) -> Iterator[tuple[int, tuple[np.ndarray | None, str | None]]]:
        bar = tqdm(total=len(todo), desc=desc, unit="song", file=sys.stderr,
                   disable=not self.progress or not todo)
        args = [(jobs[i][0].path, d, jobs[i][1], jobs[i][2], self.params, self.cache_root)
                for i, d in todo]
        done = 0
        try:
            if self.workers > 1 and len(todo) >= MIN_SONGS_FOR_POOL:
                for result in self._in_pool(todo, args):
                    done += 1
                    bar.update()
                    yield result
            for (i, _), a in list(zip(todo, args, strict=True))[done:]:
                computed = compute(*a)  # serial, or what the pool did not finish
                bar.update()
                yield i, computed
        finally:
            bar.close()

    def _in_pool(self, todo: list[tuple[int, str]], args: list[tuple]
                 ) -> Iterator[tuple[int, tuple[np.ndarray | None, str | None]]]:
        """Results in order until the pool breaks (e.g. a worker killed, or a caller's
        script that spawned workers cannot re-import); the caller does the rest serially.
        A result is let go once handed over (no list of futures keeps them all alive)."""
        ctx = multiprocessing.get_context("spawn")
        try:
            with ProcessPoolExecutor(self.workers, mp_context=ctx,
                                     initializer=one_thread_per_process) as pool:
                waiting = deque((i, pool.submit(compute, *a))
                                for (i, _), a in zip(todo, args, strict=True))
                while waiting:
                    i, future = waiting.popleft()
                    result = future.result()
                    del future
                    yield i, result
        except BrokenProcessPool as e:
            log.warning("feature workers failed (%s); continuing in this process", e)

    def many(self, songs: list[Song], n: int, seed: int | None, desc: str
             ) -> tuple[list[Song], list[np.ndarray]]:
        """The readable songs and their (n, n_mels, frames) features."""
        results = self.run([(s, n, seed) for s in songs], desc)
        kept = [(s, f) for s, f in zip(songs, results, strict=True) if f is not None]
        return [s for s, _ in kept], [f for _, f in kept]
