"""Fixtures for catalogue tests: a fresh catalogue in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from storage.db import open_catalogue


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return open_catalogue(f"sqlite:///{tmp_path / 'data' / 'catalogue.db'}")
