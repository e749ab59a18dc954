"""Labels for tracks: user corrections, genre tags taken as labels, imports.

A track's corrected genre is its newest *active* correction. ``uncorrect`` deactivates
rather than deletes, so the history of what users said is never lost. A label for a path
the catalogue does not know yet creates the track as ``pending``, so the label waits for
the file to be classified instead of being dropped.

Priority: a user correction is never overridden by a tag label (``add_label`` with
``source="tag"`` leaves a track with an active user correction alone), and an identical
active label is not added twice.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from storage.catalogue import canonical, get_or_create_track, track_at, under
from storage.db import reading, writing
from storage.schema import TAG, USER, Correction, Track

log = logging.getLogger(__name__)

ADDED = "added"
SAME = "unchanged"  # the same label is already active
KEPT_USER = "kept-user"  # a tag label did not override a user correction


@dataclass(frozen=True)
class LabelResult:
    path: str
    genre: str
    outcome: str  # ADDED | SAME | KEPT_USER


def active_label(s: Session, track_id: int) -> Correction | None:
    return s.scalars(
        select(Correction).where(Correction.track_id == track_id, Correction.active)
        .order_by(Correction.id.desc()).limit(1)
    ).first()


def add_label(engine: Engine, path: str | os.PathLike[str], genre: str,
              source: str = USER) -> LabelResult:
    """Make ``genre`` (already normalised) the active label of the track at ``path``.

    Earlier active labels are deactivated (kept as history)."""
    with Session(writing(engine)) as s, s.begin():
        track = get_or_create_track(s, canonical(path))
        current = active_label(s, track.id)
        if current is not None and current.genre == genre:
            return LabelResult(track.path, genre, SAME)
        if current is not None and current.source == USER and source == TAG:
            return LabelResult(track.path, current.genre, KEPT_USER)
        for old in s.scalars(select(Correction).where(Correction.track_id == track.id,
                                                      Correction.active)):
            old.active = False
        s.add(Correction(track_id=track.id, genre=genre, source=source, active=True))
        return LabelResult(track.path, genre, ADDED)


def add_labels(engine: Engine, labels: Iterable[tuple[str, str]],
               source: str = USER) -> list[LabelResult]:
    """``add_label`` for each (path, genre), one short transaction each."""
    return [add_label(engine, path, genre, source) for path, genre in labels]


def remove_label(engine: Engine, path: str | os.PathLike[str]) -> int:
    """Deactivate the active labels of the track at ``path`` and of every track under it
    when it is a folder; returns how many tracks lost a label."""
    exact, prefix = canonical(path), under(path)
    with Session(writing(engine)) as s, s.begin():
        rows = s.scalars(
            select(Correction).join(Track)
            .where(Correction.active,
                   (Track.path == exact) | Track.path.startswith(prefix, autoescape=True))
        ).all()
        for row in rows:
            row.active = False
        return len({row.track_id for row in rows})


def corrected_genre(engine: Engine, path: str | os.PathLike[str]) -> str | None:
    """The track's active label, or None."""
    with Session(reading(engine)) as s:
        track = track_at(s, canonical(path))
        if track is None:
            return None
        active = active_label(s, track.id)
        return active.genre if active else None


def labelled_tracks(engine: Engine) -> list[tuple[str, str]]:
    """(path, genre) of every track with an active label whose file is catalogued as
    present (not missing), for retraining; sorted by path."""
    newest = (select(func.max(Correction.id)).where(Correction.active)
              .group_by(Correction.track_id).scalar_subquery())
    with Session(reading(engine)) as s:
        rows = s.execute(
            select(Track.path, Correction.genre).join(Track)
            .where(Correction.id.in_(newest), Track.status != "missing")
            .order_by(Track.path)
        ).all()
        return [(p, g) for p, g in rows]


def latest_correction_id(engine: Engine) -> int:
    """The newest Correction.id (0 when none): "new labels since" is one comparison."""
    with Session(reading(engine)) as s:
        return int(s.scalar(select(func.max(Correction.id))) or 0)


