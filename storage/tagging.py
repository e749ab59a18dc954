"""The tag-writing policy: which tracks get which genre written, backups before the first
write, and ``tags restore``.

Policy (config keys ``write_tags``, ``tag_threshold``, ``overwrite_existing``,
``split_hard_links``, ``write_genres``, ``genre_separator``):

- every genre of the answer is written, main first (``write_genres = "main"``: the main
  one only), in the list form of each format (``storage.tags``); with
  ``write_parent_genres`` each after its parents in the genre tree ("Electronic; House");

- a user correction (or any active label) is always written;
- a prediction is written only when its confidence reaches ``threshold``;
- a file that already has a non-empty genre is left alone unless ``overwrite_existing`` —
  except a genre genred itself wrote, which it may update;
- a genre that is not printable text (control characters, NUL, newlines) is refused;
- ``pretend`` decides everything and touches nothing.

Durability: the ``TagBackup`` row is committed *before* the file is replaced (from the
``before_replace`` hook of ``tags.update``, after every check): ``original`` holds the values
of the very bytes being replaced, ``pending`` what the new file says. Once the rename is
done, ``written`` takes ``pending``'s value. A kill between the two leaves ``pending`` set, and
both ``written`` and ``pending`` count as "what genred wrote". ``restore`` puts ``original``
back only while the file still holds one of them: a genre changed by hand since is reported
and left alone; a file that already holds ``original`` (a restore killed after its rename)
is marked restored.

Outcomes: ``written``/``restored`` (done), ``skipped`` (policy said no), ``refused`` (genred
will not, for the file's sake: another program writing it, hard links, the audio would
change or is incomplete, an unprintable genre), ``failed`` (the file or the disk said no).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from storage import tags
from storage.catalogue import canonical, track_at, under
from storage.corrections import active_label, label_genres
from storage.db import reading, writing
from storage.genres import genres_or
from storage.genretree import GenreTree
from storage.schema import OK, Prediction, TagBackup, Track

log = logging.getLogger(__name__)

# TagOutcome.action values
WRITTEN = "written"
WOULD_WRITE = "would-write"  # --pretend
RESTORED = "restored"
WOULD_RESTORE = "would-restore"
SKIPPED = "skipped"
REFUSED = "refused"  # genred will not write it: the reason says what could be lost
FAILED = "failed"


@dataclass(frozen=True)
class TagPolicy:
    threshold: float = 0.5
    overwrite_existing: bool = False
    pretend: bool = False
    split_hard_links: bool = False
    main_only: bool = False  # config write_genres = "main": only the main genre is written
    separator: str = "; "  # config genre_separator: joins genres where a tag holds one text
    # config album_genres (None: off) with album_margin: a predicted track whose own genre
    # does not beat its album's by this much gets the album's genre (storage.albums)
    album_margin: float | None = None
    # config write_parent_genres: the genre tree whose parents go before each genre
    parents: GenreTree | None = None


def policy_from(cfg: Any, pretend: bool = False, threshold: float | None = None) -> TagPolicy:
    """The policy a config (``daemon.config.Config``) sets; ``threshold`` overrides its
    ``tag_threshold``."""
    return TagPolicy(cfg.tag_threshold if threshold is None else threshold,
                     cfg.overwrite_existing, pretend, split_hard_links=cfg.split_hard_links,
                     main_only=cfg.write_genres == "main", separator=cfg.genre_separator,
                     album_margin=cfg.album_margin if cfg.album_genres else None,
                     parents=cfg.tree if cfg.write_parent_genres else None)


@dataclass(frozen=True)
class TagOutcome:
    path: str
    action: str  # WRITTEN | WOULD_WRITE | RESTORED | WOULD_RESTORE | SKIPPED | REFUSED | FAILED
    detail: str  # what was written, or why not

    def line(self) -> str:
        return f"{self.action:13} {self.path}: {self.detail}"


@dataclass(frozen=True)
class _Wanted:
    genres: list[str]  # main first
    model: str | None
    confidence: float | None
    corrected: bool
    ours: list[dict[str, list[str]]]  # what genred wrote (the open backup's written/pending)
    album: bool = False  # the album's genre, not the track's own answer


def _wanted(engine: Engine, path: str, policy: TagPolicy) -> _Wanted | str:
    """What the catalogue wants in the file's tags, or why nothing."""
    wanted = _own(engine, path)
    if isinstance(wanted, str) or wanted.corrected or policy.album_margin is None:
        return wanted
    from storage.albums import album_with, follows_album

    found = album_with(engine, path)
    if found is None or not follows_album(found[0], found[1], policy.album_margin):
        return wanted
    album = found[1]
    return _Wanted([album["genre"]], wanted.model, album["confidence"], False, wanted.ours,
                   album=True)


