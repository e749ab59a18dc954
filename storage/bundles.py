"""Model bundle files kept in the catalogue, for worker hosts that do not share the model
store: the daemon (or ``genred models activate``) stores an active bundle's two files; a
worker that finds no bundle for the active version on its own disks fetches them."""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from storage.db import reading, serialise, writing
from storage.schema import ModelBundle


def has_bundle(engine: Engine, version: str) -> bool:
    with Session(reading(engine)) as s:
        return s.scalar(select(ModelBundle.version).where(ModelBundle.version == version)) \
            is not None


def store_bundle(engine: Engine, version: str, meta: str, weights: bytes) -> bool:
    """Keep ``version``'s files (idempotent); True when they were stored now."""
    with Session(writing(engine)) as s, s.begin():
        serialise(s, f"bundle:{version}")
        if s.get(ModelBundle, version) is not None:
            return False
        s.add(ModelBundle(version=version, meta=meta, weights=weights))
        return True


def fetch_bundle(engine: Engine, version: str) -> tuple[str, bytes] | None:
    """(model.json text, model.safetensors bytes) of ``version``, or None."""
    with Session(reading(engine)) as s:
        row = s.get(ModelBundle, version)
        return (row.meta, bytes(row.weights)) if row is not None else None
