"""sd_notify over a real AF_UNIX datagram socket, as systemd would listen."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.sdnotify import WatchdogPinger, notify, thread_io, watchdog_seconds


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def test_notify_sends_to_a_path_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    assert notify("READY=1\nSTATUS=watching", {"NOTIFY_SOCKET": path})
    assert sock.recv(1024) == b"READY=1\nSTATUS=watching"


def test_notify_sends_to_an_abstract_socket() -> None:
    name = f"genred-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(1024) == b"READY=1"


def test_notify_without_socket_is_a_no_op() -> None:
    assert notify("READY=1", {}) is False


def test_notify_to_a_dead_socket_reports_failure(tmp_path: Path) -> None:
    assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody.sock")}) is False


def test_watchdog_seconds_reads_usec_and_respects_pid() -> None:
    assert watchdog_seconds({"WATCHDOG_USEC": "4000000"}) == 4.0
    own = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_seconds(own) == 2.0
    assert watchdog_seconds({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_seconds({}) is None
    assert watchdog_seconds({"WATCHDOG_USEC": "0"}) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _received(sock: socket.socket) -> list[bytes]:
    """Everything waiting on the socket now (sends are synchronous: nothing is late)."""
    got = []
    sock.setblocking(False)
    try:
        while True:
            got.append(sock.recv(1024))
    except BlockingIOError:
        return got
    finally:
        sock.setblocking(True)


def test_pinger_pings_while_the_loop_beats_and_stops_when_it_stalls(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    clock = FakeClock()
    pinger = WatchdogPinger(4.0, send=lambda m: notify(m, {"NOTIFY_SOCKET": path}),
                            clock=clock, progress=lambda: None)
    assert pinger.check() and _received(sock) == [b"WATCHDOG=1"]
    clock.now += 3.0
    pinger.beat()
    clock.now += 3.5  # 3.5 s since the last beat: within the 4 s timeout
    assert pinger.check() and _received(sock) == [b"WATCHDOG=1"]
    clock.now += 1.0  # 4.5 s without a beat: the loop is stuck
    assert not pinger.check() and _received(sock) == []
    pinger.beat()
    assert pinger.check() and _received(sock) == [b"WATCHDOG=1"]


def test_pinger_thread_pings_on_a_real_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    pinger = WatchdogPinger(0.4, send=lambda m: notify(m, {"NOTIFY_SOCKET": path}))
    pinger.start()
    try:
        pinger.beat()
        assert sock.recv(1024) == b"WATCHDOG=1"
    finally:
        pinger.stop()


def test_a_thread_busy_with_slow_io_feeds_the_watchdog_a_stuck_one_does_not(
    listener: tuple[socket.socket, str], tmp_path: Path
) -> None:
    """A tag write to a slow share: the loop's thread beats no one but keeps moving bytes
    (its real /proc I/O counters); then it blocks for good (a hung mount, a deadlock)."""
    sock, path = listener
    clock = FakeClock()
    wrote, stuck, release = threading.Event(), threading.Event(), threading.Event()
    step = threading.Event()

    def slow_copy() -> None:
        with (tmp_path / "copy.tmp").open("wb") as out:
            for _ in range(3):
                step.wait()
                step.clear()
                out.write(b"x" * 65536)
                out.flush()
                wrote.set()
        stuck.set()
        release.wait()  # stuck: no beat, no I/O

    worker = threading.Thread(target=slow_copy)
    worker.start()
    try:
        wait_native = time.monotonic() + 5
        while worker.native_id is None and time.monotonic() < wait_native:
            time.sleep(0.01)
        pinger = WatchdogPinger(4.0, send=lambda m: notify(m, {"NOTIFY_SOCKET": path}),
                                clock=clock, progress=thread_io(worker.native_id or 0))
        for _ in range(3):  # 5 s between checks, longer than the timeout, but bytes moved
            clock.now += 5.0
            wrote.clear()
            step.set()
            assert wrote.wait(5)
            assert pinger.check(), "slow but moving I/O must feed the watchdog"
            assert _received(sock) == [b"WATCHDOG=1"]
        assert stuck.wait(5)
        clock.now += 2.0
        assert pinger.check()  # within the timeout of the last progress
        _received(sock)
        clock.now += 3.0
        assert not pinger.check() and _received(sock) == []  # 5 s, no bytes: stuck
    finally:
        release.set()
        worker.join()


def test_notify_never_blocks_on_a_listener_that_does_not_read(
    listener: tuple[socket.socket, str],
) -> None:
    _, path = listener
    start = time.monotonic()
    results = [notify(f"STATUS={i}", {"NOTIFY_SOCKET": path}) for i in range(200)]
    assert time.monotonic() - start < 2
    assert results[0] is True and results[-1] is False  # the queue filled up: dropped
