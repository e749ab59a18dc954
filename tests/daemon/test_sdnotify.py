"""sd_notify over a real AF_UNIX datagram socket, as systemd would listen."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.sdnotify import WatchdogPinger, notify, watchdog_seconds


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


def test_pinger_pings_while_the_loop_beats_and_stops_when_it_stalls(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    pinger = WatchdogPinger(0.4, send=lambda m: notify(m, {"NOTIFY_SOCKET": path}))
    pinger.start()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            pinger.beat()
            time.sleep(0.05)
        assert sock.recv(1024) == b"WATCHDOG=1"
        time.sleep(0.6)  # the loop stalls: no beat for longer than the timeout
        while True:  # drain what was sent before the stall was noticed
            sock.settimeout(0.25)
            try:
                sock.recv(1024)
            except TimeoutError:
                break
        sock.settimeout(0.6)
        with pytest.raises(TimeoutError):
            sock.recv(1024)
    finally:
        pinger.stop()


def test_notify_never_blocks_on_a_listener_that_does_not_read(
    listener: tuple[socket.socket, str],
) -> None:
    _, path = listener
    start = time.monotonic()
    results = [notify(f"STATUS={i}", {"NOTIFY_SOCKET": path}) for i in range(200)]
    assert time.monotonic() - start < 2
    assert results[0] is True and results[-1] is False  # the queue filled up: dropped
