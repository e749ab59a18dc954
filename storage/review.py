"""What the review page reads: the queue of tracks to check, least certain first; the genre
vocabulary; a track's folder; the retrain history.

The review queue holds uncorrected ``ok`` tracks. Its order: the *margin* (top-1 minus
top-2 probability: a 0.41 / 0.39 answer is less certain than a 0.41 / 0.10 one, though the
confidence is the same), with album outliers ranked up: a track whose predicted genre
differs from the genre most other tracks of its folder have counts as if its margin were
half as large. Folders stand for albums (the catalogue does not store album tags).

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

from sqlalchemy import Engine, func, select
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


def _folder_genres(engine: Engine, folder: str | None = None) -> dict[str, Counter[str]]:
    """Effective genre counts of the ``ok`` tracks of each folder (inside ``folder``, when
    given), in one query."""
    pred = aliased(Prediction)
    newest = (select(func.max(Correction.id)).where(Correction.track_id == Track.id,
                                                     Correction.active)
              .correlate(Track).scalar_subquery())
    corr = aliased(Correction)
    effective = func.coalesce(corr.genre, pred.genre)
    query = (select(Track.path, effective)
             .join(pred, (pred.track_id == Track.id) & pred.current)
             .outerjoin(corr, corr.id == newest)
             .where(Track.status == OK))
    if folder is not None:
        query = query.where(Track.path.startswith(under(folder), autoescape=True))
    folders: dict[str, Counter[str]] = {}
    with reading(engine).connect() as conn:
        for path, genre in conn.execute(query):
            folders.setdefault(os.path.dirname(path), Counter())[str(genre)] += 1
    return folders


def _outlier_of(folder: Counter[str] | None, genre: str) -> str | None:
    """The folder's majority genre when ``genre`` is not it, leaving this track out."""
    if folder is None:
        return None
    others = folder.copy()
    others[genre] -= 1
    n = sum(others.values())
    if n + 1 < MIN_FOLDER_TRACKS:
        return None
    top, count = max(others.items(), key=lambda kv: (kv[1], kv[0]))
    return top if top != genre and count * 2 > n else None


def review_queue(engine: Engine, f: ReviewFilter) -> ReviewPage:
    """Uncorrected ``ok`` tracks matching ``f``, least certain first (see module doc)."""
    has_label = (select(Correction.id).where(Correction.track_id == Track.id,
                                             Correction.active).exists())
    query = (select(Track.id, Track.path, Prediction.genre, Prediction.confidence,
                    Prediction.probabilities)
             .join(Prediction, (Prediction.track_id == Track.id) & Prediction.current)
             .where(Track.status == OK, ~has_label))
    if f.genre:
        query = query.where(func.lower(Prediction.genre) == f.genre.lower())
    if f.folder:
        query = query.where(Track.path.startswith(under(f.folder), autoescape=True))
    if f.min_confidence is not None:
        query = query.where(Prediction.confidence >= f.min_confidence)
    if f.max_confidence is not None:
        query = query.where(Prediction.confidence <= f.max_confidence)
    if f.model:
        query = query.where(Prediction.model_version == f.model)
    with reading(engine).connect() as conn:
        rows = conn.execute(query).all()
    folders = _folder_genres(engine, f.folder) if rows else {}
    entries: list[tuple[float, str, ReviewEntry]] = []
    for track_id, path, genre, confidence, probs in rows:
        if isinstance(probs, str):
            probs = json.loads(probs)
        m = margin(probs, confidence)
        majority = _outlier_of(folders.get(os.path.dirname(path)), str(genre))
        key = m * OUTLIER_WEIGHT if majority else m
        entries.append((key, path, ReviewEntry(int(track_id), m, majority is not None,
                                               majority)))
    entries.sort(key=lambda e: (e[0], e[1]))
    page = entries[f.offset:f.offset + f.limit]
    return ReviewPage([e for _, _, e in page], len(entries))


def outlier_info(engine: Engine, path: str, genre: str | None) -> str | None:
    """For one track: the majority genre of its folder when its genre differs from it."""
    if genre is None:
        return None
    folder = os.path.dirname(path)
    return _outlier_of(_folder_genres(engine, folder).get(folder), genre)


def track_path(engine: Engine, track_id: int) -> tuple[str, str] | None:
    """(path, status) of the track with this id, or None when there is no such track."""
    with reading(engine).connect() as conn:
        row = conn.execute(select(Track.path, Track.status)
                           .where(Track.id == track_id)).first()
    return (str(row[0]), str(row[1])) if row else None


def folder_track_ids(engine: Engine, folder: str) -> list[int]:
    """Ids of the catalogued tracks directly inside ``folder`` (not in sub-folders), by
    path; missing files left out."""
    prefix = under(folder)
    with reading(engine).connect() as conn:
        rows = conn.execute(select(Track.id, Track.path)
                            .where(Track.path.startswith(prefix, autoescape=True),
                                   Track.status != "missing")
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
