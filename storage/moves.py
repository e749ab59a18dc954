"""Files that went away or moved: missing tracks, and a track following its file.

A track is ``missing`` only when its file is certainly gone (``storage.paths.is_gone``); it
keeps its history, so when the same audio (its fingerprint) turns up under another path
(``adopt_moved``), or the watcher sees a rename (``move_path``), the track takes the new
path with its predictions, corrections and tag backups. Like storage.catalogue, every
function runs its own short transaction.
"""

from __future__ import annotations

import logging
import os

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from storage.catalogue import (
    TrackInfo,
    canonical,
    release_claim,
    track_at,
    track_info,
    tracks_under,
)
from storage.db import reading, writing
from storage.names import safe_text, shown
from storage.paths import is_gone
from storage.schema import MISSING, PENDING, Track, utcnow

log = logging.getLogger(__name__)


def mark_missing(engine: Engine, path: str | os.PathLike[str],
                 reason: str = "file not found") -> bool:
    """Set the track at ``path`` ``missing`` (history kept, so it can be matched back by
    fingerprint); False when there is no such track."""
    with Session(writing(engine)) as s, s.begin():
        track = track_at(s, canonical(path))
        if track is None:
            return False
        track.status, track.error = MISSING, safe_text(reason)
        release_claim(track)
        return True


def mark_missing_under(engine: Engine, folder: str | os.PathLike[str]) -> int:
    """Mark every catalogued track inside ``folder`` whose file is gone; returns how many."""
    return len(missing_under(engine, folder))


def missing_under(engine: Engine, folder: str | os.PathLike[str]) -> list[str]:
    """``mark_missing_under``, returning the paths it marked. Only files that are certainly
    gone count (``storage.paths.is_gone``): a track in a folder genred may not look into
    (permissions, an I/O error) is left as it is."""
    gone = [t.path for t in tracks_under(engine, folder)
            if t.status != MISSING and is_gone(t.path)]
    for path in gone:
        mark_missing(engine, path)
    return gone


def find_by_fingerprint(engine: Engine, fingerprint: str) -> list[TrackInfo]:
    """Tracks whose audio stream has this fingerprint (a moved or re-tagged file)."""
    with Session(reading(engine)) as s:
        rows = s.scalars(select(Track).where(Track.fingerprint == fingerprint)
                         .order_by(Track.id)).all()
        return [track_info(s, t) for t in rows]


def adopt_moved(engine: Engine, path: str | os.PathLike[str], fingerprint: str) -> str | None:
    """If a track with this ``fingerprint`` is missing (or its file is gone), it moved here:
    it takes over ``path`` with its predictions, corrections and tag backups, and any
    placeholder row for ``path`` is merged into it. Returns the old path, or None."""
    new_path = canonical(path)
    with Session(writing(engine)) as s, s.begin():
        candidates = s.scalars(select(Track).where(Track.fingerprint == fingerprint,
                                                   Track.path != new_path)
                               .order_by(Track.id)).all()
        old = next((t for t in candidates
                    if t.status == MISSING or is_gone(t.path)), None)
        if old is None:
            return None
        placeholder = track_at(s, new_path)
        if placeholder is not None:
            # a worker busy with the placeholder records its result on the moved track
            old.claimed_by, old.lease_until = placeholder.claimed_by, placeholder.lease_until
            _merge_into(s, placeholder, old)
        old_path, old.path = old.path, new_path
        old.status, old.error = PENDING, None
        old.last_seen = utcnow()
    log.info("%s moved to %s (same audio)", shown(old_path), shown(new_path))
    return old_path


def _merge_into(s: Session, placeholder: Track, keeper: Track) -> None:
    """Move ``placeholder``'s labels and history to ``keeper`` and delete it."""
    for correction in list(placeholder.corrections):
        correction.track_id = keeper.id
    for prediction in list(placeholder.predictions):
        s.delete(prediction)
    for backup in list(placeholder.tag_backups):
        backup.track_id = keeper.id
    s.flush()
    s.expire(placeholder)
    s.delete(placeholder)
    s.flush()


def move_path(engine: Engine, old: str | os.PathLike[str], new: str | os.PathLike[str]) -> bool:
    """A file was renamed (e.g. a watcher move event): the track follows it, keeping its
    history. A track already at ``new`` is merged into the moved one. False if ``old`` is
    not catalogued."""
    old_path, new_path = canonical(old), canonical(new)
    with Session(writing(engine)) as s, s.begin():
        track = track_at(s, old_path)
        if track is None:
            return False
        existing = track_at(s, new_path)
        if existing is not None and existing.id != track.id:
            _merge_into(s, existing, track)
        track.path = new_path
        if track.status == MISSING:
            track.status, track.error = PENDING, None
        return True
