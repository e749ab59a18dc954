"""Sub-genres: the genre tree, answers read through it (a parent holds at least its
children's probability), and a parent-genre query finding sub-genre tracks in a real
catalogue (SQLite and PostgreSQL)."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import Engine

from storage import catalogue, corrections
from storage.genres import MultiGenre, fold
from storage.genretree import BUILT_IN, GenreTree, GenreTreeError
from storage.query import TrackFilter, query_tracks
from tests.storage.test_catalogue import Guess

TREE = GenreTree.built_in({"Nu Jazz": "Jazz"})


def test_the_built_in_tree_names_the_issues_examples_under_their_parents() -> None:
    for child, parent in [("House", "Electronic"), ("Techno", "Electronic"),
                          ("drum and bass", "Electronic"), ("Hard Rock", "Rock"),
                          ("punk", "Rock"), ("Alternative Rock", "Rock"), ("Bebop", "Jazz"),
                          ("Swing", "Jazz"), ("Baroque", "Classical"),
                          ("Romantic", "Classical"), ("Nu Jazz", "Jazz")]:
        assert TREE.ancestors(child)[-1] == parent, child
    # the bundled starter's twelve genres are side by side: none is under another
    starter = ["Blues", "Classical", "Country", "Disco", "Electronic", "Folk", "Jazz",
               "Metal", "Pop", "Rap", "Reggae", "Rock"]
    assert all(TREE.parent(g) is None for g in starter)
    assert all(fold(c) not in {fold(g) for g in starter} for c in BUILT_IN)


def test_a_parent_holds_at_least_the_sum_of_its_children() -> None:
    rng = random.Random(7)
    names = ["Electronic", "House", "Deep House", "Techno", "Rock", "Punk", "Jazz", "Nu Jazz"]
    for _ in range(200):
        picked = rng.sample(names, rng.randint(1, len(names)))
        weights = [rng.random() for _ in picked]
        probs = {g: w / sum(weights) for g, w in zip(picked, weights, strict=True)}
        rolled = TREE.rolled_up(probs)
        for name, p in rolled.items():
            children = [c for c in rolled if TREE.parent(c) == name]
            assert p >= sum(rolled[c] for c in children) - 1e-6
            assert p >= probs.get(name, 0.0) - 1e-6
        assert rolled["Electronic" if "House" in probs else picked[0]] > 0


def test_the_answer_goes_down_the_tree_while_a_sub_genre_holds_the_majority() -> None:
    multi = MultiGenre(2, 0.35, TREE)
    # House holds more than half of Electronic's 0.85: the answer is House
    genre, confidence, rolled, genres = multi.answer(
        "House", 0.45, {"House": 0.45, "Electronic": 0.4, "Rock": 0.15})
    assert (genre, confidence, genres) == ("House", 0.45, ["House"])
    assert rolled["Electronic"] == pytest.approx(0.85)
    # two sub-genres split Electronic: neither is the answer, their parent is, and it beats
    # Rock, the single most probable output
    genre, confidence, rolled, genres = multi.answer(
        "Rock", 0.4, {"House": 0.3, "Techno": 0.3, "Rock": 0.4})
    assert (genre, genres) == ("Electronic", ["Electronic", "Rock"])
    assert confidence == pytest.approx(0.6) and rolled["Electronic"] == pytest.approx(0.6)
    # the second genre is the most specific one reaching the threshold, never a parent of
    # the first
    genre, _, _, genres = multi.answer(
        "Rock", 0.4, {"Rock": 0.25, "Punk": 0.3, "Nu Jazz": 0.4, "Jazz": 0.05})
    assert genres == ["Punk", "Nu Jazz"]  # Punk holds 0.3 of Rock's 0.55


def test_without_sub_genres_among_the_outputs_the_answer_is_unchanged() -> None:
    probs = {"Rock": 0.45, "Blues": 0.4, "Jazz": 0.1, "Pop": 0.05}
    flat = MultiGenre(2, 0.35)
    assert MultiGenre(2, 0.35, TREE).answer("Rock", 0.45, probs) == flat.answer(
        "Rock", 0.45, probs) == ("Rock", 0.45, probs, ["Rock", "Blues"])


def test_parents_are_written_before_each_genre_once() -> None:
    assert TREE.with_parents(["Deep House", "Techno", "Rock"]) == [
        "Electronic", "House", "Deep House", "Techno", "Rock"]
    assert TREE.most_specific(["Electronic", "House", "Rock"]) == ["House", "Rock"]


def test_a_tree_that_is_no_tree_is_refused() -> None:
    with pytest.raises(GenreTreeError, match="cycle"):
        GenreTree.built_in({"Electronic": "House"})
    with pytest.raises(GenreTreeError, match="own parent"):
        GenreTree.built_in({"Jazz": " JAZZ "})


def test_a_parent_genre_query_finds_sub_genre_tracks(engine: Engine) -> None:
    multi = MultiGenre(2, 0.35, TREE)
    catalogue.record_prediction(
        engine, "/m/house.mp3", Guess("House", 0.6, {"House": 0.6, "Rock": 0.4}, "v1"),
        fingerprint=None, size=1, mtime=1.0, multi=multi)
    catalogue.record_prediction(
        engine, "/m/rock.mp3", Guess("Rock", 0.9, {"Rock": 0.9, "House": 0.1}, "v1"),
        fingerprint=None, size=1, mtime=1.0, multi=multi)
    catalogue.record_prediction(
        engine, "/m/nujazz.mp3", Guess("Rock", 0.5, {"Rock": 0.5, "Jazz": 0.5}, "v1"),
        fingerprint=None, size=1, mtime=1.0, multi=multi)
    corrections.add_label(engine, "/m/nujazz.mp3", "Nu Jazz")  # a sub-genre label

    def found(typed: str) -> list[str]:
        rows = query_tracks(engine, TrackFilter(genre=TREE.query_names(typed)))
        return sorted(str(r["path"]) for r in rows)

    assert found("electronic") == ["/m/house.mp3"]
    assert found("House") == ["/m/house.mp3"]
    assert found("Jazz") == ["/m/nujazz.mp3"]
    assert found("nu jazz") == ["/m/nujazz.mp3"]
    assert found("Techno") == []
    row = query_tracks(engine, TrackFilter(path="/m/house.mp3"))[0]
    # stored rolled up: the parent the model has no output for holds its child's share
    assert row["probabilities"]["Electronic"] == pytest.approx(0.6)
    assert row["genres"] == ["House", "Rock"]
