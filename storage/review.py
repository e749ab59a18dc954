"""What the review page reads: the queue of tracks to check, least certain first; the genre
vocabulary; a track's folder; the retrain history.

The review queue holds uncorrected ``ok`` tracks. Its order: the *margin* (top-1 minus
top-2 probability: a 0.41 / 0.39 answer is less certain than a 0.41 / 0.10 one, though the
confidence is the same), with album outliers ranked up: a track whose predicted genre
differs from the genre most other tracks of its album have counts as if its margin were
half as large. An album is what ``storage.albums`` groups by: the album and album-artist
tags read at scan time, else the folder (only the tracks in the selection count).

The order costs one pass over the ``ok`` tracks (seconds for 100,000 on a busy machine):
``review_order`` computes it, labelled tracks included; ``review_queue`` takes one page of
it without the tracks labelled *now*, so a caller may keep an order while
``predictions_stamp`` stays the same (the web page does) and labels still apply at once.

Example::

    page = review_queue(engine, ReviewFilter(genre="Jazz", limit=20))
    page.total, [(e.track_id, e.margin, e.outlier) for e in page.entries]
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, literal_column, select
from sqlalchemy.orm import aliased

from storage.catalogue import canonical, under
from storage.db import reading
from storage.schema import OK, Correction, ModelVersion, Prediction, Track, TrainingRun

OUTLIER_WEIGHT = 0.5  # an outlier's margin counts this much in the order
MIN_FOLDER_TRACKS = 3  # a folder with fewer tracks has no majority to stand out from


@dataclass(frozen=True)
class ReviewFilter:
    genre: str | None = None  # predicted genre, case-insensitive
    folder: str | None = None  # tracks inside this folder (any depth)
    min_confidence: float | None = None
    max_confidence: float | None = None
    model: str | None = None  # predicted by this model version
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True)
class ReviewEntry:
    track_id: int
    margin: float
    outlier: bool  # the folder's other tracks mostly have another genre
    folder_genre: str | None  # that genre, for an outlier


@dataclass(frozen=True)
class ReviewPage:
    entries: list[ReviewEntry]
    total: int  # entries the filter matches, all pages


def margin(probabilities: dict[str, float] | None, confidence: float | None) -> float:
    """Top-1 minus top-2 probability (the confidence alone when there is one genre)."""
    values = sorted((float(v) for v in (probabilities or {}).values()), reverse=True)
    if not values:
        return float(confidence or 0.0)
    return values[0] - (values[1] if len(values) > 1 else 0.0)


def _candidates(engine: Engine, folder: str | None) -> list[Any]:
    """Every ``ok`` track (inside ``folder``): id, path, predicted genre, confidence,
    model, effective genre, labelled, margin (on SQLite computed by the database from the
    stored probabilities; elsewhere None, with the probabilities to compute it from)."""
    pred = aliased(Prediction, name="p")
    corr = aliased(Correction, name="c")
    newest = (select(func.max(Correction.id)).where(Correction.track_id == Track.id,
                                                     Correction.active)
              .correlate(Track).scalar_subquery())
    if engine.dialect.name == "sqlite":
        runner_up: Any = literal_column("(SELECT max(j.value) FROM json_each(p.probabilities) AS j "
                                   "WHERE j.key != p.genre)")
        extra: Any = (pred.confidence - func.coalesce(runner_up, 0.0)).label("margin")
    else:
        extra = pred.probabilities
    current: Any = pred.current
    if folder:
        # coalesce(): no index on ``current`` tempts SQLite to start from predictions
        # (every current one) instead of the folder's path range.
        current = func.coalesce(pred.current, False) == True  # noqa: E712
    query = (select(Track.id, Track.path, pred.genre, pred.confidence, pred.model_version,
                    func.coalesce(corr.genre, pred.genre), corr.id.is_not(None), extra,
                    Track.status, Track.album, Track.album_artist)
             .select_from(Track)
             .join(pred, (pred.track_id == Track.id) & current)
             .outerjoin(corr, corr.id == newest))
    if folder:
        query = query.where(under(folder))
    # The status is tested here, not in SQL: SQLite would pick the status index (nearly
    # every track is ok) over the path range of a folder.
    with reading(engine).connect() as conn:
        return [(*row[:8], _album_key(row[1], row[9], row[10]))
                for row in conn.execute(query) if row[8] == OK]


def _album_key(path: str, album: str | None, artist: str | None) -> tuple[str, ...]:
    """The album a track belongs to, as ``storage.albums`` groups them."""
    from storage.albums import album_key

    return album_key({"path": path, "album": album, "album_artist": artist})


@dataclass
class _Folder:
    """Effective-genre counts of one folder's ``ok`` tracks, with its two top genres."""

    counts: Counter[str]

    def majority_without(self, genre: str) -> str | None:
        """The genre more than half of the folder's *other* tracks have, when it is not
        ``genre``; None for folders too small to say."""
        total = sum(self.counts.values())
        if total < MIN_FOLDER_TRACKS:
            return None
        top = self.counts.most_common(2)
        others = total - 1
        for name, n in top:
            if name != genre:
                return name if 2 * n > others else None
            if 2 * (n - 1) > others:
                return None  # this track's own genre is the others' majority
        return None


