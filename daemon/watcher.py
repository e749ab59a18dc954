"""Watchdog events -> settled paths.

Three small pieces, each testable alone:

- :func:`is_junk` — names no music library wants classified (partial downloads, NAS
  thumbnails, dotfiles, our own tag-write temporaries ...).
- :class:`FileStabilityTracker` — bookkeeping with an injected clock: a path is *settled*
  once no event arrived and its size+mtime did not change for ``settle_seconds`` and no
  process has it open for writing, so a file still being copied is never read
  half-written — not even a copy that stalls longer than ``settle_seconds`` (a network
  copy waiting on the network, a download that keeps the file open).
- :class:`FolderWatcher` — a recursive watchdog ``Observer`` that turns filesystem events
  into :class:`Change` items on a queue the run loop blocks on (no polling).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

log = logging.getLogger(__name__)

# Whole names (case-insensitive) of files or folders that are never music.
JUNK_NAMES = frozenset(
    {
        "thumbs.db",
        "desktop.ini",
        "ehthumbs.db",
        "@eadir",  # Synology thumbnails
        "#recycle",
        "#snapshot",
        "$recycle.bin",
        "lost+found",
        "system volume information",
    }
)
# Suffixes of partial downloads, editor and tool temporaries.
JUNK_SUFFIXES = (
    ".part",
    ".partial",
    ".crdownload",
    ".download",
    ".opdownload",
    ".!qb",
    ".!ut",
    ".tmp",
    ".temp",
    ".swp",
    "~",
)


def is_junk(path: str | Path, root: str | Path | None = None) -> bool:
    """True for dotfiles/dot-folders (.DS_Store, ._x, .Trash …), NAS/OS clutter and partial
    downloads in any component of ``path`` below ``root`` (the watched folder itself may
    live under a dot-folder)."""
    rel = Path(path)
    if root is not None and rel.is_relative_to(root):
        rel = rel.relative_to(root)
    for part in rel.parts:
        lower = part.lower()
        if part.startswith(".") and part not in (".", ".."):
            return True
        if lower in JUNK_NAMES:
            return True
    return Path(path).name.lower().endswith(JUNK_SUFFIXES)


Signature = tuple[int, int]  # (size, mtime_ns)


def _signature(path: str, stat: Callable[[str], os.stat_result]) -> Signature | None:
    try:
        st = stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


@dataclass
class _Settling:
    signature: Signature
    last_change: float


def _open_for_writing(path: str) -> bool:
    from storage.filewrite import open_for_writing

    return open_for_writing(Path(path))


class FileStabilityTracker:
    """Which paths have stopped changing. The clock, ``stat`` and the "does a process
    have it open for writing" probe (``storage.filewrite.open_for_writing``: a Linux read
    lease, else ``/proc/*/fd``) are injected."""

    def __init__(
        self,
        settle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        stat: Callable[[str], os.stat_result] = os.stat,
        being_written: Callable[[str], bool] = _open_for_writing,
    ) -> None:
        self.settle_seconds = settle_seconds
        self._clock = clock
        self._stat = stat
        self._being_written = being_written
        self._settling: dict[str, _Settling] = {}
        self._held: set[str] = set()  # quiet but open for writing: logged once each

    def __len__(self) -> int:
        return len(self._settling)

    def __contains__(self, path: object) -> bool:
        return path in self._settling

    def touch(self, path: str) -> None:
        """Something happened to ``path``: (re)start its settle timer."""
        signature = _signature(path, self._stat)
        if signature is None:
            self._settling.pop(path, None)
            return
        self._settling[path] = _Settling(signature, self._clock())

    def discard(self, path: str) -> None:
        self._settling.pop(path, None)
        self._held.discard(path)

    def discard_under(self, folder: str) -> None:
        prefix = folder.rstrip(os.sep) + os.sep
        for path in [p for p in self._settling if p.startswith(prefix)]:
            self.discard(path)

    def next_due(self) -> float | None:
        """Clock time at which the earliest settling path may be settled (None if none)."""
        if not self._settling:
            return None
        return min(s.last_change for s in self._settling.values()) + self.settle_seconds

    def settled(self) -> list[str]:
        """Paths quiet for ``settle_seconds`` with unchanged size+mtime that no process
        has open for writing; they leave the tracker. A path that changed after all, or
        that another program still holds open for writing (a stalled copy: quiet, not
        finished), restarts its timer; a vanished one is dropped (its delete event does
        the bookkeeping)."""
        from storage.names import shown

        now = self._clock()
        ready: list[str] = []
        for path, state in list(self._settling.items()):
            if now - state.last_change < self.settle_seconds:
                continue
            signature = _signature(path, self._stat)
            if signature is None:
                self.discard(path)
            elif signature != state.signature:
                self._settling[path] = _Settling(signature, now)
            elif self._being_written(path):
                self._settling[path] = _Settling(signature, now)
                if path not in self._held:
                    self._held.add(path)
                    log.info("%s is quiet but another program has it open for writing (a "
                             "stalled copy or download?): waiting until it is closed",
                             shown(path))
            else:
                self.discard(path)
                ready.append(path)
        return sorted(ready)


ChangeKind = Literal[
    "changed", "deleted", "moved", "dir_created", "dir_deleted", "dir_moved", "wake"
]


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    path: str
    dest: str = ""


def _text(path: bytes | str) -> str:
    return os.fsdecode(path)


class _Handler(FileSystemEventHandler):
    def __init__(self, inbox: queue.Queue[Change]) -> None:
        self._inbox = inbox

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = _text(event.src_path)
        dest = _text(event.dest_path) if event.dest_path else ""
        change: Change | None = None
        if isinstance(event, FileMovedEvent):
            change = Change("moved", src, dest)
        elif isinstance(event, DirMovedEvent):
            change = Change("dir_moved", src, dest)
        elif isinstance(event, FileDeletedEvent):
            change = Change("deleted", src)
        elif isinstance(event, DirDeletedEvent):
            change = Change("dir_deleted", src)
        elif isinstance(event, DirCreatedEvent):
            # Files written into a new folder before its watch was added send no event
            # of their own: the run loop walks the folder.
            change = Change("dir_created", src)
        elif isinstance(event, FileCreatedEvent | FileModifiedEvent | FileClosedEvent):
            change = Change("changed", src)
        if change is not None:
            self._inbox.put(change)


# Open/close-without-write events are left out on purpose: the daemon reads files to
# classify them, and must not wake itself up doing so.
_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]


class _WakeHandler(FileSystemEventHandler):
    def __init__(self, inbox: queue.Queue[Change]) -> None:
        self._inbox = inbox

    def on_any_event(self, event: FileSystemEvent) -> None:
        # Only finished files: ModelStore writes ".ACTIVE.<random>" then renames it, and
        # waking on the temporary would read the old ACTIVE.
        path = _text(event.dest_path or event.src_path)
        if not os.path.basename(path).startswith("."):
            self._inbox.put(Change("wake", path))


def _identity(folder: str) -> tuple[int, int] | None:
    """(device, inode) of ``folder`` when it is a directory, else None."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


class FolderWatcher:
    """Recursive watchdog observer over ``roots``; changes arrive on :attr:`inbox`.

    ``control_dirs`` (e.g. the model store) are watched non-recursively and only wake the
    run loop: another genred command activating a model is noticed at once.

    A watched folder that is deleted, renamed or unmounted silently ends its inotify watch
    (or, renamed, keeps reporting the old path). :meth:`check_roots` notices it (the path
    is gone, is another directory, or its watch thread ended), drops the watch, and
    re-attaches when a directory is back at that path."""

    def __init__(self, roots: Iterable[str | Path], control_dirs: Iterable[Path] = ()) -> None:
        self.roots = [str(Path(r).expanduser().resolve()) for r in roots]
        self.control_dirs = [Path(d) for d in control_dirs]
        self.inbox: queue.Queue[Change] = queue.Queue()
        self._observer = Observer()
        self._handler = _Handler(self.inbox)
        self._watches: dict[str, tuple[ObservedWatch, tuple[int, int] | None]] = {}
        self.detached: set[str] = set()

    def start(self) -> None:
        """Watch every root; raises OSError when one cannot be watched."""
        for root in self.roots:
            self._attach(root)
        for folder in self.control_dirs:
            folder.mkdir(parents=True, exist_ok=True)
            self._observer.schedule(_WakeHandler(self.inbox), str(folder), recursive=False,
                                    event_filter=[FileCreatedEvent, FileMovedEvent,
                                                  FileModifiedEvent, FileClosedEvent])
        self._observer.start()
        log.info("watching %s", ", ".join(self.roots))

    def _attach(self, root: str) -> None:
        identity = _identity(root)
        watch = self._observer.schedule(self._handler, root, recursive=True,
                                        event_filter=_EVENTS)
        self._watches[root] = (watch, identity)
        self.detached.discard(root)

    def _detach(self, root: str) -> None:
        watch, _ = self._watches.pop(root, (None, None))
        if watch is not None:
            with contextlib.suppress(KeyError, OSError):
                self._observer.unschedule(watch)
        self.detached.add(root)

    def _watching(self, root: str) -> bool:
        """The watch on ``root`` still sees that very folder."""
        watch, identity = self._watches[root]
        if identity is None or _identity(root) != identity:
            return False
        return all(e.is_alive() for e in self._observer.emitters if e.watch == watch)

    def attached(self) -> list[str]:
        return [r for r in self.roots if r not in self.detached]

    def check_roots(self) -> tuple[list[str], list[str]]:
        """(roots that stopped being watched now, roots watched again now); cheap (a stat
        per root), called by the run loop on every pass."""
        gone: list[str] = []
        back: list[str] = []
        for root in self.roots:
            if root not in self.detached and not self._watching(root):
                self._detach(root)
                log.warning("watched folder %s was deleted, renamed or unmounted: not "
                            "watching it, its tracks are left as they are; watching resumes "
                            "when it is back", root)
                gone.append(root)
            elif root in self.detached and _identity(root) is not None:
                try:
                    self._attach(root)
                except OSError as e:
                    log.debug("cannot watch %s yet: %s", root, e)
                    continue
                log.warning("watched folder %s is back: watching it again", root)
                back.append(root)
        return gone, back

    def set_roots(self, roots: Iterable[str]) -> tuple[list[str], list[str]]:
        """Watch ``roots`` from now on (a config reload); returns (added, removed). A new
        root that does not exist yet is attached once it does (see check_roots)."""
        wanted = [str(Path(r).expanduser().resolve()) for r in roots]
        added = [r for r in wanted if r not in self.roots]
        removed = [r for r in self.roots if r not in wanted]
        for root in removed:
            self._detach(root)
            self.detached.discard(root)
        self.roots = wanted
        for root in added:
            try:
                self._attach(root)
            except OSError as e:
                self.detached.add(root)  # check_roots attaches it once it exists
                log.warning("cannot watch %s yet (%s): watching it once it is there",
                            root, e.strerror or e)
        return added, removed

    def stop(self) -> None:
        if self._observer.is_alive():
            self._observer.stop()
            self._observer.join(timeout=5)

    def wake(self) -> None:
        """Unblock a :meth:`get` from another thread (e.g. a signal handler)."""
        self.inbox.put(Change("wake", ""))

    def get(self, timeout: float | None) -> Change | None:
        """The next change, blocking up to ``timeout`` seconds (None = until one comes)."""
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self) -> Iterator[Change]:
        """Changes already waiting, without blocking."""
        while True:
            try:
                yield self.inbox.get_nowait()
            except queue.Empty:
                return
