"""sd_notify without a dependency: READY=1, STATUS=..., WATCHDOG=1 to systemd.

systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket) to services
with ``Type=notify``; outside systemd every call here is a cheap no-op. The watchdog pinger
pings only while the run loop keeps calling :meth:`WatchdogPinger.beat`, so a wedged loop
stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send one notification; True if a socket was configured and the send worked."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            # Never block the daemon on a listener that does not read.
            sock.send(message.encode(), socket.MSG_DONTWAIT)
    except BlockingIOError:
        log.debug("sd_notify: %s is not reading; dropped %r", address, message)
        return False
    except OSError as e:
        log.warning("sd_notify to %s failed: %s", env.get("NOTIFY_SOCKET"), e)
        return False
    return True


def watchdog_seconds(environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout systemd expects pings within, or None when there is none."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1_000_000


def thread_io(native_id: int) -> Callable[[], int | None]:
    """Bytes thread ``native_id`` has read and written so far (rchar + wchar from
    /proc/self/task/<id>/io), as a callable; None where the kernel does not say."""
    path = f"/proc/self/task/{native_id}/io"

    def read() -> int | None:
        try:
            with open(path, "rb") as fh:
                counters = dict(line.split(b":", 1) for line in fh.read().splitlines())
            return int(counters[b"rchar"]) + int(counters[b"wchar"])
        except (OSError, KeyError, ValueError):
            return None

    return read


class WatchdogPinger:
    """Pings WATCHDOG=1 every half timeout while the run loop is alive.

    Alive means: it called :meth:`beat` within the timeout (between files, while waiting
    for decodes, during walks and back-off pauses), or its thread is moving bytes (the
    ``progress`` counter, by default the main thread's I/O, advanced since the last
    check): a tag write copying a large file to a slow network share beats no one, but
    reads and writes all the while. A loop that is really stuck (a deadlock, a hung mount)
    does neither, and systemd restarts the service one timeout later."""

    def __init__(
        self,
        timeout: float,
        send: Callable[[str], bool] = notify,
        clock: Callable[[], float] = time.monotonic,
        progress: Callable[[], int | None] | None = None,
    ) -> None:
        self.timeout = timeout
        self._send = send
        self._clock = clock
        self._progress = progress or thread_io(threading.main_thread().native_id or 0)
        self._last_beat = clock()
        self._last_mark = self._progress()
        self._silent = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)

    def beat(self) -> None:
        """Called by the run loop: "I am alive"."""
        self._last_beat = self._clock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def check(self) -> bool:
        """One decision: ping if the loop is alive; True when it pinged."""
        now = self._clock()
        mark = self._progress()
        if mark is not None and mark != self._last_mark:
            self._last_mark = mark
            self._last_beat = max(self._last_beat, now)  # moving bytes: working, not stuck
        if now - self._last_beat < self.timeout:
            if self._silent:
                log.warning("run loop alive again: pinging the watchdog")
                self._silent = False
            return self._send("WATCHDOG=1")
        if not self._silent:
            log.warning("run loop stuck for %.0f s (no progress, no I/O): not pinging the "
                        "watchdog; systemd restarts the service", now - self._last_beat)
            self._silent = True
        return False

    def _run(self) -> None:
        while not self._stop.wait(self.timeout / 2):
            self.check()
