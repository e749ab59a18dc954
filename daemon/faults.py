"""What the daemon does when the world fails under it: name the fault, back off, resume.

The run loop hands every exception of one pass to :class:`FaultGuard`. A fault is logged
once (what happened and what to do), then retried after 1, 2, 4 … 60 seconds while it
lasts; the first pass that works again logs that it cleared. Nothing is lost meanwhile:
the queue is the catalogue (files in hand stay ``pending``), watcher events wait in the
daemon, and a rescan after the fault finds anything that changed.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0
UNEXPECTED = "unexpected"


@dataclass(frozen=True)
class Fault:
    kind: str  # "catalogue locked", "disk full", ... (one message per kind and episode)
    what: str  # one line: what happened
    advice: str  # one line: what to do

    def line(self) -> str:
        return f"{self.what}; {self.advice}"


def _db_message(exc: BaseException) -> str | None:
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError):
        return str(exc.orig)
    return None


def _full(path: Path | None) -> bool:
    """True when the file system holding ``path`` has (almost) no room left."""
    if path is None:
        return False
    try:
        st = os.statvfs(path.parent if not path.is_dir() else path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def describe(exc: BaseException, db_file: Path | None = None,
             busy_timeout: float = 30.0) -> Fault:
    """The fault behind ``exc``, in the user's terms; ``db_file`` is the SQLite catalogue
    (to tell a full disk from other I/O errors)."""
    from sqlalchemy.exc import IntegrityError

    from classifier.bundle import BundleError

    where = f"the catalogue {db_file}" if db_file is not None else "the catalogue"
    message = _db_message(exc)
    if isinstance(exc, IntegrityError):
        return Fault("catalogue refused", f"{where} refused a write ({message})",
                     "check the catalogue's triggers and constraints (genred's own schema "
                     "has none that this write breaks)")
    if message is not None:
        text = message.lower()
        if "locked" in text or "busy" in text:
            return Fault("catalogue locked",
                         f"{where} is locked by another program for longer than "
                         f"busy_timeout_seconds ({busy_timeout:g} s)",
                         "find and end the program holding a write transaction on it "
                         f"(e.g. `fuser {db_file or 'CATALOGUE'}`); genred waits for it")
        if "full" in text or (("i/o" in text or "disk" in text) and _full(db_file)):
            return Fault("disk full", f"the disk holding {where} is full ({message})",
                         "free some space there; genred resumes by itself")
        if "readonly" in text or "read-only" in text:
            return Fault("catalogue read-only", f"{where} cannot be written ({message})",
                         "make it and its folder writable by this user")
        if "i/o" in text:
            return Fault("i/o error", f"{where}: disk I/O error ({message})",
                         "check the disk (dmesg, smartctl); genred retries")
        if "unable to open" in text:
            return Fault("catalogue unreachable", f"{where} cannot be opened ({message})",
                         "check that its folder exists and is writable")
        return Fault("catalogue error", f"{where} failed: {message}",
                     "see the message; genred retries")
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return Fault("disk full", f"no space left: {exc}",
                         "free some space there; genred resumes by itself")
        if exc.errno == errno.EIO:
            return Fault("i/o error", f"I/O error: {exc}",
                         "check the disk (dmesg, smartctl); genred retries")
        if exc.errno == errno.EROFS:
            return Fault("read-only", f"read-only file system: {exc}",
                         "remount it read-write; genred retries")
        return Fault(f"os error {exc.errno}", f"{exc}", "see the message; genred retries")
    if isinstance(exc, BundleError):
        return Fault("model unusable", f"the model cannot be used: {exc}",
                     "activate a working model (`genred models activate starter`)")
    return Fault(UNEXPECTED, f"unexpected {type(exc).__name__}: {exc}",
                 "please report it with the traceback above; genred retries")


class FaultGuard:
    """Logs each fault once per episode and says how long to wait before the next try."""

    def __init__(self, describe_fault: Callable[[BaseException], Fault],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._describe = describe_fault
        self._clock = clock
        self.current: Fault | None = None
        self.delay = 0.0
        self._since = 0.0

    def failed(self, exc: BaseException) -> float:
        """Record a failed pass; returns the seconds to wait before the next."""
        fault = self._describe(exc)
        if self.current is None or fault.kind != self.current.kind:
            self.current, self._since, self.delay = fault, self._clock(), FIRST_RETRY_SECONDS
            log.error("%s. Retrying with back-off (at most every %.0f s).", fault.line(),
                      MAX_RETRY_SECONDS, exc_info=exc if fault.kind == UNEXPECTED else None)
        else:
            self.delay = min(MAX_RETRY_SECONDS, self.delay * 2)
            log.debug("still failing (%s): next try in %.0f s", fault.what, self.delay)
        return self.delay

    def succeeded(self) -> bool:
        """Record a pass that worked; True when it ended a fault (logged)."""
        if self.current is None:
            return False
        log.warning("resumed: %s cleared after %.0f s", self.current.kind,
                    self._clock() - self._since)
        self.current = None
        return True

    def status(self) -> str:
        return f"{self.current.kind}; retrying" if self.current else ""


def describe_short(exc: BaseException) -> str:
    """A fault in a few words for systemd's STATUS line."""
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0][:120] if text else type(exc).__name__
