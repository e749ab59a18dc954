"""Keep the catalogue in step with the watched folders: the daemon's filesystem bookkeeping.

- :meth:`Reconciler.rescan` walks the folders (at start and every ``rescan_hours``): files
  new or changed since the catalogue last saw them are queued (``pending``), or left to
  settle when they were modified moments ago; vanished ones become ``missing``.
- :meth:`Reconciler.apply` turns one watcher :class:`Change` into catalogue updates:
  moves and renames carry the track (predictions, corrections, tag backups) to the new
  path; deletes mark ``missing``; writes start the settle timer.
- :meth:`Reconciler.enqueue_if_changed` queues a settled file unless its size+mtime are
  what the catalogue holds — which is how genred's own tag writes (which store the file's
  new size+mtime) never trigger a reclassification.

A file moved while the daemon was down shows up as a new path plus a vanished one; the
worker matches them by audio fingerprint when it classifies the new path.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from daemon.watcher import Change, FileStabilityTracker, is_junk
from storage import catalogue, moves
from storage.names import shown
from storage.paths import is_gone, is_inside
from storage.schema import ERROR, MISSING, OK, PENDING

log = logging.getLogger(__name__)

WALK_CHECK_EVERY = 200  # files between keep_going() calls during a walk


def _never_audio(path: str) -> bool:
    from daemon.walk import NOT_AUDIO_EXTENSIONS

    return Path(path).suffix.lower() in NOT_AUDIO_EXTENSIONS


def _looks_like_audio(path: str) -> bool:
    from daemon.walk import looks_like_audio

    return looks_like_audio(Path(path))


class Reconciler:
    def __init__(
        self,
        engine: Engine,
        roots: list[str],
        tracker: FileStabilityTracker,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.roots = roots
        self.tracker = tracker
        self._wall_clock = wall_clock

    def _root_of(self, path: str) -> str | None:
        for root in self.roots:
            if is_inside(path, root):
                return root
        return None

    def _wanted(self, path: str) -> bool:
        """Worth settling: inside a watched folder, not junk, not an obvious non-audio."""
        root = self._root_of(path)
        return root is not None and not is_junk(path, root) and not _never_audio(path)

    # -- events ----------------------------------------------------------------------------
    def apply(self, change: Change) -> None:
        if change.kind == "changed":
            if self._wanted(change.path):
                self.tracker.touch(change.path)
        elif change.kind == "deleted":
            self.tracker.discard(change.path)
            if moves.mark_missing(self.engine, change.path, "deleted"):
                log.info("deleted: %s", shown(change.path))
        elif change.kind == "moved":
            self._moved(change.path, change.dest)
        elif change.kind == "dir_deleted":
            self.tracker.discard_under(change.path)
            if change.path in self.roots:
                return  # a watched folder as a whole: unmounted or renamed, not deleted
            gone = moves.mark_missing_under(self.engine, change.path)
            if gone:
                log.info("folder gone: %s (%d track(s) missing)", shown(change.path), gone)
        elif change.kind == "dir_created":
            self._walk_new_folder(change.path)
        elif change.kind == "dir_moved":
            # watchdog follows with one "moved" per file inside; only forget settle state.
            self.tracker.discard_under(change.path)

    def _walk_new_folder(self, folder: str) -> None:
        from daemon.walk import Walk

        # Walk, not os.walk: a FIFO or an unreadable sub-folder in the new folder is
        # counted and logged, never opened or fatal.
        for path in Walk([folder], is_audio=lambda p: not _never_audio(str(p))):
            if self._wanted(str(path)):
                self.tracker.touch(str(path))

    def _moved(self, src: str, dest: str) -> None:
        self.tracker.discard(src)
        if not self._wanted(dest):
            if moves.mark_missing(self.engine, src, f"renamed to {dest}"):
                log.info("moved out of view: %s -> %s", shown(src), shown(dest))
            return
        if not is_junk(src, self._root_of(src) or "/") and moves.move_path(
            self.engine, src, dest
        ):
            log.info("moved: %s -> %s", shown(src), shown(dest))
        # Settle it anyway: a rename onto a real name can also finish a download or a
        # rewrite; unchanged size+mtime make this a no-op.
        self.tracker.touch(dest)

    def enqueue_if_changed(self, path: str) -> bool:
        """Queue a settled ``path`` unless the catalogue already holds this version."""
        if not os.path.isfile(path) or not _looks_like_audio(path):
            return False
        try:
            size, mtime = catalogue.file_stat(path)
        except OSError:
            return False
        known = catalogue.get_track(self.engine, path)
        if known is not None and known.status in (OK, ERROR) and (
            known.size, known.mtime) == (size, mtime):
            log.debug("unchanged (e.g. our own tag write): %s", shown(path))
            return False
        catalogue.mark_pending(self.engine, path, size, mtime)
        log.info("queued: %s", shown(path))
        return True

    # -- walks -----------------------------------------------------------------------------
    def rescan(
        self, settle_seconds: float, keep_going: Callable[[], bool] = lambda: True,
        roots: list[str] | None = None,
    ) -> dict[str, int]:
        """Walk the watched folders (``roots``: those of them that are there now); returns
        counts of what it did. ``keep_going`` is called every few hundred files (the
        daemon beats its watchdog there); when it returns False the walk stops, and
        nothing is marked missing from a partial walk."""
        counts = {"queued": 0, "settling": 0, "unchanged": 0, "missing": 0}
        for root in self.roots if roots is None else roots:
            if not self._rescan_root(root, settle_seconds, counts, keep_going):
                break
        return counts

    def _rescan_root(self, root: str, settle_seconds: float, counts: dict[str, int],
                     keep_going: Callable[[], bool]) -> bool:
        from daemon.walk import Walk

        if not os.path.isdir(root):
            return True  # gone meanwhile (the watcher says so): its tracks stay as they are
        known = {t.path: t for t in catalogue.tracks_under(self.engine, root)}
        seen: set[str] = set()
        walk = Walk([root])
        for n, found in enumerate(walk, 1):
            if n % WALK_CHECK_EVERY == 0 and not keep_going():
                return False
            path = catalogue.canonical(found)
            seen.add(path)
            try:
                size, mtime = catalogue.file_stat(path)
            except OSError:
                continue
            track = known.get(path)
            if track is not None and track.status == PENDING:
                counts["queued"] += 1  # already queued (e.g. left by a kill)
            elif track is not None and track.status in (OK, ERROR) and (
                track.size, track.mtime) == (size, mtime):
                counts["unchanged"] += 1
            elif self._wall_clock() - mtime < settle_seconds:
                self.tracker.touch(path)  # being written right now: let it settle first
                counts["settling"] += 1
            else:
                catalogue.mark_pending(self.engine, path, size, mtime)
                counts["queued"] += 1
        # Only when there were any: "unreadable 1" (folders), "not regular 3" (FIFOs ...).
        for key, n in (("unreadable", len(walk.unreadable)),
                       ("not regular", len(walk.not_regular))):
            if n:
                counts[key] = counts.get(key, 0) + n
        for path, track in known.items():
            # Only what is certainly gone: a track in a folder the walk could not read stays.
            if path not in seen and track.status != MISSING and is_gone(path):
                moves.mark_missing(self.engine, path, "not found by the rescan")
                counts["missing"] += 1
        return True
