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


def test_with_album_genres_the_albums_genre_is_written_unless_a_track_is_clearly_other(
        engine: Engine, tmp_path: Path) -> None:
    import mutagen

    from storage.tagging import WRITTEN, TagPolicy, write_track
    from tests.audiogen import make_track

    disc = tmp_path / "Blue Train"
    songs = [make_track(disc / f"{i}.flac", "Drone", 1.0, seed=i) for i in range(9)]
    for song in songs[:6]:
        _track(engine, song, "Jazz", 0.8, "Blue Train", "John Coltrane")
    _track(engine, songs[6], "Rock", 0.55, "Blue Train", "John Coltrane")  # Jazz 0.45
    _track(engine, songs[7], "Rock", 0.6, "Blue Train", "John Coltrane")  # Jazz 0.4
    (album,) = albums(engine)
    assert (album["tracks"], album["genre"], album["disagreeing"]) == (8, "Jazz", 2)
    assert album["outliers"] == [str(songs[6]), str(songs[7])]  # flagged for review

    policy = TagPolicy(threshold=0.5, album_margin=0.3)
    outcomes = [write_track(engine, song, policy) for song in songs[:8]]

    assert all(o.action == WRITTEN for o in outcomes), outcomes
    assert [mutagen.File(s).tags["genre"] for s in songs[:8]] == [["Jazz"]] * 8
    assert outcomes[6].detail.endswith("(the album's genre)")
    # a track whose own genre beats the album's by more than the margin keeps it
    _track(engine, songs[8], "Rock", 0.95, "Blue Train", "John Coltrane")
    assert write_track(engine, songs[8], policy).action == WRITTEN
    assert mutagen.File(songs[8]).tags["genre"] == ["Rock"]
    # without album_genres every track gets its own answer
    assert write_track(engine, songs[7], TagPolicy(threshold=0.5)).action == WRITTEN
    assert mutagen.File(songs[7]).tags["genre"] == ["Rock"]


def test_the_review_queue_flags_a_track_that_disagrees_with_its_album_tags(
        engine: Engine, tmp_path: Path) -> None:
    from storage.review import ReviewFilter, review_order

    for i in range(3):  # one album over two folders (CD1, CD2), by its tags
        _track(engine, tmp_path / f"CD{i % 2 + 1}" / f"{i}.flac", "Jazz", 0.8, "Set",
               "Quartet")
    _track(engine, tmp_path / "CD2" / "odd.flac", "Rock", 0.6, "Set", "Quartet")
    _track(engine, tmp_path / "CD2" / "other.flac", "Rock", 0.6, "Another", "Band")
    flagged = {e.track_id: (e.outlier, e.folder_genre)
               for e in review_order(engine, ReviewFilter())}
    ids = {Path(t.path).name: t.id for t in catalogue.tracks_under(engine, tmp_path)}
    assert flagged[ids["odd.flac"]] == (True, "Jazz")
    assert flagged[ids["other.flac"]] == (False, None)  # an album of one: no majority
    assert not any(flagged[ids[f"{i}.flac"]][0] for i in range(3))
