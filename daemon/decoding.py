"""What a scan's decode processes do, and the pool they run in.

A decode process opens a file once and returns a :class:`Decoded`: its audio info,
fingerprint and title tags, and what the model needs of it (``Classifier.extraction``):
the K windows' log-mels, or for a backbone model the track embedding itself. The
backbone is the costly part of classifying a track (about half of its CPU), so it runs
where the cores are: in each decode process, on one ONNX Runtime thread, next to the
decoding (benchmarks/bench_scan.py). The worker's process then only applies the head.
No torch here: a decode process never imports it.

The pool's server process (forkserver, daemon/decode_server.py) imports this module and
ONNX Runtime once; every decode process forked from it starts with them loaded, and the
pages stay shared.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from classifier import musicnn_ort
from classifier.audio import AudioInfo, UnreadableAudio, read_track
from classifier.features import one_thread_per_process
from classifier.predict import Extraction, Unclassifiable, clip_features
from storage.names import shown
from storage.titles import TitleTags, read_titles

log = logging.getLogger(__name__)

# Imported once by the decode pool's server process (see daemon/decode_server.py).
PRELOAD = ["daemon.decode_server"]


@dataclass(frozen=True)
class Decoded:
    """What a pool process returns for one file: features or an embedding, or a one-line
    error, or the reason it is no music to judge (``unclassifiable``)."""

    path: str
    info: AudioInfo | None = None
    features: np.ndarray | None = None
    fingerprint: str | None = None
    error: str | None = None
    titles: TitleTags | None = None  # title, artist, album, ... from the file's tags
    # a backbone model's track embedding: computed by the decode process, or (``stored``)
    # read from the embedding store (daemon/worker_embeddings.py): the file was not
    # decoded, and ``info`` holds what the catalogue knew of its audio
    embedding: np.ndarray | None = None
    stored: bool = False
    unclassifiable: str | None = None  # "too short to classify: 1.0 s", "silent"


def decode(path: str, extraction: Extraction) -> Decoded:
    """What ``extraction`` asks of ``path`` and its fingerprint, from one open of the file,
    and its title tags; runs in a pool process (or, for a few files, in the worker's).
    Never raises for the file's problems."""
    params = extraction.params
    try:
        track = read_track(path, extraction.windows, params.clip_seconds, params.sample_rate,
                           fingerprint=True, resampler=params.resampler)
        if extraction.backbone is None:
            return Decoded(path, track.info, clip_features(track.clips, params),
                           track.fingerprint, titles=read_titles(path))
        try:
            embedding = extraction.embedding(track.info, track.clips)
        except Unclassifiable as e:
            return Decoded(path, track.info, unclassifiable=str(e))
        return Decoded(path, track.info, None, track.fingerprint, titles=read_titles(path),
                       embedding=embedding)
    except UnreadableAudio as e:
        return Decoded(path, error=e.reason)
    except MemoryError:
        return Decoded(path, error="out of memory while decoding")
    except Exception as e:  # a decoder bug must cost one file, not the scan
        log.exception("unexpected failure decoding %s", shown(path))
        return Decoded(path, error=f"{type(e).__name__}: {e}")


def _context() -> multiprocessing.context.ForkServerContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start_server() -> None:
    """Start the pool's server process now, without waiting for it: it imports the
    decoding modules while this process opens the catalogue, loads the model and walks the
    folders, so the first decode process forks at once (``genred scan`` calls it first).
    The server ends with this process."""
    from multiprocessing import forkserver

    _context()
    forkserver.ensure_running()


def new_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` decode processes. forkserver: children never inherit torch's threads
    from the worker's process. The server imports the decoding modules once (and ignores
    SIGTERM: see daemon/decode_server.py); every decode process forked from it starts
    ready."""
    ctx = _context()
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                               initializer=_start_decoder, initargs=(os.getpid(),))


def _start_decoder(owner: int) -> None:
    """A decode process's initializer: one BLAS thread (see one_thread_per_process) and
    one backbone thread (a pool already runs a process per core; a second thread in each only
    waits for a descheduled peer); stop signals ignored — Ctrl-C or a SIGTERM sent to the
    whole process group (systemd stopping the service) is for the main process ``owner``,
    which finishes or requeues the work and shuts the pool down; a decode process killed
    by it would record its file as crashed; and an exit of its own once ``owner`` is gone
    (killed with SIGKILL, say): an orphaned pool process would otherwise wait for work
    forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    one_thread_per_process()
    musicnn_ort.set_threads(1)
    threading.Thread(target=_exit_without, args=(owner,), daemon=True,
                     name="exit-with-owner").start()


def discard(pool: ProcessPoolExecutor) -> None:
    """Let go of a broken pool, killing its surviving decode processes first. A process
    killed while reading from the pool's call queue can leave a half-read message in the
    pipe; a survivor then waits forever for the rest, never sees the shutdown sentinel,
    and ignores the SIGTERM multiprocessing sends (see _start_decoder). The pool's manager
    thread joins it forever, and the interpreter's exit joins that thread: a scan or daemon
    that ever lost a decode process could hang at exit (seen in the test suite)."""
    for process in dict(getattr(pool, "_processes", None) or {}).values():
        with contextlib.suppress(OSError, ValueError):  # already gone
            process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def _exit_without(owner: int, every: float = 1.0) -> None:
    while True:
        time.sleep(every)
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:  # a pid taken by another user's process: ours is gone
            os._exit(0)
