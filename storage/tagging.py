"""The tag-writing policy: which tracks get which genre written, backups before the first
write, and ``tags restore``.

Policy (config keys ``write_tags``, ``tag_threshold``, ``overwrite_existing``):

- a user correction (or any active label) is always written;
- a prediction is written only when its confidence reaches ``threshold``;
- a file that already has a non-empty genre is left alone unless ``overwrite_existing`` —
  except a genre genred itself wrote, which it may update;
- ``pretend`` decides everything and touches nothing.

Before genred first writes to a file, the file's genre-related values are saved in a
``TagBackup`` row (``original``); after each write, ``written`` holds what the file then
says. ``restore`` puts ``original`` back only while the file still holds ``written``: a
genre changed by hand since is reported and left alone.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from storage import tags
from storage.catalogue import canonical, file_stat, set_file_stat, track_at
from storage.corrections import active_label
from storage.db import reading, writing
from storage.schema import OK, Prediction, TagBackup, Track

log = logging.getLogger(__name__)

# TagOutcome.action values
WRITTEN = "written"
WOULD_WRITE = "would-write"  # --pretend
RESTORED = "restored"
WOULD_RESTORE = "would-restore"
SKIPPED = "skipped"
FAILED = "failed"


@dataclass(frozen=True)
class TagPolicy:
    threshold: float = 0.5
    overwrite_existing: bool = False
    pretend: bool = False


@dataclass(frozen=True)
class TagOutcome:
    path: str
    action: str  # WRITTEN | WOULD_WRITE | RESTORED | WOULD_RESTORE | SKIPPED | FAILED
    detail: str  # what was written, or why not

    def line(self) -> str:
        return f"{self.action:13} {self.path}: {self.detail}"


@dataclass(frozen=True)
class _Wanted:
    genre: str
    model: str | None
    confidence: float | None
    corrected: bool
    backup: dict[str, list[str]] | None  # the open backup's ``written``, if any


def _wanted(engine: Engine, path: str) -> _Wanted | str:
    """What the catalogue wants in the file's tags, or why nothing."""
    with Session(reading(engine)) as s:
        track = track_at(s, path)
        if track is None:
            return "not in the catalogue (run genred scan first)"
        backup = _open_backup(s, track.id)
        written = dict(backup.written) if backup else None
        label = active_label(s, track.id)
        if label is not None:
            return _Wanted(label.genre, None, None, True, written)
        if track.status != OK:
            return f"status {track.status}, no genre to write"
        pred = s.scalars(select(Prediction).where(Prediction.track_id == track.id,
                                                  Prediction.current)).first()
        if pred is None:
            return "no prediction"
        return _Wanted(pred.genre, pred.model_version, pred.confidence, False, written)


def _open_backup(s: Session, track_id: int) -> TagBackup | None:
    return s.scalars(select(TagBackup).where(TagBackup.track_id == track_id,
                                             TagBackup.restored.is_(False))
                     .order_by(TagBackup.id.desc())).first()


def write_track(engine: Engine, path: str | os.PathLike[str], policy: TagPolicy) -> TagOutcome:
    """Apply the policy to one catalogued file. Never raises for a file's problems: a
    read-only, vanished or unreadable file gives a FAILED outcome."""
    where = canonical(path)
    wanted = _wanted(engine, where)
    if isinstance(wanted, str):
        return TagOutcome(where, SKIPPED, wanted)
    try:
        return _write(engine, where, wanted, policy)
    except tags.TagError as e:
        log.warning("tags not written: %s", e)
        return TagOutcome(where, FAILED, e.reason)


def _write(engine: Engine, path: str, wanted: _Wanted, policy: TagPolicy) -> TagOutcome:
    if not wanted.corrected and (wanted.confidence or 0.0) < policy.threshold:
        return TagOutcome(path, SKIPPED, f"{wanted.genre} at {wanted.confidence:.2f} is below "
                          f"the tag threshold {policy.threshold:.2f}")
    kind, current = tags.read_values(path)
    existing = tags.genre_of(kind, current)
    if existing == [wanted.genre]:
        return TagOutcome(path, SKIPPED, f"already {wanted.genre}")
    ours = wanted.backup is not None and current == wanted.backup
    if existing and not ours and not wanted.corrected and not policy.overwrite_existing:
        return TagOutcome(path, SKIPPED, f"has genre {'; '.join(existing)} "
                          "(overwrite_existing is off)")
    detail = f"{'; '.join(existing) or '(none)'} -> {wanted.genre}"
    if policy.pretend:
        return TagOutcome(path, WOULD_WRITE, detail)
    _backup_once(engine, path, kind, current)
    after = tags.update(path, tags.genre_values(kind, wanted.genre, wanted.model,
                                                wanted.confidence))
    _record_written(engine, path, after)
    return TagOutcome(path, WRITTEN, detail)


