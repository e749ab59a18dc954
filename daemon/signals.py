"""Signals for `genred run` without work in a signal handler.

A Python signal handler runs in the main thread between two bytecodes of whatever it
interrupted; if it takes a lock that code holds (logging's, a queue's, an Event's) the
daemon deadlocks. So the handlers here do nothing at all: ``signal.set_wakeup_fd`` makes
the interpreter's C-level handler write the signal number to a socket, and an ordinary
thread reads it and calls the daemon's callbacks (which may log, set events, take locks).

- SIGTERM / SIGINT: ``on_stop`` once; a second one, or the run still going
  ``STOP_GRACE_SECONDS`` later (``START_GRACE_SECONDS`` while the daemon is still starting,
  e.g. importing torch), ends the process at once (``os._exit``): the catalogue is the
  queue, so what was in hand stays pending and is done once at the next start.
- SIGHUP: ``on_reload`` (re-read the config).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNALS = (signal.SIGHUP,)
STOP_GRACE_SECONDS = 15.0  # systemd's TimeoutStopSec=30 leaves room for this
START_GRACE_SECONDS = 2.0  # nothing is in hand yet: a stop need not wait for imports
EXIT_FORCED = 1
_CLOSE = b"\0"  # not a signal number: tells the reader thread to end


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """The Python-level handler: nothing (the wakeup fd carries the signal)."""


class SignalInbox:
    """Installs the handlers and the wakeup fd on :meth:`open` (main thread only) and
    dispatches signals from its own thread until :meth:`close`."""

    def __init__(self, on_stop: Callable[[int], None], on_reload: Callable[[], None],
                 started: Callable[[], bool] = lambda: True) -> None:
        self.on_stop = on_stop
        self.on_reload = on_reload
        self.started = started  # False while starting: a stop then waits START_GRACE
        self._read, self._write = socket.socketpair()
        self._write.setblocking(False)
        self._previous: dict[int, Any] = {}
        self._previous_fd = -1
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="signals", daemon=True)

    def open(self) -> SignalInbox:
        self._previous_fd = signal.set_wakeup_fd(self._write.fileno(),
                                                 warn_on_full_buffer=False)
        for signum in (*STOP_SIGNALS, *RELOAD_SIGNALS):
            self._previous[signum] = signal.signal(signum, _ignore)
        self._thread.start()
        return self

    def close(self) -> None:
        """Restore the previous handlers and stop the reader thread. A stop deadline
        already running stays armed until the process exits: an exit that hangs (a thread
        that never ends) still ends within the grace time."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_fd)
        with contextlib.suppress(OSError):
            self._write.send(_CLOSE)
        self._thread.join(timeout=5)
        self._read.close()
        self._write.close()

    def __enter__(self) -> SignalInbox:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self) -> None:
        while True:
            try:
                data = self._read.recv(64)
            except OSError:
                return
            for signum in data:
                if signum == _CLOSE[0]:
                    return
                self._dispatch(signum)

    def _dispatch(self, signum: int) -> None:
        if signum in STOP_SIGNALS:
            if self._stopping:
                self._force(f"second {signal.Signals(signum).name}")
                return
            self._stopping = True
            self.on_stop(signum)
            threading.Thread(target=self._deadline, name="stop-deadline", daemon=True).start()
        elif signum in RELOAD_SIGNALS:
            self.on_reload()

    def _deadline(self) -> None:
        end = time.monotonic() + STOP_GRACE_SECONDS
        since = time.monotonic()
        while time.monotonic() < end:
            time.sleep(0.1)
            if self.started():
                since = time.monotonic()
            elif time.monotonic() - since >= START_GRACE_SECONDS:
                log.info("stopped while starting")
                logging.shutdown()
                os._exit(0)
        self._force(f"still running {STOP_GRACE_SECONDS:.0f} s after the stop request")

    def _force(self, why: str) -> None:
        log.error("%s: exiting now; files in hand stay queued and are done at the next "
                  "start", why)
        logging.shutdown()
        os._exit(EXIT_FORCED)
