"""`genred migrate`: copy a catalogue into another database (SQLite to PostgreSQL, say).

Both ends are brought to the current schema first; the target must hold no tracks. Rows are
copied table by table in foreign-key order with their ids, in chunks, each table in one
transaction, then every count is compared. Timestamps SQLite stored without a zone are
UTC and are written as such. What is not copied: the ``workers`` and ``claim_skips`` rows
(processes of the old setup) and the claims on tracks; the scheduler's job row (the daemon
writes it again at its first start). The source is only read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Engine, Table, func, select, text

from storage.db import open_catalogue
from storage.schema import Base

# Foreign-key order; every table genred keeps except the per-process ones.
TABLES = ("model_versions", "model_bundles", "state", "tracks", "training_runs",
          "corrections", "predictions", "tag_backups")
CHUNK = 2000


class TransferError(Exception):
    """The copy cannot start (target not empty, same database) or did not add up."""


def copy_catalogue(source_url: str, target_url: str) -> dict[str, int]:
    """Copy every table of ``TABLES``; returns the row count of each."""
    if source_url == target_url:
        raise TransferError("--from and --to name the same catalogue")
    source, target = open_catalogue(source_url), open_catalogue(target_url)
    try:
        with target.connect() as conn:
            if conn.scalar(select(func.count()).select_from(_table("tracks"))):
                raise TransferError(f"{target.url} already holds tracks; give an empty "
                                    "database")
        counts = {name: _copy(source, target, _table(name)) for name in TABLES}
        _reset_sequences(target)
        _check(source, target, counts)
        return counts
    finally:
        source.dispose()
        target.dispose()


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def _copy(source: Engine, target: Engine, table: Table) -> int:
    stamps = [c.name for c in table.columns if isinstance(c.type, DateTime)]
    n = 0
    order = list(table.primary_key.columns)
    with source.connect() as src, target.begin() as dst:
        dst.execute(table.delete())  # rows the target's own first open made (state, ...)
        result = src.execution_options(yield_per=CHUNK).execute(
            select(table).order_by(*order))
        for chunk in result.mappings().partitions(CHUNK):
            rows = [_row(dict(r), table, stamps) for r in chunk]
            dst.execute(table.insert(), rows)
            n += len(rows)
    return n


def _row(row: dict[str, Any], table: Table, stamps: list[str]) -> dict[str, Any]:
    for name in stamps:
        value = row[name]
        if isinstance(value, datetime) and value.tzinfo is None:
            row[name] = value.replace(tzinfo=UTC)  # SQLite keeps UTC without a zone
    if table.name == "tracks":
        row["claimed_by"] = row["lease_until"] = None
    return row


def _reset_sequences(target: Engine) -> None:
    """PostgreSQL hands out ids from sequences, which explicit ids do not advance."""
    if target.dialect.name != "postgresql":
        return
    with target.begin() as conn:
        for name in TABLES:
            table = _table(name)
            keys = list(table.primary_key.columns)
            if len(keys) != 1 or not keys[0].autoincrement or keys[0].type.python_type is not int:
                continue
            conn.execute(text(
                f"SELECT setval(pg_get_serial_sequence('{name}', '{keys[0].name}'), "
                f"COALESCE((SELECT max({keys[0].name}) FROM {name}), 0) + 1, false)"))


def _check(source: Engine, target: Engine, counts: dict[str, int]) -> None:
    for name, copied in counts.items():
        table = _table(name)
        with source.connect() as src, target.connect() as dst:
            want = src.scalar(select(func.count()).select_from(table))
            got = dst.scalar(select(func.count()).select_from(table))
        if not want == got == copied:
            raise TransferError(f"table {name}: {want} rows in the source, {copied} copied, "
                                f"{got} in the target")