def _backup_once(engine: Engine, path: str, kind: str, original: dict[str, list[str]]) -> None:
    """Save the file's values before genred's first write (no-op while one is open)."""
    with Session(writing(engine)) as s, s.begin():
        track = track_at(s, path)
        if track is not None and _open_backup(s, track.id) is None:
            s.add(TagBackup(track_id=track.id, format=kind, original=original, written={}))


def _record_written(engine: Engine, path: str, after: dict[str, list[str]]) -> None:
    size, mtime = file_stat(path)
    with Session(writing(engine)) as s, s.begin():
        track = track_at(s, path)
        if track is None:
            return
        backup = _open_backup(s, track.id)
        if backup is not None:
            backup.written = after
    set_file_stat(engine, path, size, mtime)


def restore_track(engine: Engine, path: str | os.PathLike[str],
                  pretend: bool = False) -> TagOutcome:
    """Put back the file's original genre values, if it still holds what genred wrote."""
    where = canonical(path)
    with Session(reading(engine)) as s:
        track = track_at(s, where)
        backup = _open_backup(s, track.id) if track else None
        if backup is None:
            return TagOutcome(where, SKIPPED, "genred never wrote its tags")
        backup_id, original, written = backup.id, dict(backup.original), dict(backup.written)
    try:
        kind, current = tags.read_values(where)
        if not written or current != written:
            return TagOutcome(where, SKIPPED, "genre changed since genred wrote it "
                              f"({_show(kind, current)}); left alone")
        if pretend:
            change = f"{_show(kind, current)} -> {_show(kind, original)}"
            return TagOutcome(where, WOULD_RESTORE, change)
        tags.update(where, {key: original.get(key) for key in set(written) | set(original)})
    except tags.TagError as e:
        log.warning("tags not restored: %s", e)
        return TagOutcome(where, FAILED, e.reason)
    _mark_restored(engine, where, backup_id)
    return TagOutcome(where, RESTORED, f"{_show(kind, written)} -> {_show(kind, original)}")


def _mark_restored(engine: Engine, path: str, backup_id: int) -> None:
    size, mtime = file_stat(path)
    with Session(writing(engine)) as s, s.begin():
        backup = s.get(TagBackup, backup_id)
        if backup is not None:
            backup.restored = True
    set_file_stat(engine, path, size, mtime)


def _show(kind: str, values: dict[str, list[str]]) -> str:
    return "; ".join(tags.genre_of(kind, values)) or "(no genre)"


def backed_up_paths(engine: Engine, folder: str | None = None) -> list[str]:
    """Paths with an open backup (what ``tags restore`` without paths works on)."""
    with Session(reading(engine)) as s:
        query = (select(Track.path).join(TagBackup)
                 .where(TagBackup.restored.is_(False)).distinct().order_by(Track.path))
        if folder is not None:
            prefix = canonical(folder).rstrip(os.sep) + os.sep
            query = query.where((Track.path == canonical(folder))
                                | Track.path.startswith(prefix, autoescape=True))
        return list(s.scalars(query))


def recorded_after(engine: Engine, after_id: int, limit: int = 200) -> list[tuple[int, str]]:
    """(prediction id, path) of current predictions newer than ``after_id``, oldest first:
    what the daemon's tag pass has not looked at yet, whichever host recorded them."""
    with Session(reading(engine)) as s:
        rows = s.execute(select(Prediction.id, Track.path).join(Track)
                         .where(Prediction.id > after_id, Prediction.current)
                         .order_by(Prediction.id).limit(limit)).all()
        return [(int(i), p) for i, p in rows]


def newest_prediction_id(engine: Engine) -> int:
    from sqlalchemy import func

    with Session(reading(engine)) as s:
        return int(s.scalar(select(func.max(Prediction.id))) or 0)
