"""Classify files and record them: the one place where the classifier meets the catalogue.

``genred scan`` and the daemon both drive a :class:`Worker`:

- ``Worker.scan(roots)`` — gather audio under the roots, mark vanished tracks missing,
  classify what is new or changed;
- ``Worker.process(paths)`` — classify these files (the daemon's settled paths);
- ``Worker.process_pending()`` — drain the work queue (tracks left ``pending``, e.g. by a
  crash or a correction for a file not scanned yet).

Per file: skip it when its size+mtime and model are unchanged; otherwise mark it pending,
decode + compute what the model needs in a process pool (daemon/decoding.py: log-mels, or
a backbone model's track embedding), then predict and record in this process, one short
transaction per track, and apply the tag policy if asked. A file
that fails becomes ``error`` with a one-line reason; nothing one file does stops the run.
A backbone model's worker keeps each track's embedding and judges an unchanged track
whose embedding is stored without decoding it (daemon/worker_embeddings.py). What happens
to each decoded file (predict, record, tags) is daemon/worker_record.py.
At most ``8 × workers`` files are in flight, so memory stays flat on any library size.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from classifier.predict import Classifier
from daemon.config import Config
from daemon.decoding import Decoded, decode, discard, new_pool
from daemon.summary import Summary
from daemon.walk import Walk
from daemon.worker_embeddings import StoredEmbeddings
from daemon.worker_record import Recording
from storage import catalogue, moves
from storage.tagging import TagOutcome, TagPolicy

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger(__name__)

MAX_CRASH_RETRIES = 1
SUBMIT_ATTEMPTS = 3  # fresh pools tried when handing a file to the decode processes fails
WAIT_BEAT_SECONDS = 1.0  # while decodes run, how often the worker says it is alive
POOL_MIN_FILES = 16  # fewer files than this are decoded in this process
# Files handed to the decode processes ahead of their results (an embedding, or ~1.3 MB
# of features each): enough that they keep working while this process loads torch (a
# second) or writes.
IN_FLIGHT_PER_WORKER = 8


def _one_torch_thread() -> None:
    """While decode processes hold every core, the CNN here runs on one thread: a second
    OpenMP thread only spins waiting for a descheduled peer, taking CPU from the decoders
    (benchmarks/bench_scan.py: scan/floor 0.40 with 2 threads, 0.95 with 1 on 2 cores).
    GENRED_TORCH_THREADS, when set, wins."""
    if os.environ.get("GENRED_TORCH_THREADS"):
        return
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


class Worker(Recording):
    """Classifies paths with ``classifier`` and records them in the catalogue at
    ``engine``. Call ``close()`` (or use ``with``) to stop the decode processes."""

    def __init__(
        self,
        engine: Engine,
        classifier: Classifier,
        cfg: Config,
        *,
        tag_policy: TagPolicy | None = None,
        on_tag: Callable[[TagOutcome], None] | None = None,
        progress: tqdm[Any] | None = None,
    ) -> None:
        self.engine, self.classifier, self.cfg = engine, classifier, cfg
        self.tag_policy = tag_policy
        self.on_tag = on_tag
        self.progress = progress
        self.workers = max(1, cfg.worker_count)
        self._pool: ProcessPoolExecutor | None = None
        self._owner: dict[Future[Decoded], ProcessPoolExecutor] = {}
        self._parallel = False
        self._model_ready = False
        self.pool_min_files = POOL_MIN_FILES
        # Polled between files: True stops taking new files (the daemon on SIGTERM).
        self.stop_requested: Callable[[], bool] = lambda: False
        # Called between files and while waiting for decodes: the daemon's watchdog beat.
        self.heartbeat: Callable[[], None] = lambda: None
        self._known: dict[str, catalogue.FileState] | None = None  # during scan()
        self._refused: set[str] = set()  # paths whose integrity error was logged
        self._gone_now: set[str] = set()  # marked missing by this scan (moves are found later)
        self.embeddings = (StoredEmbeddings(classifier, cfg.cache_path) if classifier.embeds
                           else None)
        self._stored: dict[str, Decoded] = {}  # path -> its stored embedding, about to go
        self.extraction = classifier.extraction  # what the decode processes compute
        self.register_model()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def hand_over_pool(self, successor: Worker) -> None:
        """Give this worker's running decode processes to ``successor`` (e.g. the daemon's
        worker for a newly activated model): decoding does not depend on the model, and
        starting the processes again costs seconds."""
        if self._pool is not None and successor._pool is None and (
                successor.workers == self.workers):
            successor._pool, self._pool = self._pool, None

    def register_model(self) -> None:
        """Record the classifier's version in model_versions (active unless a specific
        model was asked for)."""
        meta = self.classifier.meta
        catalogue.register_model(
            self.engine,
            self.classifier.version,
            self.classifier.path,
            self.classifier.labels,
            metrics=meta.metrics,
            parent=meta.parent,
            active=not self.cfg.model,
        )
        if not self.cfg.model:
            from daemon.shared_models import share_bundle

            share_bundle(self.engine, self.classifier.version, self.classifier.path)

    # --- entry points ------------------------------------------------------------------

    def scan(self, roots: Sequence[str | Path], force: bool = False) -> Summary:
        """Classify new and changed audio under ``roots``; tracks whose files are gone from
        under them become ``missing``."""
        summary = Summary()
        self._gone_now = set()
        for root in roots:
            if Path(root).is_dir():
                gone = moves.missing_under(self.engine, root)
                summary.missing += len(gone)
                self._gone_now.update(gone)
        walk = Walk(roots)
        paths = list(walk)
        summary.unreadable, summary.not_regular = len(walk.unreadable), len(walk.not_regular)
        if self.progress is not None:
            self.progress.reset(total=len(paths))
        self._known = {}
        for root in roots:
            self._known.update(catalogue.file_states(self.engine, root))
        try:
            return self.process(paths, force=force, summary=summary)
        finally:
            self._known = None

    def process_pending(self, limit: int | None = None,
                        exclude: Iterable[str] = ()) -> Summary:
        """Classify the tracks waiting in the queue (but those in ``exclude``)."""
        skip = set(exclude)
        paths = catalogue.pending_paths(self.engine, None if limit is None else limit + len(skip))
        wanted = [Path(p) for p in paths if p not in skip][:limit]
        return self.process(wanted, force=True)

    def process(
        self, paths: Iterable[str | Path], force: bool = False, summary: Summary | None = None
    ) -> Summary:
        """Classify ``paths`` (files); ``force`` ignores the unchanged check."""
        summary = summary or Summary()
        paths = list(paths)
        # Starting decode processes costs seconds; a few files decode faster right here.
        self._parallel = self.workers > 1 and len(paths) >= self.pool_min_files
        self._stored.clear()
        self._model_ready = False
        in_flight: dict[Future[Decoded], tuple[str, int, float, int]] = {}
        ahead = IN_FLIGHT_PER_WORKER * self.workers if self._parallel else 1
        try:
            for path in paths:
                if self.stop_requested():
                    break  # the rest stay as they are (queued files stay pending)
                self.heartbeat()
                job = self._queue(Path(path), force, summary)
                if job is not None:
                    self._submit(in_flight, job)
                while len(in_flight) >= ahead:
                    self._collect(in_flight, summary, FIRST_COMPLETED)
            while in_flight:
                if self.stop_requested():
                    self._unsubmit_waiting(in_flight)
                if in_flight:
                    self._collect(in_flight, summary, FIRST_COMPLETED)
        except BaseException:
            # A fault (the catalogue locked, a full disk) ends this pass: files not
            # recorded stay pending; decodes still running are let go, not waited for.
            self._unsubmit_waiting(in_flight)
            for future in in_flight:
                self._owner.pop(future, None)
            raise
        return summary

    def _unsubmit_waiting(self, in_flight: dict[Future[Decoded], Any]) -> None:
        """Withdraw files no decode process has started; they stay pending in the queue."""
        for future in list(in_flight):
            if future.cancel():
                del in_flight[future]
                self._owner.pop(future, None)

    # --- stages ------------------------------------------------------------------------

    def _queue(
        self, path: Path, force: bool, summary: Summary
    ) -> tuple[str, int, float, int] | None:
        """Stat, skip if unchanged, else mark pending; returns the job or None."""
        summary.scanned += 1
        where = catalogue.canonical(path)
        try:
            size, mtime = catalogue.file_stat(where)
        except FileNotFoundError:
            summary.missing += int(moves.mark_missing(self.engine, where, "file vanished"))
            self._tick()
            return None
        except OSError as e:
            catalogue.record_error(self.engine, where, f"cannot read: {e.strerror}")
            summary.errors += 1
            self._tick()
            return None
        if not force and self._unchanged(where, size, mtime):
            summary.unchanged += 1
            self._tick()
            return None
        self._look_up(where, where, size, mtime)  # before mark_pending records the stat
        catalogue.mark_pending(self.engine, where, size, mtime)
        return (where, size, mtime, 0)

    def _look_up(self, catalogued: str, local: str, size: int, mtime: float) -> None:
        """A backbone model: when the track's embedding is stored and its file unchanged
        (``size``, ``mtime`` as now on disk), it will be judged from that, not decoded."""
        if self.embeddings is None:
            return
        if self._known is not None and catalogued not in self._known:
            return  # a scan's new file: the catalogue has no row for it to look up
        found = self.embeddings.look_up(self.engine, catalogued, size, mtime)
        if found is not None:
            fingerprint, info, emb = found
            self._stored[local] = Decoded(local, info, None, fingerprint, embedding=emb,
                                          stored=True)

    def _unchanged(self, path: str, size: int, mtime: float) -> bool:
        version = self.classifier.version
        if self._known is not None:
            state = self._known.get(path)
            return state is not None and state.unchanged(size, mtime, version)
        return catalogue.is_unchanged(self.engine, path, size, mtime, version)

    def _submit(
        self,
        in_flight: dict[Future[Decoded], tuple[str, int, float, int]],
        job: tuple[str, int, float, int],
    ) -> None:
        args = (job[0], self.extraction)
        stored = self._stored.pop(job[0], None)
        if stored is not None or not self._parallel:
            future: Future[Decoded] = Future()
            future.set_result(stored if stored is not None else decode(*args))
        else:
            for attempt in range(SUBMIT_ATTEMPTS):
                pool = self._executor()
                try:
                    future = pool.submit(decode, *args)
                    break
                except (BrokenProcessPool, OSError):
                    # The pool broke since the last submit (a decode process died), or
                    # broke while this submit started a replacement process: the pool's
                    # manager thread closes the pipes a new process is handed
                    # (EBADF from the fork server). Either way: start a fresh pool.
                    discard(pool)
                    self._pool = None
                    if attempt == SUBMIT_ATTEMPTS - 1:
                        raise
            self._owner[future] = pool
        in_flight[future] = job

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = new_pool(self.workers)
        return self._pool

    def _drop_pool(self, future: Future[Decoded]) -> None:
        """Forget the pool that ran ``future`` if it is the current one (other futures of
        the same broken pool fail later and must not drop its replacement)."""
        if self._owner.get(future) is self._pool and self._pool is not None:
            discard(self._pool)
            self._pool = None

    def _collect(
        self,
        in_flight: dict[Future[Decoded], tuple[str, int, float, int]],
        summary: Summary,
        when: str,
    ) -> None:
        if not self._model_ready:
            # Here, once the decode processes have work: both start up at the same time.
            self.classifier.ready()  # a backbone model's head needs no torch (head_np.py)
            if self._parallel and not self.classifier.embeds:
                _one_torch_thread()
            self._model_ready = True
        while True:
            done, _ = wait(list(in_flight), timeout=WAIT_BEAT_SECONDS, return_when=when)
            if done:
                break
            self.heartbeat()  # long decodes (a big file): working, not stuck
        for future in done:
            job = in_flight.pop(future)
            try:
                decoded = future.result()
            except BrokenProcessPool:
                self._drop_pool(future)  # a decoder crashed its process; use a fresh pool
                if job[3] < MAX_CRASH_RETRIES:
                    summary.retried += 1
                    self._submit(in_flight, (*job[:3], job[3] + 1))
                    continue
                decoded = Decoded(job[0], error="the decoder crashed on this file")
            finally:
                self._owner.pop(future, None)
            self._record(decoded, job, summary)
            self.heartbeat()
            self._tick()

    def _tick(self) -> None:
        if self.progress is not None:
            self.progress.update(1)