def _own(engine: Engine, path: str) -> _Wanted | str:
    """What the track's own label or prediction wants in its tags, or why nothing."""
    with Session(reading(engine)) as s:
        track = track_at(s, path)
        if track is None:
            return "not in the catalogue (run genred scan first)"
        backup = _open_backup(s, track.id)
        ours = _ours(backup) if backup else []
        label = active_label(s, track.id)
        if label is not None:
            return _Wanted(label_genres(label), None, None, True, ours)
        if track.status != OK:
            return f"status {track.status}, no genre to write"
        pred = s.scalars(select(Prediction).where(Prediction.track_id == track.id,
                                                  Prediction.current)).first()
        if pred is None:
            return "no prediction"
        return _Wanted(genres_or(pred.genre, pred.genres), pred.model_version, pred.confidence,
                       False, ours)


def _ours(backup: TagBackup) -> list[dict[str, list[str]]]:
    """The values genred last wrote, and those of a write killed right after its rename."""
    return [dict(v) for v in (backup.written, backup.pending) if v]


def _open_backup(s: Session, track_id: int) -> TagBackup | None:
    return s.scalars(select(TagBackup).where(TagBackup.track_id == track_id,
                                             TagBackup.restored.is_(False))
                     .order_by(TagBackup.id.desc())).first()


def write_track(engine: Engine, path: str | os.PathLike[str], policy: TagPolicy) -> TagOutcome:
    """Apply the policy to one catalogued file. Never raises for a file's problems: a
    read-only, vanished or unreadable file, a full disk give a FAILED outcome, a file genred
    will not write for its own sake a REFUSED one (both with the reason)."""
    where = canonical(path)
    wanted = _wanted(engine, where, policy)
    if isinstance(wanted, str):
        return TagOutcome(where, SKIPPED, wanted)
    try:
        return _write(engine, where, wanted, policy)
    except tags.TagRefused as e:
        log.warning("tags not written: %s", e)
        return TagOutcome(where, REFUSED, e.reason)
    except tags.TagError as e:
        log.warning("tags not written: %s", e)
        return TagOutcome(where, FAILED, e.reason)
    except OSError as e:  # e.g. the file vanished right after its rename
        log.warning("tags not written: %s: %s", where, tags.os_reason(e))
        return TagOutcome(where, FAILED, tags.os_reason(e))


def _write(engine: Engine, path: str, wanted: _Wanted, policy: TagPolicy) -> TagOutcome:
    genres = wanted.genres[:1] if policy.main_only else wanted.genres
    if policy.parents is not None:
        genres = policy.parents.with_parents(genres)
    shown = "; ".join(genres)
    if not wanted.corrected and (wanted.confidence or 0.0) < policy.threshold:
        return TagOutcome(path, SKIPPED, f"{shown} at {wanted.confidence:.2f} is below "
                          f"the tag threshold {policy.threshold:.2f}")
    kind, current = tags.read_values(path)
    existing = tags.genre_of(kind, current)
    if existing in (genres, [policy.separator.join(genres)]):
        return TagOutcome(path, SKIPPED, f"already {shown}")
    ours = current in wanted.ours
    if existing and not ours and not wanted.corrected and not policy.overwrite_existing:
        return TagOutcome(path, SKIPPED, f"has genre {'; '.join(existing)} "
                          "(overwrite_existing is off)")
    try:
        changes = tags.genre_values(kind, genres, wanted.model, wanted.confidence)
    except ValueError:
        return TagOutcome(path, REFUSED, f"genre {shown!r} is not printable text "
                          "(empty, control characters or a line break); not written")
    detail = f"{'; '.join(existing) or '(none)'} -> {shown}" + (
        " (the album's genre)" if wanted.album else "")
    if policy.pretend:  # what would be refused for a hard link or a writer says so now
        tags.check_replaceable(path, split_hard_links=policy.split_hard_links)
        return TagOutcome(path, WOULD_WRITE, detail)
    backup = _Durable(engine, path, kind)
    try:
        after = tags.update(path, changes, split_hard_links=policy.split_hard_links,
                            before_replace=backup.commit_pending, separator=policy.separator)
    except BaseException:
        backup.abandon()
        raise
    backup.commit_written(after)
    return TagOutcome(path, WRITTEN, detail)


