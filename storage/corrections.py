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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from storage.catalogue import canonical, get_or_create_track, track_at, under
from storage.db import reading, writing
from storage.schema import TAG, USER, Correction, TagBackup, Track

log = logging.getLogger(__name__)

ADDED = "added"
SAME = "unchanged"  # the same label is already active
KEPT_USER = "kept-user"  # a tag label did not override a user correction


@dataclass(frozen=True)
class LabelResult:
    path: str
    genre: str  # the main genre
    outcome: str  # ADDED | SAME | KEPT_USER
    genres: tuple[str, ...] = ()  # every genre of the label, main first

    def shown(self) -> str:
        """"Rock; Blues" for the label's genres."""
        return "; ".join(self.genres or (self.genre,))


def active_label(s: Session, track_id: int) -> Correction | None:
    return s.scalars(
        select(Correction).where(Correction.track_id == track_id, Correction.active)
        .order_by(Correction.id.desc()).limit(1)
    ).first()


def label_genres(label: Correction) -> list[str]:
    """Every genre of a stored label, main first."""
    from storage.genres import genres_or

    return genres_or(label.genre, label.genres)


def add_label(engine: Engine, path: str | os.PathLike[str], genre: str | Sequence[str],
              source: str = USER) -> LabelResult:
    """Make ``genre`` (already normalised; or several, the main one first) the active label
    of the track at ``path``.

    Earlier active labels are deactivated (kept as history)."""
    from storage.genres import unique

    genres = unique([genre] if isinstance(genre, str) else genre)
    if not genres:
        raise ValueError("a label needs at least one genre")
    with Session(writing(engine)) as s, s.begin():
        track = get_or_create_track(s, canonical(path))
        current = active_label(s, track.id)
        if current is not None and label_genres(current) == genres:
            return LabelResult(track.path, genres[0], SAME, tuple(genres))
        if current is not None and current.source == USER and source == TAG:
            return LabelResult(track.path, current.genre, KEPT_USER,
                               tuple(label_genres(current)))
        for old in s.scalars(select(Correction).where(Correction.track_id == track.id,
                                                      Correction.active)):
            old.active = False
        s.add(Correction(track_id=track.id, genre=genres[0], genres=genres, source=source,
                         active=True))
        return LabelResult(track.path, genres[0], ADDED, tuple(genres))


def add_labels(engine: Engine, labels: Iterable[tuple[str, str]],
               source: str = USER) -> list[LabelResult]:
    """``add_label`` for each (path, genre), one short transaction each."""
    return [add_label(engine, path, genre, source) for path, genre in labels]


def remove_label(engine: Engine, path: str | os.PathLike[str]) -> int:
    """Deactivate the active labels of the track at ``path`` and of every track under it
    when it is a folder; returns how many tracks lost a label."""
    with Session(writing(engine)) as s, s.begin():
        rows = s.scalars(select(Correction).join(Track)
                         .where(Correction.active, under(path))).all()
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


def labelled_genres(engine: Engine) -> dict[str, list[str]]:
    """path -> every genre of its active label (main first), for the tracks
    ``labelled_tracks`` gives."""
    from storage.genres import genres_or

    newest = (select(func.max(Correction.id)).where(Correction.active)
              .group_by(Correction.track_id).scalar_subquery())
    with Session(reading(engine)) as s:
        rows = s.execute(
            select(Track.path, Correction.genre, Correction.genres).join(Track)
            .where(Correction.id.in_(newest), Track.status != "missing")
        ).all()
        return {p: genres_or(g, gs) for p, g, gs in rows}


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
    """(path, genre) rows of a CSV file (a genre cell "Rock; Blues" names two genres) and
    the problems of the rows it skipped. A first row ``path,genre`` is a header; relative
    paths are relative to the CSV's folder. A line that is not UTF-8, longer than
    MAX_CSV_LINE_BYTES, or whose genre is not a genre name (storage.genres.check_name) is
    skipped with its problem; the other lines count.
    Raises OSError when the file cannot be read."""
    rows, problems = read_label_csv_lines(path)
    return [(p, g) for _, p, g in rows], problems


def read_label_csv_lines(path: str | os.PathLike[str]
                         ) -> tuple[list[tuple[int, str, str]], list[str]]:
    """As :func:`read_label_csv`, each row with its line number. A genre cell may name
    several genres, main first ("Rock; Blues"): each is checked, and the cell comes back
    as their checked names joined with "; "."""
    from storage.genres import GenreNameError, check_name, split_list

    base = os.path.dirname(os.path.abspath(path))
    rows: list[tuple[int, str, str]] = []
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
                genre = "; ".join(check_name(part) for part in split_list(cells[1]) or [""])
            except GenreNameError as e:
                problems.append(f"line {n}: {e}")
                continue
            rows.append((n, os.path.join(base, os.path.expanduser(cells[0])), genre))
    return rows, problems


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
TAG_WOULD_IMPORT = "would import"
TAG_SAME = "unchanged"
TAG_KEPT_USER = "kept user correction"
TAG_NONE = "without a genre tag"
TAG_PLACEHOLDER = "with a placeholder genre (skipped)"
TAG_UNUSABLE = "with a genre tag that is not a genre name (control characters, too long)"
TAG_OURS = "tagged by genred's model (not a label)"
TAG_UNREADABLE = "unreadable"