def review_order(engine: Engine, f: ReviewFilter) -> list[ReviewEntry]:
    """Every ``ok`` track matching ``f`` (labelled ones too, flagged), least certain
    first (see module doc); ``f.limit`` / ``f.offset`` are ignored. One query over the
    ``ok`` tracks (of ``f.folder``, when given): folder majorities need all of them.
    A caller may keep the result while ``predictions_stamp`` is unchanged and hand it to
    ``review_queue``: labels are applied there, fresh each time."""
    rows = _candidates(engine, f.folder)
    counts: dict[str, Counter[str]] = {}
    for row in rows:
        counts.setdefault(row[8], Counter())[str(row[5])] += 1
    folders = {name: _Folder(c) for name, c in counts.items()}
    genre = f.genre.lower() if f.genre else None
    entries: list[tuple[float, str, ReviewEntry]] = []
    for track_id, path, predicted, confidence, model, _, _, extra, album in rows:
        if genre is not None and str(predicted).lower() != genre:
            continue
        if (f.min_confidence is not None and confidence < f.min_confidence) or \
                (f.max_confidence is not None and confidence > f.max_confidence) or \
                (f.model and model != f.model):
            continue
        if isinstance(extra, int | float):
            m = float(extra)
        else:
            m = margin(json.loads(extra) if isinstance(extra, str) else extra, confidence)
        majority = folders[album].majority_without(str(predicted))
        key = m * OUTLIER_WEIGHT if majority else m
        entries.append((key, path, ReviewEntry(int(track_id), m, majority is not None,
                                               majority)))
    entries.sort(key=lambda e: (e[0], e[1]))
    return [e for _, _, e in entries]


def predictions_stamp(engine: Engine) -> tuple[int, int]:
    """Changes whenever a prediction is recorded or a track leaves ``ok``: (newest
    prediction id, ``ok`` tracks). Two cheap index lookups."""
    with reading(engine).connect() as conn:
        newest = conn.scalar(select(func.max(Prediction.id))) or 0
        ok = conn.scalar(select(func.count()).select_from(Track).where(Track.status == OK))
    return int(newest), int(ok or 0)


def labelled_ids(engine: Engine) -> set[int]:
    """Tracks with an active label (index ``ix_corrections_track_active``)."""
    with reading(engine).connect() as conn:
        return {int(i) for i in conn.scalars(select(Correction.track_id).distinct()
                                             .where(Correction.active))}


def review_queue(engine: Engine, f: ReviewFilter,
                 order: list[ReviewEntry] | None = None) -> ReviewPage:
    """Uncorrected ``ok`` tracks matching ``f``, least certain first: one page of
    ``review_order`` (computed now unless given) without the labelled tracks."""
    entries = review_order(engine, f) if order is None else order
    labelled = labelled_ids(engine)
    open_entries = [e for e in entries if e.track_id not in labelled]
    return ReviewPage(open_entries[f.offset:f.offset + f.limit], len(open_entries))


def outlier_info(engine: Engine, path: str, genre: str | None) -> str | None:
    """For one track: the majority genre of its folder when its genre differs from it."""
    if genre is None:
        return None
    folder = os.path.dirname(path)
    rows = _candidates(engine, folder)
    key = next((r[8] for r in rows if r[1] == path), ("folder", folder))
    counts: Counter[str] = Counter(str(r[5]) for r in rows if r[8] == key)
    return _Folder(counts).majority_without(genre) if counts else None


