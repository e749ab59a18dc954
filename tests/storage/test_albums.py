"""`query --albums`: tracks grouped by album tags (else folder), the genre an album's
tracks agree on, and the tracks that disagree."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from storage import catalogue, corrections
from storage.albums import albums
from storage.query import TrackFilter
from storage.titles import TitleTags
from tests.storage.test_catalogue import Guess


def _track(engine: Engine, path: Path, genre: str, p: float, album: str | None = None,
           artist: str | None = None) -> None:
    other = "Rock" if genre != "Rock" else "Jazz"
    answer = Guess(genre, p, {genre: p, other: 1 - p}, "v1")
    catalogue.record_prediction(engine, path, answer, fingerprint=None, size=1, mtime=1.0,
                                titles=TitleTags(album=album, albumartist=artist))


def test_an_album_of_8_with_2_outliers_gets_one_genre_and_both_flagged(
        engine: Engine, tmp_path: Path) -> None:
    disc = tmp_path / "Kind of Blue"
    for i in range(6):
        _track(engine, disc / f"{i}.flac", "Jazz", 0.8, "Kind of Blue", "Miles Davis")
    _track(engine, disc / "6.flac", "Rock", 0.6, "Kind of Blue", "Miles Davis")
    _track(engine, tmp_path / "elsewhere" / "7.flac", "Rock", 0.55, "KIND OF BLUE",
           "miles davis")  # the same album by its tags, in another folder
    _track(engine, tmp_path / "loose" / "a.flac", "Rock", 0.9)
    _track(engine, tmp_path / "loose" / "b.flac", "Jazz", 0.6)
    corrections.add_label(engine, tmp_path / "loose" / "b.flac", "Rock")

    rows = albums(engine)

    assert len(rows) == 2
    loose, blue = rows  # no album tag sorts first
    assert (blue["album"], blue["tracks"], blue["genre"], blue["disagreeing"]) == (
        "Kind of Blue", 8, "Jazz", 2)
    assert blue["outliers"] == sorted([str(disc / "6.flac"),
                                       str(tmp_path / "elsewhere" / "7.flac")])
    assert blue["folder"] is None  # two folders
    assert blue["confidence"] == round((6 * 0.8 + 0.4 + 0.45) / 8, 4)
    # the label counts as certain: the folder is Rock, nobody disagrees
    assert (loose["folder"], loose["genre"], loose["disagreeing"], loose["confidence"]) == (
        str(tmp_path / "loose"), "Rock", 0, 0.95)
    only = albums(engine, TrackFilter(path=str(disc)))
    assert [(a["tracks"], a["disagreeing"]) for a in only] == [(7, 1)]
