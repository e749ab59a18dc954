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


def _create_database(template: str | None = None) -> str:
    name = f"genred_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_connect()
    try:
        suffix = f' TEMPLATE "{template}"' if template else ""
        admin.execute(f'CREATE DATABASE "{name}"{suffix}')  # type: ignore[attr-defined]
    finally:
        admin.close()  # type: ignore[attr-defined]
    return name


def _drop_database(name: str) -> None:
    admin = _admin_connect()
    try:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]
    finally:
        admin.close()  # type: ignore[attr-defined]


def _url(name: str) -> str:
    return f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"


@pytest.fixture(scope="session")
def _postgres_template() -> Iterator[str]:
    """A database migrated to the newest schema once; each test gets a copy (0.1 s instead
    of running the migrations again)."""
    from storage.db import open_catalogue

    _require_postgres()
    name = _create_database()
    open_catalogue(_url(name)).dispose()  # no connection may stay open on a template
    try:
        yield name
    finally:
        _drop_database(name)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database (no tables), dropped after the test."""
    _require_postgres()
    name = _create_database()
    try:
        yield _url(name)
    finally:
        _drop_database(name)


@pytest.fixture
def postgres_catalogue_url(_postgres_template: str) -> Iterator[str]:
    """The URL of a PostgreSQL database of this test's own, at the newest schema, empty."""
    name = _create_database(template=_postgres_template)
    try:
        yield _url(name)
    finally:
        _drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalogue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A catalogue URL on each backend in turn (tests using it run twice); on PostgreSQL
    the schema is already there (on SQLite the first open creates it)."""
    if request.param == "sqlite":
        (tmp_path / "data").mkdir(exist_ok=True)
        return f"sqlite:///{tmp_path / 'data' / 'catalogue.db'}"
    url: str = request.getfixturevalue("postgres_catalogue_url")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_catalogue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL naming an empty database on each backend (for migration tests)."""
    if request.param == "sqlite":
        (tmp_path / "data").mkdir(exist_ok=True)
        return f"sqlite:///{tmp_path / 'data' / 'catalogue.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