def history(engine: Engine, path: str | os.PathLike[str]) -> list[tuple[str, str, bool]]:
    """(genre, source, active) of every label the track ever had, oldest first."""
    with Session(reading(engine)) as s:
        track = track_at(s, canonical(path))
        if track is None:
            return []
        return [(c.genre, c.source, c.active) for c in track.corrections]


MAX_CSV_LINE_BYTES = 64 << 10  # a path plus a genre; longer is not a label line


def read_label_csv(path: str | os.PathLike[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """(path, genre) rows of a CSV file and the problems of the rows it skipped. A first
    row ``path,genre`` is a header; relative paths are relative to the CSV's folder. A line
    that is not UTF-8, longer than MAX_CSV_LINE_BYTES, or whose genre is not a genre name
    (storage.genres.check_name) is skipped with its problem; the other lines count.
    Raises OSError when the file cannot be read."""
    from storage.genres import GenreNameError, check_name

    base = os.path.dirname(os.path.abspath(path))
    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    with open(path, "rb") as fh:
        lines = _CsvLines(fh, problems)
        reader = csv.reader(lines)
        for row in reader:
            n = lines.line
            cells = [c.strip() for c in row]
            if not any(cells):
                continue
            if n == 1 and [c.lower() for c in cells[:2]] == ["path", "genre"]:
                continue
            if len(cells) < 2 or not cells[0] or not cells[1]:
                problems.append(f"line {n}: expected path,genre")
                continue
            try:
                genre = check_name(cells[1])
            except GenreNameError as e:
                problems.append(f"line {n}: {e}")
                continue
            pairs.append((os.path.join(base, os.path.expanduser(cells[0])), genre))
    return pairs, problems


class _CsvLines:
    """The text lines of a binary file for csv.reader, skipping (and reporting in
    ``problems``) those that are not UTF-8 or too long; ``line`` is the current number."""

    def __init__(self, fh: BinaryIO, problems: list[str]) -> None:
        self.fh, self.problems, self.line = fh, problems, 0

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        while True:
            raw = self.fh.readline(MAX_CSV_LINE_BYTES + 1)
            if not raw:
                raise StopIteration
            self.line += 1
            if len(raw) > MAX_CSV_LINE_BYTES and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # the rest of this line
                    raw = self.fh.readline(MAX_CSV_LINE_BYTES)
                self.problems.append(f"line {self.line}: longer than "
                                     f"{MAX_CSV_LINE_BYTES >> 10} KiB")
                continue
            if self.line == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # the byte-order mark spreadsheet programs write
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                self.problems.append(f"line {self.line}: not UTF-8 text (save the CSV as "
                                     "UTF-8)")


# import_tag_label outcomes
TAG_IMPORTED = "imported"
TAG_SAME = "unchanged"
TAG_KEPT_USER = "kept user correction"
TAG_NONE = "without a genre tag"
TAG_UNUSABLE = "with a genre tag that is not a genre name (control characters, too long)"
TAG_OURS = "tagged by genred's model (not a label)"
TAG_UNREADABLE = "unreadable"


def import_tag_label(engine: Engine, path: str | os.PathLike[str],
                     aliases: Mapping[str, str] | None = None) -> str:
    """Record the genre tag of the file at ``path`` as its label (source ``tag``). A genre
    genred wrote from a prediction is not a label: the model would learn from itself."""
    from storage import tags
    from storage.genres import tag_label

    try:
        kind, values = tags.read_values(path)
        genres = tags.read_genres(path)
    except tags.TagError as e:
        log.debug("no tags read: %s", e)
        return TAG_UNREADABLE
    provenance = tags.provenance(kind, values)
    if provenance is not None and provenance != tags.USER_PROVENANCE:
        return TAG_OURS
    label = tag_label(genres, aliases)
    if label is None:
        return TAG_UNUSABLE if any(g.strip() for g in genres) else TAG_NONE
    result = add_label(engine, path, label, TAG)
    return {ADDED: TAG_IMPORTED, SAME: TAG_SAME, KEPT_USER: TAG_KEPT_USER}[result.outcome]