class _Durable:
    """The backup of one write, committed before the file is replaced (see the module
    docstring): ``commit_pending`` runs right before the rename, ``commit_written`` after
    it, ``abandon`` when the file was not replaced."""

    def __init__(self, engine: Engine, path: str, kind: str) -> None:
        self.engine, self.path, self.kind = engine, path, kind
        self.backup_id: int | None = None
        self.pending: dict[str, list[str]] | None = None
        self.created = False

    def commit_pending(self, before: dict[str, list[str]], after: dict[str, list[str]]) -> None:
        with Session(writing(self.engine)) as s, s.begin():
            track = track_at(s, self.path)
            if track is None:
                raise tags.TagError(self.path, "no longer in the catalogue; not written")
            backup = _open_backup(s, track.id)
            if backup is None:  # genred's first write: keep what the file says now
                backup = TagBackup(track_id=track.id, format=self.kind, original=before,
                                   written={})
                s.add(backup)
                self.created = True
            backup.pending = self.pending = after
            s.flush()
            self.backup_id = backup.id

    def commit_written(self, after: dict[str, list[str]]) -> None:
        _settle(self.engine, self.path, self.backup_id, written=after)

    def abandon(self) -> None:
        """Undo ``commit_pending`` when the write stopped before the rename. If the file
        already says ``pending`` (interrupted after the rename, e.g. Ctrl-C), keep it all:
        that is exactly the state a kill leaves, and restore handles it."""
        if self.backup_id is None:
            return
        with contextlib.suppress(tags.TagError):
            if tags.read_values(self.path)[1] == self.pending:
                return
        with contextlib.suppress(SQLAlchemyError), \
                Session(writing(self.engine)) as s, s.begin():
            backup = s.get(TagBackup, self.backup_id)
            if backup is not None and self.created and not backup.written:
                s.delete(backup)
            elif backup is not None:
                backup.pending = None


def _settle(engine: Engine, path: str, backup_id: int | None, **values: Any) -> None:
    """After a rename: set the backup's ``values`` (``written``/``restored``), clear
    ``pending`` and record the file's new size and mtime, in one transaction (the next
    modify event and scan then know the change was genred's own)."""
    st = os.stat(path)
    with Session(writing(engine)) as s, s.begin():
        backup = s.get(TagBackup, backup_id) if backup_id is not None else None
        if backup is not None:
            for name, value in values.items():
                setattr(backup, name, value)
            backup.pending = None
        track = track_at(s, path)
        if track is not None:
            track.size, track.mtime = st.st_size, st.st_mtime


def restore_track(engine: Engine, path: str | os.PathLike[str], pretend: bool = False,
                  split_hard_links: bool = False) -> TagOutcome:
    """Put back the file's original genre values, if it still holds what genred wrote
    (through a symlink, into the file it points to; hard links as ``tags.update``)."""
    where = canonical(path)
    with Session(reading(engine)) as s:
        track = track_at(s, where)
        backup = _open_backup(s, track.id) if track else None
        if backup is None:
            return TagOutcome(where, SKIPPED, "genred never wrote its tags")
        backup_id, original, ours = backup.id, dict(backup.original), _ours(backup)
    try:
        kind, current = tags.read_values(where)
        if current not in ours:
            if current == original:  # e.g. a restore killed right after its rename
                if not pretend:
                    _settle(engine, where, backup_id, restored=True)
                return TagOutcome(where, WOULD_RESTORE if pretend else RESTORED,
                                  f"already holds its original genre ({_show(kind, current)})")
            return TagOutcome(where, SKIPPED, "genre changed since genred wrote it "
                              f"({_show(kind, current)}); left alone")
        if pretend:
            change = f"{_show(kind, current)} -> {_show(kind, original)}"
            return TagOutcome(where, WOULD_RESTORE, change)
        keys = set(original).union(*ours)
        tags.update(where, {key: original.get(key) for key in keys},
                    split_hard_links=split_hard_links)
        _settle(engine, where, backup_id, restored=True)
    except tags.TagRefused as e:
        log.warning("tags not restored: %s", e)
        return TagOutcome(where, REFUSED, e.reason)
    except tags.TagError as e:
        log.warning("tags not restored: %s", e)
        return TagOutcome(where, FAILED, e.reason)
    except OSError as e:
        log.warning("tags not restored: %s: %s", where, tags.os_reason(e))
        return TagOutcome(where, FAILED, tags.os_reason(e))
    return TagOutcome(where, RESTORED, f"{_show(kind, current)} -> {_show(kind, original)}")


def _show(kind: str, values: dict[str, list[str]]) -> str:
    return "; ".join(tags.genre_of(kind, values)) or "(no genre)"


def backed_up_paths(engine: Engine, folder: str | None = None) -> list[str]:
    """Paths with an open backup (what ``tags restore`` without paths works on)."""
    with Session(reading(engine)) as s:
        query = (select(Track.path).join(TagBackup)
                 .where(TagBackup.restored.is_(False)).distinct().order_by(Track.path))
        if folder is not None:
            query = query.where(under(folder))
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
