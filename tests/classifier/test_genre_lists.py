"""Genre lists in evaluation and training: which genres a song's list holds, per-genre
precision and recall with secondary genres, and a song labelled with several genres kept
in one split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from classifier import dataset, reports
from daemon.retrain_data import Label, multi_label_pairs

LABELS = ["Blues", "Jazz", "Rock"]


def test_a_list_is_the_top_genre_and_those_over_the_threshold() -> None:
    row = [0.4, 0.1, 0.5]
    assert reports.pick_genres(row, LABELS, 2, 0.35) == ["Rock", "Blues"]
    assert reports.pick_genres(row, LABELS, 1, 0.35) == ["Rock"]
    assert reports.pick_genres(row, LABELS, 3, 0.45) == ["Rock"]


def test_list_metrics_count_secondary_genres_and_songs_labelled_twice() -> None:
    paths = ["a", "a", "b", "c"]  # song a is Rock and Blues
    true = ["Rock", "Blues", "Jazz", "Rock"]
    probs = np.array([[0.4, 0.1, 0.5], [0.4, 0.1, 0.5],  # a: Rock; Blues (both right)
                      [0.0, 0.6, 0.4],  # b: Jazz; Rock (the second wrong)
                      [0.5, 0.1, 0.4]])  # c: Blues; Rock (the main one wrong)
    out = reports.list_metrics(paths, true, probs, LABELS, 2, 0.35)
    assert (out["n_songs"], out["with_secondary"], out["any_hit"]) == (3, 3, 1.0)
    assert out["per_genre"]["Rock"] == {"precision": round(2 / 3, 4), "recall": 1.0,
                                        "support": 2, "predicted": 3, "as_secondary": 2,
                                        "secondary_hits": 1}
    assert out["per_genre"]["Blues"] == {"precision": 0.5, "recall": 1.0, "support": 1,
                                         "predicted": 2, "as_secondary": 1,
                                         "secondary_hits": 1}


def test_each_genre_of_a_label_is_counted_once_for_training() -> None:
    labels = [Label("/m/a.flac", "Rock", 1, None, ("Blues",)),
              Label("/m/b.flac", "Jazz", 2, None, ("Waiting Genre",)),
              Label("/m/c.flac", "Blues", 3, None)]
    assert multi_label_pairs(labels, ["Rock", "Jazz"]) == [
        ("/m/a.flac", "Rock"), ("/m/b.flac", "Jazz"), ("/m/c.flac", "Blues"),
        ("/m/a.flac", "Blues")]


def test_a_song_listed_once_per_genre_stays_in_one_split() -> None:
    pairs = [(f"/m/{g}/{i}.flac", g) for g in ("Rock", "Blues") for i in range(10)]
    pairs += [(f"/m/Rock/{i}.flac", "Blues") for i in range(10)]  # every Rock song is Blues too
    for seed in range(5):
        splits = dataset.split(dataset.from_pairs(pairs), seed, 0.15, 0.2)
        homes = {name: {s.path for s in songs} for name, songs in splits.items()}
        assert not homes["train"] & homes["val"] and not homes["train"] & homes["test"]
        assert not homes["val"] & homes["test"]
        assert sum(len(v) for v in splits.values()) == len(pairs)
        for i in range(10):
            where = [n for n, songs in splits.items()
                     for s in songs if s.path == Path(f"/m/Rock/{i}.flac")]
            assert len(where) == 2 and len(set(where)) == 1
