"""Fixtures shared by the daemon tests: a fresh library (catalogue, model store, music
folder, environment) per test, and the `genred run` daemons a test starts, cleaned up
after it whatever happened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.daemon_helpers import Daemon, Library


@pytest.fixture
def library(tmp_path: Path) -> Library:
    return Library.create(tmp_path)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.cleanup()