def track_path(engine: Engine, track_id: int) -> tuple[str, str] | None:
    """(path, status) of the track with this id, or None when there is no such track."""
    with reading(engine).connect() as conn:
        row = conn.execute(select(Track.path, Track.status)
                           .where(Track.id == track_id)).first()
    return (str(row[0]), str(row[1])) if row else None


def folder_track_ids(engine: Engine, folder: str) -> list[int]:
    """Ids of the catalogued tracks directly inside ``folder`` (not in sub-folders), by
    path; missing files left out."""
    with reading(engine).connect() as conn:
        rows = conn.execute(select(Track.id, Track.path)
                            .where(under(folder), Track.status != "missing")
                            .order_by(Track.path)).all()
    return [int(i) for i, p in rows if os.path.dirname(p) == canonical(folder)]


def genre_vocabulary(engine: Engine) -> dict[str, dict[str, int]]:
    """Every genre the catalogue uses: name -> {"predicted": tracks whose current
    prediction it is, "labels": tracks whose active label it is}. Names as stored; a
    genre spelled two ways appears under the first spelling seen (case-insensitive)."""
    newest = (select(func.max(Correction.id)).where(Correction.active)
              .group_by(Correction.track_id).scalar_subquery())
    out: dict[str, dict[str, int]] = {}
    spelling: dict[str, str] = {}
    with reading(engine).connect() as conn:
        for kind, query in (
            ("predicted", select(Prediction.genre, func.count()).where(Prediction.current)
             .group_by(Prediction.genre)),
            ("labels", select(Correction.genre, func.count())
             .where(Correction.id.in_(newest)).group_by(Correction.genre)),
        ):
            for genre, n in conn.execute(query):
                name = spelling.setdefault(str(genre).lower(), str(genre))
                counts = out.setdefault(name, {"predicted": 0, "labels": 0})
                counts[kind] += int(n)
    return out


def training_runs(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """The newest retrain runs, newest first, with decision, reason and figures."""
    with reading(engine).connect() as conn:
        rows = conn.execute(select(TrainingRun).order_by(TrainingRun.id.desc())
                            .limit(limit)).mappings().all()
    from storage.query import iso_utc

    return [{
        "id": r["id"], "trigger": r["trigger"], "decision": r["decision"],
        "reason": r["reason"], "base_model": r["base_model"], "new_model": r["new_model"],
        "n_labels": r["n_labels"], "old_accuracy": r["old_accuracy"],
        "new_accuracy": r["new_accuracy"], "started_at": iso_utc(r["started_at"]),
        "finished_at": iso_utc(r["finished_at"]),
    } for r in rows]


def running_training(engine: Engine) -> bool:
    """Is a retrain recorded as running (by this or another process)?"""
    with reading(engine).connect() as conn:
        return conn.scalar(select(func.count()).select_from(TrainingRun)
                           .where(TrainingRun.decision == "running")) != 0


def labels_since(engine: Engine, correction_id: int) -> list[dict[str, Any]]:
    """Active labels newer than ``correction_id`` (those the next retrain has not seen):
    path, genre, source, when; newest first."""
    newest = (select(func.max(Correction.id)).where(Correction.active)
              .group_by(Correction.track_id).scalar_subquery())
    with reading(engine).connect() as conn:
        rows = conn.execute(
            select(Track.id, Track.path, Correction.genre, Correction.source,
                   Correction.created_at)
            .join(Track).where(Correction.id.in_(newest), Correction.id > correction_id)
            .order_by(Correction.id.desc())).all()
    from storage.query import iso_utc

    return [{"id": int(i), "path": p, "genre": g, "source": s, "created_at": iso_utc(c)}
            for i, p, g, s, c in rows]


def model_rows(engine: Engine) -> dict[str, dict[str, Any]]:
    """Model versions the catalogue recorded, by version: path, parent, active."""
    with reading(engine).connect() as conn:
        rows = conn.execute(select(ModelVersion.version, ModelVersion.path,
                                   ModelVersion.parent, ModelVersion.active)).all()
    return {v: {"path": p, "parent": par, "active": bool(a)} for v, p, par, a in rows}


def predicted_counts(engine: Engine) -> dict[str, int]:
    """Tracks whose current prediction each model version made."""
    with reading(engine).connect() as conn:
        rows = conn.execute(select(Prediction.model_version, func.count())
                            .where(Prediction.current).group_by(Prediction.model_version))
        return {str(v): int(n) for v, n in rows}
