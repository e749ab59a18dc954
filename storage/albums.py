"""Albums: the catalogue's tracks grouped as the files' tags group them, each with the
genre its tracks agree on (``genred query --albums``).

Grouping: the album tag with the album-artist tag; an album tag without an album artist
within its folder (two "Greatest Hits" in two folders are two albums); a track without an
album tag by its folder. Names compare case-insensitively.

An album's genre is the most probable one over the mean of its tracks' probabilities; a
labelled track counts as certain of its label's main genre (probability 1). Tracks whose
own main genre (label, else prediction) is another are the album's *outliers*: worth a
look in the review page. Tracks without an answer (pending, error, missing) are counted
in ``tracks`` but vote for nothing.

Example::

    [a for a in albums(engine, TrackFilter(path="/music")) if a["disagreeing"]]
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from sqlalchemy import Engine

from storage.query import TrackFilter, query_tracks

COLUMNS = ("album", "album_artist", "folder", "tracks", "genre", "confidence",
           "disagreeing", "outliers")


def album_key(row: dict[str, Any]) -> tuple[str, ...]:
    """The album a track (a row with path, album, album_artist) belongs to."""
    album, artist = row.get("album"), row.get("album_artist")
    folder = os.path.dirname(str(row["path"]))
    if album and artist:
        return ("tags", album.casefold(), artist.casefold())
    if album:
        return ("album", album.casefold(), folder)
    return ("folder", folder)


def _votes(row: dict[str, Any]) -> dict[str, float] | None:
    """What one track says: its label's main genre for sure, else its probabilities."""
    if row.get("corrected_genre"):
        return {str(row["corrected_genre"]): 1.0}
    probabilities = row.get("probabilities")
    return {str(g): float(p) for g, p in probabilities.items()} if probabilities else None


def album_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One album's row from its tracks' ``storage.query`` rows."""
    votes = [v for v in (_votes(r) for r in rows) if v]
    mean: dict[str, float] = {}
    for vote in votes:
        for name, p in vote.items():
            mean[name] = mean.get(name, 0.0) + p / len(votes)
    genre: str | None = min(mean, key=lambda g: (-mean[g], g)) if mean else None
    outliers = sorted(str(r["path"]) for r in rows
                      if genre is not None and r.get("genre") and r["genre"] != genre)
    folders = {os.path.dirname(str(r["path"])) for r in rows}
    first = rows[0]
    return {
        "album": first.get("album"),
        "album_artist": first.get("album_artist"),
        "folder": folders.pop() if len(folders) == 1 else None,
        "tracks": len(rows),
        "genre": genre,
        "confidence": round(mean[genre], 4) if genre is not None else None,
        "disagreeing": len(outliers),
        "outliers": outliers,
    }


def album_with(engine: Engine, path: str
               ) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(the track's ``storage.query`` row, its album's row) for the track at canonical
    ``path`` (its fellow tracks found by the grouping ``albums`` uses), or None when the
    catalogue has no such track."""
    row = next((r for r in query_tracks(engine, TrackFilter(path=path)) if r["path"] == path),
               None)
    if row is None:
        return None
    key = album_key(row)
    if key[0] == "tags":
        f = TrackFilter(album=row["album"])
    else:
        f = TrackFilter(path=os.path.dirname(path))
    return row, album_of([r for r in query_tracks(engine, f) if album_key(r) == key])


def follows_album(row: dict[str, Any], album: dict[str, Any], margin: float) -> bool:
    """Should an uncorrected track (``storage.query`` row) take its album's genre? Yes
    unless its own confidence exceeds its probability of the album's genre by more than
    ``margin`` (a clearly different track keeps its own)."""
    genre = album.get("genre")
    if genre is None or row.get("genre") == genre or album["tracks"] < 2:
        return False
    probabilities = row.get("probabilities") or {}
    own = float(row.get("confidence") or 0.0)
    return own - float(probabilities.get(genre, 0.0)) <= margin


def albums(engine: Engine, f: TrackFilter | None = None) -> list[dict[str, Any]]:
    """One row per album among the tracks ``f`` selects (its limit and sort are for the
    albums: at most ``limit`` albums, ordered by album name, then folder), keys as in
    ``COLUMNS``."""
    f = f or TrackFilter()
    rows = query_tracks(engine, replace(f, limit=None, offset=None, sort="path"))
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(album_key(row), []).append(row)
    out = [album_of(tracks) for tracks in groups.values()]
    out.sort(key=lambda a: ((a["album"] or "").casefold(), a["folder"] or "",
                            (a["album_artist"] or "").casefold()))
    return out[:f.limit] if f.limit is not None else out
