"""The catalogue operations the scanner, the daemon and the CLI need: tracks and their
work queue, predictions, model versions.

Every function takes an ``Engine`` and runs its own short transaction, so no caller holds a
session across decoding or inference. Paths are stored absolute and normalised
(``canonical``); callers may pass any spelling.

The work queue: ``mark_pending`` puts a path in it (creating the track), ``pending_paths``
lists it oldest first, and ``record_prediction`` / ``record_error`` /
``storage.moves.mark_missing`` take a track out of it. Each is one transaction, so after a
crash every pending track is simply processed again. Missing and moved files are
storage.moves; what a model switch queues is storage.requeue.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from storage.db import locks_rows, reading, serialise, writing
from storage.genres import MultiGenre
from storage.names import safe_text
from storage.paths import in_folder
from storage.schema import (
    ERROR,
    OK,
    PENDING,
    ModelVersion,
    Prediction,
    State,
    Track,
    utcnow,
)
from storage.titles import TitleTags

log = logging.getLogger(__name__)


class PredictionLike(Protocol):
    """What ``record_prediction`` reads (``classifier.predict.Prediction`` has it)."""

    @property
    def genre(self) -> str: ...
    @property
    def confidence(self) -> float: ...
    @property
    def probabilities(self) -> dict[str, float]: ...
    @property
    def model(self) -> str: ...
    @property
    def duration(self) -> float: ...
    @property
    def format(self) -> str: ...


@dataclass(frozen=True)
class TrackInfo:
    """A track as the catalogue knows it, detached from any session."""

    id: int
    path: str
    size: int | None
    mtime: float | None
    fingerprint: str | None
    status: str
    error: str | None
    model: str | None  # version of the current prediction
    genre: str | None  # the current prediction's genre
    confidence: float | None
    last_seen: datetime | None
    duration: float | None = None  # as the last decode found them
    format: str | None = None


def canonical(path: str | os.PathLike[str]) -> str:
    """The spelling under which ``path`` is stored: absolute, normalised, symlinks kept."""
    return os.path.normpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


def under(folder: str | os.PathLike[str]) -> Any:
    """SQL condition: the track is ``folder`` itself or inside it (``storage.paths``'s one
    folder rule: exact, case-sensitive, no wildcards, a range on the path index)."""
    return in_folder(Track.path, canonical(folder))


def _info(track: Track, current: Prediction | None) -> TrackInfo:
    return TrackInfo(
        id=track.id, path=track.path, size=track.size, mtime=track.mtime,
        fingerprint=track.fingerprint, status=track.status, error=track.error,
        model=current.model_version if current else None,
        genre=current.genre if current else None,
        confidence=current.confidence if current else None,
        last_seen=track.last_seen, duration=track.duration, format=track.format,
    )


def _current(s: Session, track_id: int) -> Prediction | None:
    return s.scalars(
        select(Prediction).where(Prediction.track_id == track_id, Prediction.current)
        .order_by(Prediction.id.desc()).limit(1)
    ).first()


def track_at(s: Session, path: str) -> Track | None:
    """Inside a session: the track stored at canonical ``path`` (row-locked until the end of
    the transaction in a ``writing`` session, so concurrent writers of one track queue)."""
    query = select(Track).where(Track.path == path)
    return s.scalars(query.with_for_update() if locks_rows(s) else query).first()


def get_or_create_track(s: Session, path: str) -> Track:
    """Inside a session: the track at canonical ``path``, created ``pending`` if new. Two
    transactions creating the same path at once both get the one row."""
    track = track_at(s, path)
    if track is None and s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        s.execute(insert(Track).values(path=path, status=PENDING)
                  .on_conflict_do_nothing(index_elements=["path"]))
        track = track_at(s, path)
    if track is None:
        track = Track(path=path, status=PENDING)
        s.add(track)
        s.flush()
    return track


def release_claim(track: Track) -> None:
    """Inside a session: the track is no longer any worker's (see storage/workqueue.py); a
    worker still busy with it will find its claim gone and drop its result."""
    track.claimed_by, track.lease_until = None, None


def track_info(s: Session, track: Track) -> TrackInfo:
    """Inside a session: ``track`` and its current prediction, detached."""
    return _info(track, _current(s, track.id))


def get_track(engine: Engine, path: str | os.PathLike[str]) -> TrackInfo | None:
    """The track at ``path``, or None when the catalogue has never seen it."""
    with Session(reading(engine)) as s:
        track = track_at(s, canonical(path))
        return track_info(s, track) if track else None


def tracks_under(engine: Engine, folder: str | os.PathLike[str]) -> list[TrackInfo]:
    """Every track whose path is ``folder`` itself or inside it, by path."""
    with Session(reading(engine)) as s:
        rows = s.scalars(select(Track).where(under(folder)).order_by(Track.path)).all()
        return [track_info(s, t) for t in rows]


@dataclass(frozen=True)
class FileState:
    """What a scan compares: the catalogued size, mtime, status and current model."""

    size: int | None
    mtime: float | None
    status: str
    model: str | None

    def unchanged(self, size: int, mtime: float, model_version: str) -> bool:
        """Classified by ``model_version`` at this size and mtime (or failed on these very
        bytes: they would fail again), so a scan may skip the file."""
        if self.size != size or self.mtime != mtime:
            return False
        return self.model == model_version if self.status == OK else self.status == ERROR


def file_states(engine: Engine, folder: str | os.PathLike[str]) -> dict[str, FileState]:
    """``FileState`` of every track inside ``folder``, in one query (a re-scan of a large
    library then costs no query per unchanged file)."""
    with Session(reading(engine)) as s:
        rows = s.execute(
            select(Track.path, Track.size, Track.mtime, Track.status, Prediction.model_version)
            .outerjoin(Prediction, (Prediction.track_id == Track.id) & Prediction.current)
            .where(under(folder))
        ).all()
    return {path: FileState(size, mtime, status, model)
            for path, size, mtime, status, model in rows}


def is_unchanged(engine: Engine, path: str | os.PathLike[str], size: int, mtime: float,
                 model_version: str) -> bool:
    """True when ``path`` was classified by ``model_version`` at this size and mtime, so a
    scan may skip it. Error tracks count as unchanged too: the same bytes fail again."""
    info = get_track(engine, path)
    if info is None:
        return False
    return FileState(info.size, info.mtime, info.status, info.model).unchanged(
        size, mtime, model_version)


def mark_pending(engine: Engine, path: str | os.PathLike[str], size: int | None = None,
                 mtime: float | None = None) -> int:
    """Queue ``path`` for classification (creating its track); returns the track id."""
    with Session(writing(engine)) as s, s.begin():
        track = get_or_create_track(s, canonical(path))
        track.status = PENDING
        track.error = None
        release_claim(track)  # maybe new bytes: a result for the old ones must not land
        if size is not None:
            track.size, track.mtime = size, mtime
        track.last_seen = utcnow()
        return track.id


def pending_paths(engine: Engine, limit: int | None = None) -> list[str]:
    """Paths waiting for classification, longest-waiting first."""
    with Session(reading(engine)) as s:
        query = select(Track.path).where(Track.status == PENDING).order_by(Track.updated_at,
                                                                             Track.id)
        if limit is not None:
            query = query.limit(limit)
        return list(s.scalars(query))


def has_pending(engine: Engine) -> bool:
    """Is any track queued? One indexed lookup (``... WHERE status = 'pending' LIMIT 1``),
    cheap enough for the idle daemon to ask every few seconds."""
    with Session(reading(engine)) as s:
        return s.scalars(select(Track.id).where(Track.status == PENDING).limit(1)).first() \
            is not None


def record_prediction(engine: Engine, path: str | os.PathLike[str], prediction: PredictionLike,
                      *, fingerprint: str | None, size: int | None, mtime: float | None,
                      multi: MultiGenre | None = None, titles: TitleTags | None = None) -> int:
    """Store ``prediction`` as the track's current one (earlier ones stay as history) and set
    the track ``ok``; returns the track id. ``multi`` says how many genres the answer holds
    (default: the top genre only); ``titles`` are the file's title tags (title, artist,
    album, ...), stored on the track when given."""
    with Session(writing(engine)) as s, s.begin():
        track = get_or_create_track(s, canonical(path))
        store_prediction(s, track, prediction, fingerprint=fingerprint, size=size, mtime=mtime,
                         multi=multi, titles=titles)
        return track.id


def store_prediction(s: Session, track: Track, prediction: PredictionLike, *,
                     fingerprint: str | None, size: int | None, mtime: float | None,
                     multi: MultiGenre | None = None, titles: TitleTags | None = None) -> None:
    """Inside a write session, on a locked ``track``: ``record_prediction``'s changes (the
    prediction under the names `genred genres rename|merge` gave its genres)."""
    s.execute(update(Prediction).where(Prediction.track_id == track.id, Prediction.current)
              .values(current=False))
    s.flush()  # the old current row first: the unique index allows one current per track
    genre, confidence, probabilities, genres = (multi or MultiGenre()).answer(
        *_shown(s, prediction))
    s.add(Prediction(
        track_id=track.id, model_version=prediction.model, genre=genre, genres=genres,
        confidence=confidence, probabilities=probabilities, current=True,
    ))
    track.status, track.error = OK, None
    release_claim(track)
    track.fingerprint = fingerprint or track.fingerprint
    track.duration, track.format = prediction.duration, prediction.format
    track.size, track.mtime = size, mtime
    track.last_seen = utcnow()
    if titles is not None:  # the bytes just classified: their tags, empty ones included
        for name, value in titles.columns().items():
            setattr(track, name, value)


def _shown(s: Session, prediction: PredictionLike) -> tuple[str, float, dict[str, float]]:
    """The prediction under the names `genred genres rename|merge` gave its genres."""
    from storage.genres import merge_probabilities
    from storage.vocabulary import renames_in

    probabilities = {k: float(v) for k, v in prediction.probabilities.items()}
    return merge_probabilities(prediction.genre, float(prediction.confidence), probabilities,
                               renames_in(s))


def record_error(engine: Engine, path: str | os.PathLike[str], reason: str,
                 size: int | None = None, mtime: float | None = None) -> int:
    """Set the track ``error`` with a one-line ``reason``; earlier predictions are kept."""
    one_line = safe_text(" ".join(reason.split())[:500])
    with Session(writing(engine)) as s, s.begin():
        track = get_or_create_track(s, canonical(path))
        track.status, track.error = ERROR, one_line
        release_claim(track)
        track.size, track.mtime = size, mtime
        track.last_seen = utcnow()
        return track.id


def set_file_stat(engine: Engine, path: str | os.PathLike[str], size: int,
                  mtime: float) -> None:
    """Record the file's size and mtime after genred itself changed it (a tag write), so
    the next modify event and the next scan know it is not a new version."""
    with Session(writing(engine)) as s, s.begin():
        track = track_at(s, canonical(path))
        if track is not None:
            track.size, track.mtime = size, mtime


def file_stat(path: str | os.PathLike[str]) -> tuple[int, float]:
    """(size, mtime) as the catalogue compares them."""
    st = os.stat(path)
    return st.st_size, st.st_mtime


def register_model(engine: Engine, version: str, path: str | Path, labels: list[str],
                   *, metrics: dict[str, Any] | None = None, parent: str | None = None,
                   active: bool = True) -> None:
    """Record a model version (idempotent); with ``active`` it becomes the one active row."""
    with Session(writing(engine)) as s, s.begin():
        serialise(s, "model_versions")
        row = s.get(ModelVersion, version)
        if row is None:
            row = ModelVersion(version=version, path=str(path), labels=list(labels),
                               metrics=metrics or {}, parent=parent, active=False)
            s.add(row)
        elif metrics:
            row.metrics = metrics
        if active and not row.active:
            s.execute(update(ModelVersion).where(ModelVersion.version != version)
                      .values(active=False))
            row.active = True


def active_model(engine: Engine) -> str | None:
    """The version recorded as active, or None."""
    with Session(reading(engine)) as s:
        return s.scalars(select(ModelVersion.version).where(ModelVersion.active)).first()


def model_path(engine: Engine, version: str) -> str | None:
    """Where the host that registered ``version`` keeps its bundle, or None."""
    with Session(reading(engine)) as s:
        return s.scalar(select(ModelVersion.path).where(ModelVersion.version == version))


def count_tracks(engine: Engine, status: str | None = None) -> int:
    with Session(reading(engine)) as s:
        query = select(func.count(Track.id))
        if status is not None:
            query = query.where(Track.status == status)
        return int(s.scalar(query) or 0)


def set_state(engine: Engine, key: str, value: str) -> None:
    """Store a small fact (last scan time, daemon pid, ...)."""
    with Session(writing(engine)) as s, s.begin():
        serialise(s, f"state:{key}")
        row = s.get(State, key)
        if row is None:
            s.add(State(key=key, value=value))
        else:
            row.value = value


def get_state(engine: Engine, key: str) -> str | None:
    with Session(reading(engine)) as s:
        row = s.get(State, key)
        return row.value if row else None
