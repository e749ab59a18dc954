"""Labels: user corrections win, history is kept, tags never override a user."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from storage import catalogue, corrections, moves
from storage.schema import MISSING, PENDING, TAG, USER
from tests.audiogen import make_track


def test_a_correction_for_an_unknown_path_creates_a_pending_track(engine: Engine) -> None:
    result = corrections.add_label(engine, "/m/new.flac", "Jazz")
    assert result.outcome == corrections.ADDED
    info = catalogue.get_track(engine, "/m/new.flac")
    assert info is not None and info.status == PENDING
    assert corrections.corrected_genre(engine, "/m/new.flac") == "Jazz"


def test_the_newest_correction_wins_and_history_is_kept(engine: Engine) -> None:
    corrections.add_label(engine, "/m/a.mp3", "Jazz")
    corrections.add_label(engine, "/m/a.mp3", "Blues")
    assert corrections.add_label(engine, "/m/a.mp3", "Blues").outcome == corrections.SAME
    assert corrections.corrected_genre(engine, "/m/a.mp3") == "Blues"
    assert corrections.history(engine, "/m/a.mp3") == [("Jazz", USER, False),
                                                       ("Blues", USER, True)]


def test_uncorrect_deactivates_a_folder_and_keeps_the_history(engine: Engine) -> None:
    for name in ("a", "b"):
        corrections.add_label(engine, f"/m/album/{name}.mp3", "Jazz")
    corrections.add_label(engine, "/m/album2/c.mp3", "Jazz")  # a prefix, not inside

    assert corrections.remove_label(engine, "/m/album") == 2

    assert corrections.corrected_genre(engine, "/m/album/a.mp3") is None
    assert corrections.corrected_genre(engine, "/m/album2/c.mp3") == "Jazz"
    assert corrections.history(engine, "/m/album/a.mp3") == [("Jazz", USER, False)]


def test_a_tag_label_never_overrides_a_user_correction(engine: Engine) -> None:
    corrections.add_label(engine, "/m/a.mp3", "Jazz", USER)
    result = corrections.add_label(engine, "/m/a.mp3", "Rock", TAG)
    assert result.outcome == corrections.KEPT_USER
    assert corrections.corrected_genre(engine, "/m/a.mp3") == "Jazz"
    # ...but a user correction does override a tag label
    corrections.add_label(engine, "/m/b.mp3", "Rock", TAG)
    corrections.add_label(engine, "/m/b.mp3", "Jazz", USER)
    assert corrections.corrected_genre(engine, "/m/b.mp3") == "Jazz"


def test_labelled_tracks_lists_active_labels_of_present_tracks(engine: Engine) -> None:
    corrections.add_label(engine, "/m/a.mp3", "Jazz")
    corrections.add_label(engine, "/m/a.mp3", "Blues")
    corrections.add_label(engine, "/m/b.mp3", "Rock")
    corrections.add_label(engine, "/m/gone.mp3", "Pop")
    moves.mark_missing(engine, "/m/gone.mp3")
    corrections.add_label(engine, "/m/c.mp3", "Pop")
    corrections.remove_label(engine, "/m/c.mp3")

    assert corrections.labelled_tracks(engine) == [("/m/a.mp3", "Blues"), ("/m/b.mp3", "Rock")]
    assert corrections.latest_correction_id(engine) == 5
    assert catalogue.get_track(engine, "/m/gone.mp3").status == MISSING  # type: ignore[union-attr]


def test_label_csv_with_or_without_header(tmp_path: Path) -> None:
    (tmp_path / "with.csv").write_text("path,genre\nsub/a.mp3, hip hop \n\n/abs/b.mp3,Jazz\n")
    (tmp_path / "without.csv").write_text("a.mp3,Rock\nbroken-line\n")
    pairs, problems = corrections.read_label_csv(tmp_path / "with.csv")
    assert pairs == [(str(tmp_path / "sub" / "a.mp3"), "hip hop"), ("/abs/b.mp3", "Jazz")]
    assert problems == []
    pairs, problems = corrections.read_label_csv(tmp_path / "without.csv")
    assert pairs == [(str(tmp_path / "a.mp3"), "Rock")]
    assert problems == ["line 2: expected path,genre"]


def test_import_tag_label_takes_the_files_genre_through_the_aliases(
    engine: Engine, tmp_path: Path
) -> None:
    from storage import tags

    song = make_track(tmp_path / "a.flac", "Drone", 3.0)
    assert corrections.import_tag_label(engine, song).outcome == corrections.TAG_NONE
    tags.update(song, {"genre": ["Hip-Hop"]})
    assert corrections.import_tag_label(engine, song).outcome == corrections.TAG_IMPORTED
    assert corrections.import_tag_label(engine, song).outcome == corrections.TAG_SAME
    assert corrections.corrected_genre(engine, song) == "Rap"
    assert corrections.history(engine, song) == [("Rap", TAG, True)]


def test_every_genre_of_a_multi_value_tag_is_imported_main_first(
    engine: Engine, tmp_path: Path
) -> None:
    from storage import tags

    flac = make_track(tmp_path / "a.flac", "Drone", 3.0)
    tags.update(flac, {"genre": ["Rock", "hip hop", "Other"]})  # two Vorbis GENRE fields
    mp3 = make_track(tmp_path / "b.mp3", "Drone", 3.0)
    tags.update(mp3, {"TCON": ["Blues; Swing/Sea Shanty"]})  # an ID3v2.3 joined value
    options = corrections.TagImport(known=["Rock", "Blues"])
    plan = corrections.import_tag_label(engine, mp3, options, pretend=True)
    assert (plan.outcome, plan.genre, plan.new_genres) == (
        corrections.TAG_WOULD_IMPORT, "Blues; Swing; Sea Shanty", ("Sea Shanty",))
    assert corrections.import_tag_label(engine, flac, options).genre == "Rock; Rap"
    assert corrections.import_tag_label(engine, mp3, options).outcome == \
        corrections.TAG_IMPORTED
    assert corrections.corrected_genres(engine, flac) == ["Rock", "Rap"]
    assert corrections.corrected_genres(engine, mp3) == ["Blues", "Swing", "Sea Shanty"]
    assert corrections.import_tag_label(engine, mp3, options).outcome == corrections.TAG_SAME
    assert corrections.import_tag_label(engine, mp3, options, pretend=True).outcome == \
        corrections.TAG_SAME


def test_a_genre_genred_wrote_from_a_prediction_is_not_imported(
    engine: Engine, tmp_path: Path
) -> None:
    from storage import tags

    song = make_track(tmp_path / "a.mp3", "Drone", 3.0)
    tags.update(song, tags.genre_values("id3", "Jazz", "model-v1", 0.6))
    assert corrections.import_tag_label(engine, song).outcome == corrections.TAG_OURS
    assert corrections.corrected_genre(engine, song) is None
    (tmp_path / "not.mp3").write_text("not audio")
    assert corrections.import_tag_label(engine, tmp_path / "not.mp3").outcome == \
        corrections.TAG_UNREADABLE
