"""Several genres per track in the catalogue: which genres an answer holds, labels with
several genres, `query` rows (both the SQLite-built JSON and the Python rows), renames,
and rows written before the lists existed."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, update

from storage import catalogue, corrections
from storage.corrections import ADDED, SAME
from storage.genres import MultiGenre, split_list
from storage.query import TrackFilter, query_json, query_tracks
from storage.schema import Prediction
from storage.vocabulary import rename
from tests.storage.test_catalogue import Guess

PROBS = {"Rock": 0.45, "Blues": 0.4, "Jazz": 0.1, "Pop": 0.05}


def test_the_answer_is_the_top_genre_plus_those_reaching_the_threshold() -> None:
    assert MultiGenre(2, 0.35).pick("Rock", PROBS) == ["Rock", "Blues"]
    assert MultiGenre(1, 0.35).pick("Rock", PROBS) == ["Rock"]  # today's behaviour
    assert MultiGenre(2, 0.41).pick("Rock", PROBS) == ["Rock"]
    assert MultiGenre(4, 0.05).pick("Rock", PROBS) == ["Rock", "Blues", "Jazz", "Pop"]
    assert MultiGenre(3, 0.05).pick("Rock", PROBS) == ["Rock", "Blues", "Jazz"]
    assert MultiGenre(2, 0.0).pick("Rock", {"Rock": 1.0}) == ["Rock"]


def test_a_typed_list_splits_on_semicolons_only() -> None:
    assert split_list(" Rock ;Blues; ") == ["Rock", "Blues"]
    assert split_list("Hip Hop/Rap") == ["Hip Hop/Rap"]
    assert split_list("Folk, World") == ["Folk, World"]


def _record(engine: Engine, path: Path, multi: MultiGenre) -> None:
    catalogue.record_prediction(engine, path, Guess("Rock", 0.45, PROBS, "v1"),
                                fingerprint=None, size=1, mtime=1.0, multi=multi)


def _rows(engine: Engine, **flt: object) -> dict[str, dict[str, object]]:
    """path name -> row, the same from query_tracks and query_json (which SQLite builds)."""
    f = TrackFilter(**flt)  # type: ignore[arg-type]
    rows = query_tracks(engine, f)
    assert json.loads(query_json(engine, f)) == json.loads(json.dumps(rows))
    return {Path(str(r["path"])).name: r for r in rows}


def test_predictions_and_labels_keep_their_genres_in_order(engine: Engine,
                                                          tmp_path: Path) -> None:
    _record(engine, tmp_path / "two.flac", MultiGenre(2, 0.35))
    _record(engine, tmp_path / "one.flac", MultiGenre(1, 0.35))
    _record(engine, tmp_path / "corrected.flac", MultiGenre(2, 0.35))
    catalogue.mark_pending(engine, tmp_path / "waiting.flac")
    result = corrections.add_label(engine, tmp_path / "corrected.flac", ["Jazz", "Soul"])
    assert (result.outcome, result.genre, result.genres) == (ADDED, "Jazz", ("Jazz", "Soul"))
    again = corrections.add_label(engine, tmp_path / "corrected.flac", ["Jazz", "Soul"])
    assert again.outcome == SAME
    assert corrections.add_label(engine, tmp_path / "corrected.flac",
                                 ["Soul", "Jazz"]).outcome == ADDED  # another main genre

    rows = _rows(engine)

    assert {n: (r["genre"], r["genres"]) for n, r in rows.items()} == {
        "two.flac": ("Rock", ["Rock", "Blues"]), "one.flac": ("Rock", ["Rock"]),
        "corrected.flac": ("Soul", ["Soul", "Jazz"]), "waiting.flac": (None, None)}
    assert corrections.corrected_genres(engine, tmp_path / "corrected.flac") == ["Soul", "Jazz"]
    assert corrections.labelled_genres(engine) == {
        str(tmp_path / "corrected.flac"): ["Soul", "Jazz"]}


def test_rows_from_before_the_lists_show_their_one_genre(engine: Engine,
                                                         tmp_path: Path) -> None:
    _record(engine, tmp_path / "old.flac", MultiGenre(2, 0.35))
    with engine.begin() as conn:  # as the migration leaves an older catalogue's rows
        conn.execute(update(Prediction).values(genres=None))
    assert _rows(engine)["old.flac"]["genres"] == ["Rock"]


def test_a_rename_reaches_secondary_genres(engine: Engine, tmp_path: Path) -> None:
    _record(engine, tmp_path / "a.flac", MultiGenre(2, 0.35))
    corrections.add_label(engine, tmp_path / "b.flac", ["Jazz", "Blues"])
    result = rename(engine, "Blues", "Delta Blues")
    assert result.labels == 1
    rows = _rows(engine)
    assert rows["a.flac"]["genres"] == ["Rock", "Delta Blues"]
    assert rows["b.flac"]["genres"] == ["Jazz", "Delta Blues"]


def test_retraining_reads_every_genre_of_a_label(engine: Engine, tmp_path: Path) -> None:
    from storage.training_runs import label_rows

    corrections.add_label(engine, tmp_path / "a.flac", ["Rock", "Blues", "Soul"])
    corrections.add_label(engine, tmp_path / "b.flac", "Jazz")
    rows = {Path(r.path).name: (r.genre, r.also) for r in label_rows(engine)}
    assert rows == {"a.flac": ("Rock", ("Blues", "Soul")), "b.flac": ("Jazz", ())}
