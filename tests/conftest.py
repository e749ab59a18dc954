"""Catalogues on both backends: a SQLite file in tmp_path, and a PostgreSQL database of its
own per test (created from the server at $GENRED_TEST_PG, default
``postgresql://postgres@127.0.0.1:5432/test``, and dropped afterwards), so no test ever sees
another's rows.

Where no PostgreSQL answers, the PostgreSQL half skips, saying why; under ``CI=true`` it
fails instead: CI must run it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ADMIN_URL = os.environ.get("GENRED_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
_unreachable: list[str] = []  # the reason, once known


def _admin_connect() -> object:
    import psycopg

    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)


def _require_postgres() -> None:
    if _unreachable:
        _missing(_unreachable[0])
    try:
        _admin_connect().close()  # type: ignore[attr-defined]
    except Exception as e:  # no driver, no server, refused: all mean "no PostgreSQL here"
        _unreachable.append(f"no PostgreSQL at {ADMIN_URL}: {type(e).__name__}: {e}".strip())
        _missing(_unreachable[0])


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the PostgreSQL tests must run; see .ci/run)")
    pytest.skip(reason)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped after the test."""
    _require_postgres()
    name = f"genred_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_connect()
    admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
    base = ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]
        admin.close()  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgresql"])
def catalogue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A catalogue URL on each backend in turn (tests using it run twice)."""
    if request.param == "sqlite":
        (tmp_path / "data").mkdir(exist_ok=True)
        return f"sqlite:///{tmp_path / 'data' / 'catalogue.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