@dataclass(frozen=True)
class TagImport:
    """How `import-tags` reads genre tags: the known genres (matched case-insensitively,
    first spelling), the config's aliases and its ``ignore_genres``."""

    known: list[str] = field(default_factory=list)
    aliases: Mapping[str, str] = field(default_factory=dict)
    ignore: tuple[str, ...] = ()


@dataclass(frozen=True)
class TagResult:
    outcome: str
    genre: str | None = None  # the label's genres as shown, "Rock; Blues"
    new_genre: bool = False  # one of them is neither known nor an alias
    new_genres: tuple[str, ...] = ()  # which


def tag_genres(values: list[str], options: TagImport) -> tuple[list[str], list[str]]:
    """(the genres a file's genre tag values stand for, in the tag's order, each once;
    those of them that are new genres). ([], []) when every value is empty or a placeholder.
    Every value counts (a Vorbis file's two GENRE fields, an ID3v2.4 list); a value that is
    a known genre or alias ("Hip Hop/Rap") counts whole, else a multi-genre value ("Rock;
    Pop", "Rock/Pop") gives each of its genres; an ID3 numeric code gives its genre's
    name. The first is the label's main genre."""
    from storage.genres import id3_code_genre, is_placeholder, resolve, spelled, split_values
    from storage.genres import unique as once

    def known(name: str) -> str | None:
        return resolve(id3_code_genre(name) or name, options.known, options.aliases)

    found: list[str] = []
    new: list[str] = []
    for value in values:
        if is_placeholder(value, options.ignore):
            continue
        whole = known(value)
        if whole is not None:
            found.append(whole)
            continue
        for part in split_values(value):
            if is_placeholder(part, options.ignore):
                continue
            genre = known(part)
            if genre is None:
                genre = spelled(id3_code_genre(part) or part)
                new.append(genre)
            found.append(genre)
    genres = once(found)
    return genres, [g for g in once(new) if g in genres]


def _edited_since_written(s: Session, path: str, kind: str, genres: list[str]) -> bool:
    """True when genred wrote this file's genre and the file now says something else
    (edited in another tagger): the provenance keys genred wrote may still be there."""
    from storage import tags

    track = track_at(s, canonical(path))
    if track is None:
        return False
    backup = s.scalars(select(TagBackup).where(TagBackup.track_id == track.id,
                                               TagBackup.restored.is_(False))
                       .order_by(TagBackup.id.desc())).first()
    if backup is None or not backup.written:
        return False
    return tags.genre_of(kind, dict(backup.written)) != genres


def import_tag_label(engine: Engine, path: str | os.PathLike[str],
                     options: TagImport | None = None, pretend: bool = False) -> TagResult:
    """Record the genre tag of the file at ``path`` as its label (source ``tag``); with
    ``pretend`` only say what would happen. A genre genred wrote from a prediction is not
    a label (the model would learn from itself) — unless the file's genre was changed since
    genred wrote it: then the user set it, whatever provenance keys are still on the file."""
    from storage import tags

    options = options or TagImport()
    try:
        kind, values = tags.read_values(path)
        genres = tags.read_genres(path)
    except tags.TagError as e:
        log.debug("no tags read: %s", e)
        return TagResult(TAG_UNREADABLE)
    provenance = tags.provenance(kind, values)
    if provenance is not None and provenance != tags.USER_PROVENANCE:
        with Session(reading(engine)) as s:
            if not _edited_since_written(s, str(path), kind, tags.genre_of(kind, values)):
                return TagResult(TAG_OURS)
    if not genres:
        return TagResult(TAG_NONE)
    usable = [g for g in genres if _is_name(g)]
    if not usable:
        return TagResult(TAG_UNUSABLE)
    label, new = tag_genres(usable, options)
    if not label:
        return TagResult(TAG_PLACEHOLDER)
    shown = "; ".join(label)
    if pretend:
        current = corrected_source(engine, path)
        if current is not None and corrected_genres(engine, path) == label:
            return TagResult(TAG_SAME, shown)
        if current is not None and current[1] == USER:
            return TagResult(TAG_KEPT_USER, "; ".join(corrected_genres(engine, path)))
        return TagResult(TAG_WOULD_IMPORT, shown, bool(new), tuple(new))
    result = add_label(engine, path, label, TAG)
    outcome = {ADDED: TAG_IMPORTED, SAME: TAG_SAME, KEPT_USER: TAG_KEPT_USER}[result.outcome]
    added = result.outcome == ADDED
    return TagResult(outcome, result.shown(),
                     bool(new) and added, tuple(new) if added else ())


def _is_name(value: str) -> bool:
    from storage.genres import GenreNameError, check_name

    try:
        check_name(value)
    except GenreNameError:
        return False
    return True


def corrected_genres(engine: Engine, path: str | os.PathLike[str]) -> list[str]:
    """Every genre of the track's active label, main first ([] when none)."""
    with Session(reading(engine)) as s:
        track = track_at(s, canonical(path))
        active = active_label(s, track.id) if track is not None else None
        return label_genres(active) if active else []


def corrected_source(engine: Engine, path: str | os.PathLike[str]) -> tuple[str, str] | None:
    """(genre, source) of the track's active label, or None."""
    with Session(reading(engine)) as s:
        track = track_at(s, canonical(path))
        active = active_label(s, track.id) if track is not None else None
        return (active.genre, active.source) if active else None
