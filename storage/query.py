"""Read the catalogue: ``genred query`` rows and ``genred stats`` counts.

One SQL statement per query, whatever the filters: each track joined to its current
prediction (index ``ix_predictions_track_current``) and its newest active correction
(index ``ix_corrections_track_active``). The effective genre is the correction if there is
one, else the prediction. A genre filter compares normalised names case-insensitively.

Examples (``genred query`` flags → ``TrackFilter``)::

    --genre jazz --min-confidence 0.8        TrackFilter(genre="jazz", min_confidence=0.8)
    --uncorrected --sort confidence --limit 20
    --status error                           files that could not be read, with the reason
    --path '/music/Various/*'                a glob over the absolute path
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Select, and_, func, literal, literal_column, select, union
from sqlalchemy.orm import aliased

from storage.catalogue import canonical
from storage.db import reading
from storage.schema import Correction, Prediction, Track

SORTS = ("path", "genre", "confidence", "mtime", "status", "model", "seen", "duration")
COLUMNS = ("path", "genre", "predicted_genre", "confidence", "corrected_genre",
           "correction_source", "model", "status", "error", "duration", "format",
           "probabilities", "size", "mtime", "last_seen")


@dataclass(frozen=True)
class TrackFilter:
    genre: str | tuple[str, ...] | None = None  # any of these names, case-insensitive
    min_confidence: float | None = None
    max_confidence: float | None = None
    corrected: bool | None = None  # True: only corrected; False: only uncorrected
    status: str | None = None
    path_glob: str | None = None
    model: str | None = None
    limit: int | None = None
    sort: str = "path"
    descending: bool = False


def _base() -> Select[*tuple[Any, ...]]:
    pred = aliased(Prediction, name="p")
    corr = aliased(Correction, name="c")
    newest_active = (
        select(func.max(Correction.id))
        .where(Correction.track_id == Track.id, Correction.active)
        .correlate(Track).scalar_subquery()
    )
    effective = func.coalesce(corr.genre, pred.genre)
    return (
        select(
            Track.path, effective.label("genre"), pred.genre.label("predicted_genre"),
            pred.confidence, corr.genre.label("corrected_genre"),
            corr.source.label("correction_source"), pred.model_version.label("model"),
            Track.status, Track.error, Track.duration, Track.format,
            # Probabilities go out as the stored JSON text: no decode/encode per row.
            literal_column("p.probabilities").label("probabilities"),
            Track.size, Track.mtime, literal_column("tracks.last_seen").label("last_seen"),
        )
        .select_from(Track)
        .outerjoin(pred, and_(pred.track_id == Track.id, pred.current))
        .outerjoin(corr, corr.id == newest_active)
    )


def _glob(pattern: str) -> str:
    """A path glob as the user typed it, made absolute unless it starts with a wildcard."""
    return pattern if pattern[:1] in ("*", "?", "[") else canonical(pattern)


def _genre_filter(effective: Any, genre: str | tuple[str, ...]) -> list[Any]:
    """Candidates from the NOCASE genre indexes (current predictions, active corrections),
    then the exact effective-genre test: index-driven instead of a scan of every track."""
    names = sorted({n.lower() for n in ((genre,) if isinstance(genre, str) else genre)})
    nocase = [n.collate("NOCASE") for n in (Prediction.genre, Correction.genre)]
    candidates = union(
        select(Prediction.track_id).where(Prediction.current, nocase[0].in_(names)),
        select(Correction.track_id).where(Correction.active, nocase[1].in_(names)),
    )
    return [Track.id.in_(candidates), func.lower(effective).in_(names)]


def build(f: TrackFilter) -> Select[*tuple[Any, ...]]:
    """The one SELECT for filter ``f`` (columns named as in ``COLUMNS``)."""
    query = _base()
    cols = query.selected_columns
    if f.genre is not None:
        query = query.where(*_genre_filter(cols.genre, f.genre))
    if f.min_confidence is not None:
        query = query.where(cols.confidence >= f.min_confidence)
    if f.max_confidence is not None:
        query = query.where(cols.confidence <= f.max_confidence)
    if f.corrected is not None:
        has = cols.corrected_genre.is_not(None)
        query = query.where(has if f.corrected else ~has)
    if f.status is not None:
        query = query.where(Track.status == f.status)
    if f.path_glob:
        query = query.where(Track.path.op("GLOB")(_glob(f.path_glob)))
    if f.model is not None:
        query = query.where(cols.model == f.model)
    key = {"path": Track.path, "genre": cols.genre, "confidence": cols.confidence,
           "mtime": Track.mtime, "status": Track.status, "model": cols.model,
           "seen": cols.last_seen, "duration": Track.duration}[f.sort]
    query = query.order_by(key.desc() if f.descending else key.asc(), Track.path)
    if f.limit is not None:
        query = query.limit(f.limit)
    return query


def _row(mapping: Any) -> dict[str, Any]:
    row = dict(mapping)
    probs = row["probabilities"]
    row["probabilities"] = json.loads(probs) if isinstance(probs, str) else probs
    seen = row["last_seen"]
    row["last_seen"] = seen.isoformat() if isinstance(seen, datetime) else seen
    return row


def query_tracks(engine: Engine, f: TrackFilter) -> list[dict[str, Any]]:
    """Rows for ``f`` as dicts with the keys in ``COLUMNS`` (probabilities decoded)."""
    with reading(engine).connect() as conn:
        return [_row(r) for r in conn.execute(build(f)).mappings()]


def _json_object(sub: Any) -> Any:
    pairs: list[Any] = []
    for name in COLUMNS:
        value = func.json(sub.c[name]) if name == "probabilities" else sub.c[name]
        pairs += [literal(name), value]
    return func.json_object(*pairs)


def query_json(engine: Engine, f: TrackFilter) -> str:
    """``query_tracks`` as a JSON array text. On SQLite the database builds each row's
    JSON itself (100,000-track catalogues answer a genre filter in tens of ms); other
    databases go through Python."""
    if engine.dialect.name != "sqlite":
        return json.dumps(query_tracks(engine, f), ensure_ascii=False)
    sub = build(f).subquery()
    with reading(engine).connect() as conn:
        rows = conn.execute(select(_json_object(sub))).scalars()
        return "[" + ",".join(rows) + "]"


def stats(engine: Engine) -> dict[str, Any]:
    """Counts: tracks per effective genre, per status, per model (current predictions),
    corrections per source, and the totals."""
    sub = _base().subquery()
    with reading(engine).connect() as conn:
        def counts(column: Any) -> dict[str, int]:
            rows = conn.execute(select(column, func.count()).group_by(column)
                                .order_by(func.count().desc(), column))
            return {str(k) if k is not None else "(none)": int(n) for k, n in rows}

        return {
            "tracks": int(conn.scalar(select(func.count(Track.id))) or 0),
            "genres": counts(sub.c.genre),
            "status": counts(sub.c.status),
            "models": counts(sub.c.model),
            "corrected": int(conn.scalar(select(func.count()).select_from(sub)
                                         .where(sub.c.corrected_genre.is_not(None))) or 0),
            "label_sources": counts(sub.c.correction_source),
        }
