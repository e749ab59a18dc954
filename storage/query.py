"""Read the catalogue: ``genred query`` rows and ``genred stats`` counts.

One SQL statement per query, whatever the filters: each track joined to its current
prediction (index ``ix_predictions_track_current``) and its newest active correction
(index ``ix_corrections_track_active``). The effective genre is the correction if there is
one, else the prediction. A genre filter compares normalised names case-insensitively.

Examples (``genred query`` flags → ``TrackFilter``)::

    --genre jazz --min-confidence 0.8        TrackFilter(genre="jazz", min_confidence=0.8)
    --uncorrected --sort confidence --limit 20
    --status error                           files that could not be read, with the reason
    --path /music/Various                    that folder (exactly: case-sensitive, no
                                             wildcards) or that one file
    --artist "miles davis" --album "kind of blue"   the tags read at scan time (artist
                                             or album artist; case-insensitive, whole)

Timestamps (``mtime``, ``last_seen``) go out as ISO 8601 in UTC to the second
(``2026-11-25T11:37:04+00:00``). Sorting puts rows without a value (an unreadable or
pending track has no confidence, genre, model or duration) last in both directions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Engine,
    Integer,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
    union,
)
from sqlalchemy.orm import Session, aliased

from storage.catalogue import canonical
from storage.db import reading
from storage.genres import genres_or
from storage.paths import MARK, from_db, in_folder
from storage.schema import Correction, Prediction, Track

SORTS = ("path", "genre", "confidence", "mtime", "status", "model", "seen", "duration",
         "artist", "album")
COLUMNS = ("path", "genre", "predicted_genre", "confidence", "corrected_genre",
           "correction_source", "model", "status", "error", "duration", "format",
           "probabilities", "size", "mtime", "last_seen", "genres", "title", "artist",
           "album", "album_artist", "track_number", "year")
# Sort keys a track always has; every other key may be NULL and then sorts last.
_NOT_NULL_SORTS = ("path", "status")


@dataclass(frozen=True)
class TrackFilter:
    genre: str | tuple[str, ...] | None = None  # any of these names, case-insensitive
    min_confidence: float | None = None
    max_confidence: float | None = None
    corrected: bool | None = None  # True: only corrected; False: only uncorrected
    status: str | None = None
    path: str | None = None  # a folder (every track under it) or a file: storage.paths
    model: str | None = None
    limit: int | None = None
    sort: str = "path"
    descending: bool = False
    offset: int | None = None  # skip this many rows first (pages of the web API)
    ids: tuple[int, ...] | None = None  # only these track ids (the web page's rows)
    artist: str | None = None  # the artist or album artist tag, case-insensitive
    album: str | None = None  # the album tag, case-insensitive


def _base(with_id: bool = False) -> Select[*tuple[Any, ...]]:
    pred = aliased(Prediction, name="p")
    corr = aliased(Correction, name="c")
    newest_active = (
        select(func.max(Correction.id))
        .where(Correction.track_id == Track.id, Correction.active)
        .correlate(Track).scalar_subquery()
    )
    effective = func.coalesce(corr.genre, pred.genre)
    # Every effective genre, main first: the stored list of the correction if there is one,
    # else the prediction's (NULL in rows older than the lists: the one genre).
    genres = case((corr.id.is_not(None), literal_column("c.genres")),
                  else_=literal_column("p.genres"))
    return (
        select(
            Track.path, effective.label("genre"), genres.label("genres"),
            pred.genre.label("predicted_genre"),
            pred.confidence, corr.genre.label("corrected_genre"),
            corr.source.label("correction_source"), pred.model_version.label("model"),
            Track.status, Track.error, Track.duration, Track.format,
            # Probabilities go out as the stored JSON text: no decode/encode per row.
            literal_column("p.probabilities").label("probabilities"),
            Track.size, Track.mtime, literal_column("tracks.last_seen").label("last_seen"),
            Track.title, Track.artist, Track.album, Track.album_artist, Track.track_number,
            Track.year,
            # Not in COLUMNS (the CLI's output): the web API's handle on a track.
            *([Track.id.label("id")] if with_id else []),
        )
        .select_from(Track)
        .outerjoin(pred, and_(pred.track_id == Track.id, pred.current))
        .outerjoin(corr, corr.id == newest_active)
    )


def _genre_filter(effective: Any, genre: str | tuple[str, ...]) -> list[Any]:
    """Candidates from the ``lower(genre)`` indexes (current predictions, active
    corrections), then the exact effective-genre test: index-driven instead of a scan of
    every track. ``lower()`` folds ASCII letters on both backends (SQLite's own, and
    PostgreSQL's under the columns' "C" collation), so both answer alike."""
    names = sorted({_ascii_lower(n) for n in ((genre,) if isinstance(genre, str) else genre)})
    candidates = union(
        select(Prediction.track_id).where(Prediction.current,
                                          func.lower(Prediction.genre).in_(names)),
        select(Correction.track_id).where(Correction.active,
                                          func.lower(Correction.genre).in_(names)),
    )
    return [Track.id.in_(candidates), func.lower(effective).in_(names)]


def _ascii_lower(name: str) -> str:
    return "".join(c.lower() if c.isascii() else c for c in name)


def build(f: TrackFilter, with_id: bool = False) -> Select[*tuple[Any, ...]]:
    """The one SELECT for filter ``f`` (columns named as in ``COLUMNS``, plus ``id``
    when asked)."""
    query = _base(with_id)
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
    if f.path:
        query = query.where(in_folder(Track.path, canonical(f.path)))
    if f.model is not None:
        query = query.where(cols.model == f.model)
    if f.ids is not None:
        query = query.where(Track.id.in_(f.ids))
    if f.artist is not None:
        name = _ascii_lower(f.artist)
        query = query.where((func.lower(Track.artist) == name)
                            | (func.lower(Track.album_artist) == name))
    if f.album is not None:
        query = query.where(func.lower(Track.album) == _ascii_lower(f.album))
    key = {"path": Track.path, "genre": cols.genre, "confidence": cols.confidence,
           "mtime": Track.mtime, "status": Track.status, "model": cols.model,
           "seen": cols.last_seen, "duration": Track.duration, "artist": Track.artist,
           "album": Track.album}[f.sort]
    order = [key.desc() if f.descending else key.asc(), Track.path]
    if f.sort not in _NOT_NULL_SORTS:  # ``key IS NULL`` first: NULLS LAST on any database
        order.insert(0, key.is_(None))
    query = query.order_by(*order)
    if f.limit is not None:
        query = query.limit(f.limit)
    if f.offset:
        query = query.offset(f.offset)
    return query


def count(engine: Engine, f: TrackFilter) -> int:
    """How many tracks ``f`` matches, ignoring its limit and offset."""
    sub = build(replace(f, limit=None, offset=None, sort="path")).subquery()
    with reading(engine).connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(sub)) or 0)


def iso_utc(moment: datetime | str | None) -> str | None:
    """A stored timestamp as ISO 8601 UTC to the second. SQLite hands back the text
    SQLAlchemy wrote (``2026-11-25 11:37:04.123456``, UTC, no offset); other databases
    a datetime. Seconds are truncated, as ``_sqlite_value`` does for the JSON path."""
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(microsecond=0).isoformat()


def mtime_iso(mtime: float | None) -> str | None:
    """A file's modification time (seconds since the epoch) as ISO 8601 UTC, truncated
    to the second; None for none or a value no calendar holds."""
    if mtime is None:
        return None
    try:
        return datetime.fromtimestamp(int(mtime), UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return None


def _row(mapping: Any) -> dict[str, Any]:
    row = dict(mapping)
    probs = row["probabilities"]
    row["probabilities"] = json.loads(probs) if isinstance(probs, str) else probs
    listed = row["genres"]
    row["genres"] = genres_or(row["genre"], json.loads(listed) if isinstance(listed, str)
                              else listed) if row["genre"] is not None else None
    row["last_seen"] = iso_utc(row["last_seen"])
    row["mtime"] = mtime_iso(row["mtime"])
    return row


def query_tracks(engine: Engine, f: TrackFilter,
                 with_id: bool = False) -> list[dict[str, Any]]:
    """Rows for ``f`` as dicts with the keys in ``COLUMNS`` (probabilities decoded), and
    the track's ``id`` when asked (the web API's handle on a track)."""
    with reading(engine).connect() as conn:
        return [_row(r) for r in conn.execute(build(f, with_id)).mappings()]


def _sqlite_value(sub: Any, name: str) -> Any:
    """Column ``name`` as ``_row`` would give it, computed by SQLite."""
    column = sub.c[name]
    if name == "probabilities":
        return func.json(column)
    if name == "genres":  # as ``_row``: the stored list, else [genre]; null without a genre
        return case((sub.c.genre.is_(None), None),
                    else_=func.json(func.coalesce(func.nullif(column, "null"),
                                                  func.json_array(sub.c.genre))))
    if name == "last_seen":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC
        return func.replace(func.substr(column, 1, 19), " ", "T").op("||")("+00:00")
    if name in ("confidence", "duration"):
        # json_object writes a REAL with 15 significant digits, which changes most values;
        # 17 always read back as the same double.
        return case((column.is_(None), None),
                    else_=func.json(func.printf("%!.17g", column)))
    if name == "mtime":
        seconds = cast(column, Integer)  # truncates, like int() in mtime_iso
        return func.strftime("%Y-%m-%dT%H:%M:%S", seconds, "unixepoch").op("||")("+00:00")
    return column


def _json_object(sub: Any) -> Any:
    pairs: list[Any] = []
    for name in COLUMNS:
        pairs += [literal(name), _sqlite_value(sub, name)]
    return func.json_object(*pairs)


def query_json(engine: Engine, f: TrackFilter) -> str:
    """``query_tracks`` as a JSON array text. On SQLite the database builds each row's
    JSON itself (100,000-track catalogues answer a genre filter in tens of ms); other
    databases go through Python."""
    if engine.dialect.name != "sqlite":
        return json.dumps(query_tracks(engine, f), ensure_ascii=False, separators=(",", ":"))
    sub = build(f).subquery()
    with reading(engine).connect() as conn:
        rows = conn.execute(select(_json_object(sub))).scalars()
        return "[" + ",".join(_decoded_path(row) for row in rows) + "]"


def _decoded_path(row_json: str) -> str:
    """A row SQLite built holds the path as stored (``storage.paths.to_db``); the rare one
    with an escaped byte is rebuilt with the path decoded (a lone surrogate, which
    ``json.dumps`` writes as a ``\\udcff`` escape: ``json.loads`` gives the same str back)."""
    if MARK not in row_json:
        return row_json
    row = json.loads(row_json)
    row["path"] = from_db(row["path"])
    return json.dumps(row, separators=(",", ":"))


def stats(engine: Engine) -> dict[str, Any]:
    """Counts: tracks per effective genre, per status, per model (current predictions),
    corrections per source, and the totals."""
    sub = _base().subquery()
    with reading(engine).connect() as conn:
        def counts(column: Any) -> dict[str, int]:  # ties: no value first, on any database
            rows = conn.execute(select(column, func.count()).group_by(column)
                                .order_by(func.count().desc(), column.is_not(None), column))
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


def predicted_genres(engine: Engine, paths: list[str]) -> dict[str, str | None]:
    """path -> the genre of its current prediction (None: none), for the given paths."""
    out: dict[str, str | None] = dict.fromkeys(paths)
    with Session(reading(engine)) as s:
        for start in range(0, len(paths), 500):
            chunk = paths[start:start + 500]
            rows = s.execute(
                select(Track.path, Prediction.genre)
                .join(Prediction, (Prediction.track_id == Track.id) & Prediction.current)
                .where(Track.path.in_(chunk))).all()
            out.update({p: g for p, g in rows})
    return out
