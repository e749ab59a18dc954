"""The review queue's order (least certain first, album outliers ranked up), its filters,
and title tags read from real files."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from storage import catalogue, corrections
from storage.review import ReviewFilter, genre_vocabulary, review_queue
from storage.titles import title_tags
from tests.audiogen import make_track
from tests.storage.test_catalogue import Guess


def record(engine: Engine, path: str, probabilities: dict[str, float],
           model: str = "v1") -> int:
    genre = max(probabilities, key=lambda g: probabilities[g])
    guess = Guess(genre, probabilities[genre], probabilities, model)
    return catalogue.record_prediction(engine, path, guess, fingerprint=None, size=1,
                                       mtime=1.0)


def order(engine: Engine, **kw: object) -> list[int]:
    return [e.track_id for e in review_queue(engine, ReviewFilter(**kw)).entries]  # type: ignore[arg-type]


def test_the_smallest_margin_comes_first_not_the_lowest_confidence(engine: Engine) -> None:
    sure = record(engine, "/m/a/sure.mp3", {"Jazz": 0.45, "Rock": 0.30, "Pop": 0.25})
    torn = record(engine, "/m/b/torn.mp3", {"Jazz": 0.50, "Rock": 0.48, "Pop": 0.02})
    clear = record(engine, "/m/c/clear.mp3", {"Jazz": 0.40, "Rock": 0.05, "Pop": 0.05})
    # "torn" has the highest confidence of the three but its two top genres nearly tie;
    # "clear" has the lowest confidence and the widest margin
    assert order(engine) == [torn, sure, clear]


def test_an_album_outlier_is_ranked_up(engine: Engine) -> None:
    for n in range(3):
        record(engine, f"/m/album/{n}.flac", {"Jazz": 0.9, "Rock": 0.1})
    odd = record(engine, "/m/album/odd.flac", {"Rock": 0.65, "Jazz": 0.35})  # margin 0.3
    elsewhere = record(engine, "/m/other/x.flac", {"Pop": 0.6, "Rock": 0.4})  # margin 0.2
    page = review_queue(engine, ReviewFilter())
    assert [e.track_id for e in page.entries][:2] == [odd, elsewhere]
    first = page.entries[0]
    assert first.outlier and first.folder_genre == "Jazz" and abs(first.margin - 0.3) < 1e-9
    assert not page.entries[1].outlier


def test_labelled_tracks_leave_the_queue_and_filters_apply(engine: Engine) -> None:
    a = record(engine, "/m/jazz/a.flac", {"Jazz": 0.7, "Rock": 0.3}, model="v1")
    b = record(engine, "/m/jazz/b.flac", {"Jazz": 0.55, "Rock": 0.45}, model="v2")
    c = record(engine, "/m/rock/c.flac", {"Rock": 0.9, "Jazz": 0.1}, model="v2")
    record(engine, "/m/rock/d.flac", {"Rock": 0.8, "Jazz": 0.2})
    corrections.add_label(engine, "/m/rock/d.flac", "Rock")
    catalogue.record_error(engine, "/m/bad.mp3", "not audio")
    assert review_queue(engine, ReviewFilter()).total == 3
    assert set(order(engine, genre="jazz")) == {a, b}
    assert order(engine, folder="/m/rock") == [c]
    assert order(engine, model="v2") == [b, c]
    assert order(engine, min_confidence=0.6, max_confidence=0.8) == [a]
    assert order(engine, limit=1, offset=1) == [a]
    assert genre_vocabulary(engine) == {"Jazz": {"predicted": 2, "labels": 0},
                                        "Rock": {"predicted": 2, "labels": 1}}


def test_title_tags_come_from_the_file(tmp_path: Path) -> None:
    import mutagen

    song = make_track(tmp_path / "song.flac", "Drone", 1.0)
    audio = mutagen.File(song, easy=True)
    audio["title"], audio["artist"], audio["album"] = "<b>Blue</b> in Green", "Miles", "Kind"
    audio.save()
    tags = title_tags(song)
    assert (tags.title, tags.artist, tags.album) == ("<b>Blue</b> in Green", "Miles", "Kind")
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"not music at all")
    assert title_tags(broken).title is None
    assert title_tags(tmp_path / "absent.mp3").title is None


def test_the_review_folder_filter_and_the_album_action_take_exactly_the_folder(
        engine: Engine) -> None:
    """The web page's folder filter and its album action use the one folder rule: folders
    that differ only in case, or that a LIKE/GLOB pattern or a bare prefix would match,
    are never taken along (issue 9 item 1)."""
    from storage.review import folder_track_ids

    targets = ["Jazz", "a%b", "a_b", "a[b]", "a*b", "a\\b"]
    decoys = ["jazz", "JAZZ", "Jazz0", "Jazz Funk", "aXb", "ab", "aZZb", "a\\\\b", "a%bc"]
    ids = {folder: record(engine, f"/m/{folder}/t.flac", {"Jazz": 0.6, "Rock": 0.4})
           for folder in targets + decoys}
    deeper = record(engine, "/m/Jazz/Live/t.flac", {"Jazz": 0.6, "Rock": 0.4})
    for folder in targets:
        inside = {ids[folder]} | ({deeper} if folder == "Jazz" else set())
        assert set(order(engine, folder=f"/m/{folder}")) == inside, folder
        assert folder_track_ids(engine, f"/m/{folder}") == [ids[folder]], folder
