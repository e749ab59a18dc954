"""Fixtures for catalogue tests: a fresh catalogue on each backend (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from storage.db import open_catalogue


@pytest.fixture
def engine(catalogue_url: str) -> Iterator[Engine]:
    engine = open_catalogue(catalogue_url)
    yield engine
    engine.dispose()
