"""The catalogue's faults as types: SQLite's errors become CatalogueFault types with one
line saying what to do, raised by the engine itself, wherever the failing statement is."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from storage import catalogue
from storage.db import open_catalogue
from storage.faults import (
    CatalogueBusy,
    CatalogueDamaged,
    CatalogueError,
    CatalogueFault,
    CatalogueFull,
    describe,
)


def test_a_file_that_is_not_a_database_is_catalogue_damaged(tmp_path: Path) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("not a database\n" * 50)
    with pytest.raises(CatalogueDamaged, match="is not a genred catalogue") as caught:
        open_catalogue(f"sqlite:///{notes}")
    assert "\n" not in str(caught.value)
    assert notes.read_text().startswith("not a database")


def test_a_fault_mid_use_is_raised_as_its_type_and_stays_an_operational_error(
    tmp_path: Path,
) -> None:
    db = tmp_path / "c.db"
    engine = open_catalogue(f"sqlite:///{db}")
    engine.dispose()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout = 50")  # a short wait for this test
            with pytest.raises(CatalogueBusy, match="is locked") as caught:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    fault = caught.value
    assert isinstance(fault, OperationalError) and isinstance(fault, CatalogueError)
    assert isinstance(fault.orig, sqlite3.OperationalError)  # the driver's, for retries
    again = pickle.loads(pickle.dumps(fault))
    assert type(again) is CatalogueBusy and str(again) == str(fault)
    catalogue.mark_pending(engine, "/m/a.mp3", 1, 1.0)  # the engine is usable afterwards
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM tracks")).scalar() == 1


class _Driver(Exception):
    def __init__(self, text: str, name: str) -> None:
        super().__init__(text)
        self.sqlite_errorname = name


def test_an_io_error_on_a_disk_with_room_is_not_called_full(tmp_path: Path) -> None:
    found = describe(_Driver("disk I/O error", "SQLITE_IOERR_WRITE"), tmp_path / "c.db", 30)
    assert found is not None and found[0] is not CatalogueFull
    assert issubclass(found[0], CatalogueFault) and "I/O error" in found[1]
    full = describe(_Driver("database or disk is full", "SQLITE_FULL"), tmp_path / "c.db", 30)
    assert full is not None and full[0] is CatalogueFull and "free some space" in full[1]


def test_a_constraint_is_not_a_catalogue_fault(tmp_path: Path) -> None:
    assert describe(_Driver("NOT NULL constraint failed: predictions.confidence",
                            "SQLITE_CONSTRAINT_NOTNULL"), tmp_path / "c.db", 30) is None
