"""Choosing what the retrain job trains on and what it judges with: the labels (minus the
genres still "waiting" for enough songs), the held-out songs or the cross-validation folds,
the base model's own training collection, and the anchors that keep the genres no label
covers.

What the caller may rely on:

- Held-out songs are chosen by a hash of the audio fingerprint, so the same song is held
  out every night (never trained on) whatever its path; each genre with two or more
  labelled songs has at least one held out. Folds are chosen by the same hash.
- A genre the base model does not know enters training only with
  ``retrain.min_songs_per_genre`` labelled songs; until then its labels are kept and
  reported as waiting (:func:`waiting_genres`), never trained on or judged with.
- Anchors (uncorrected library tracks the old model was sure of, in genres no label
  covers) are held out the same way: the same hash bucket, so a held-out anchor that the
  user later corrects becomes a held-out label, never a training song.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from storage import training_runs
from storage.genres import fold
from storage.genretree import GenreTree

log = logging.getLogger(__name__)

HOLDOUT_BUCKETS = 5  # 1 in 5 songs held out
FOLDS = 3  # cross-validation folds when the hold-out is too small to judge on
ORIGINAL_SONGS_PER_GENRE = 30  # of the base model's own training collection, per night
ANCHOR_TRACKS = 100  # unlabelled library tracks that keep the base model's other genres
ANCHOR_CONFIDENCE = 0.8  # ... when the base was sure of them
HELD_ANCHORS_PER_GENRE = 10  # held-out anchors checked per genre (decoding costs time)

Labelled = list[tuple[str, str]]


@dataclass(frozen=True)
class TrainingSet:
    """What the job hands a trainer. ``labelled``: labels to train on; ``original``: songs
    of the base model's own training collection to mix in; ``anchors``: (path, the base
    model's genre) of library tracks to distil the base on. ``holdout`` and
    ``held_anchors`` must never be trained on: the job judges the candidate on them."""

    labelled: Labelled
    holdout: Labelled
    original: Labelled = field(default_factory=list)
    anchors: Labelled = field(default_factory=list)
    held_anchors: Labelled = field(default_factory=list)


def _hash(fingerprint: str | None, path: str) -> str:
    return hashlib.sha256((fingerprint or path).encode()).hexdigest()


@dataclass(frozen=True)
class Label:
    path: str
    genre: str  # the main genre: what splits, folds and judging go by
    correction_id: int
    fingerprint: str | None
    also: tuple[str, ...] = ()  # the label's other genres ("Rock; Blues": Blues)

    @property
    def holdout_key(self) -> str:
        return _hash(self.fingerprint, self.path)


@dataclass(frozen=True)
class Anchor:
    """An uncorrected library track the model that classified it was sure of."""

    path: str
    genre: str
    fingerprint: str | None

    @property
    def holdout_key(self) -> str:
        return _hash(self.fingerprint, self.path)


def present_labels(engine: Engine) -> list[Label]:
    """The active label of each track whose file is present, by path."""
    return [Label(r.path, r.genre, r.correction_id, r.fingerprint, r.also)
            for r in training_runs.label_rows(engine) if os.path.isfile(r.path)]


def _by_genre(labels: Iterable[Label]) -> dict[str, list[Label]]:
    out: dict[str, list[Label]] = {}
    for label in labels:
        out.setdefault(label.genre, []).append(label)
    return out


def waiting_genres(labels: list[Label], known: Iterable[str], min_songs: int
                   ) -> dict[str, int]:
    """Genre -> labelled songs, for genres the base model does not know (case-insensitive)
    that have fewer than ``min_songs`` labelled songs: they wait, untrained."""
    have = {g.casefold() for g in known}
    return {g: len(songs) for g, songs in sorted(_by_genre(labels).items())
            if g.casefold() not in have and len(songs) < min_songs}


def as_parents(labels: list[Label], known: Iterable[str], min_songs: int, tree: GenreTree
               ) -> dict[str, str]:
    """Sub-genre -> the genre its labels train as meanwhile: for a sub-genre (in ``tree``)
    the base model does not know and with fewer than ``min_songs`` labelled songs, its
    nearest parent that the model knows or that has ``min_songs`` songs counting those
    passed up to it. A House label trains Electronic until House has its own songs; then
    House is a genre of its own (and Electronic's probability includes it)."""
    have = {fold(g) for g in known}
    songs: dict[str, int] = {}
    spelt: dict[str, str] = {}
    for x in labels:
        songs[fold(x.genre)] = songs.get(fold(x.genre), 0) + 1
        spelt.setdefault(fold(x.genre), x.genre)
    out: dict[str, str] = {}
    # deepest first, so Deep House passes its songs up to House before House is weighed
    for key in sorted(songs, key=lambda k: -len(tree.ancestors(k))):
        if key in have or songs[key] >= min_songs:
            continue
        for parent in tree.ancestors(key):
            up = fold(parent)
            if up in have or songs.get(up, 0) + songs[key] >= min_songs:
                out[spelt[key]] = spelt.setdefault(up, parent)
                songs[up] = songs.get(up, 0) + songs[key]
                break
    for child, parent in out.items():  # Deep House -> House -> Electronic: the last one
        while parent in out:
            parent = out[parent]
        out[child] = parent
    return out


def relabelled(labels: list[Label], mapping: dict[str, str]) -> list[Label]:
    """``labels`` with their genres (main and others) mapped by ``mapping``."""
    return [Label(x.path, mapping.get(x.genre, x.genre), x.correction_id, x.fingerprint,
                  tuple(mapping.get(g, g) for g in x.also)) for x in labels]


def split_holdout(labels: list[Label]) -> tuple[list[Label], list[Label]]:
    """(train, holdout): a song is held out when its fingerprint hash falls in one bucket
    of five; a genre with ≥ 2 songs and none in that bucket gives its lowest-hash song."""
    train: list[Label] = []
    holdout: list[Label] = []
    for songs in _by_genre(labels).values():
        songs = sorted(songs, key=lambda x: x.holdout_key)
        held = [x for x in songs if int(x.holdout_key, 16) % HOLDOUT_BUCKETS == 0]
        if not held and len(songs) >= 2:
            held = songs[:1]
        if len(held) == len(songs) and len(songs) >= 2:
            held = held[:-1]
        holdout += held
        train += [x for x in songs if x not in held]
    return train, holdout


def folds(labels: list[Label], k: int = FOLDS) -> list[list[Label]]:
    """``k`` (at most one per song) folds for cross-validation: each genre's songs, in hash
    order, dealt round-robin, starting where the previous genre stopped, so the folds are
    the same every night and about equal in size and genre mix."""
    k = max(2, min(k, len(labels)))
    out: list[list[Label]] = [[] for _ in range(k)]
    turn = 0
    for _, songs in sorted(_by_genre(labels).items()):
        for song in sorted(songs, key=lambda x: x.holdout_key):
            out[turn % k].append(song)
            turn += 1
    return [f for f in out if f]


def original_training_data(store_root: Path, base: Path) -> Labelled:
    """(path, genre) from the genre-folder collection the base model — or its nearest
    ancestor — was trained on, when that folder still exists here; at most
    ORIGINAL_SONGS_PER_GENRE per genre (the same songs every night: lowest path hash)."""
    from classifier.bundle import BundleError, read_meta
    from classifier.dataset import DatasetError, scan
    from classifier.store import ModelNotFound, ModelStore

    store = ModelStore(store_root)
    path: Path | None = base
    for _ in range(32):  # parent chain; a cycle or a very long history ends the search
        if path is None:
            return []
        meta = read_meta(path)
        data_dir = meta.training.get("data_dir")
        if isinstance(data_dir, str) and Path(data_dir).is_dir():
            try:
                songs = scan(data_dir)
            except DatasetError:
                return []
            by_genre: dict[str, list[str]] = {}
            for song in sorted(songs, key=lambda x: hashlib.sha256(bytes(x.path)).hexdigest()):
                by_genre.setdefault(song.genre, []).append(str(song.path))
            return [(p, g) for g, paths in by_genre.items()
                    for p in paths[:ORIGINAL_SONGS_PER_GENRE]]
        try:
            path = store.resolve(meta.parent) if meta.parent else None
        except (ModelNotFound, BundleError):
            return []
    return []


def model_names(labels: list[Label], model_labels: list[str], shown: dict[str, str]
                ) -> list[Label]:
    """``labels`` with each genre as the model calls it: after `genred genres rename
    Rock "Rock & Roll"` the labels say "Rock & Roll" and the model's output is still
    "Rock" (``shown``: model label -> name shown)."""
    back: dict[str, str] = {}
    for label, name in shown.items():
        if label in model_labels and (name not in back or label == name):
            back[name] = label
    return [Label(x.path, back.get(x.genre, x.genre), x.correction_id, x.fingerprint,
                  tuple(back.get(g, g) for g in x.also))
            for x in labels]


def anchor_candidates(engine: Engine, genres: set[str], exclude: set[str],
                      shown: dict[str, str] | None = None) -> list[Anchor]:
    """Uncorrected tracks (not in ``exclude``) whose current prediction put them in one of
    ``genres`` with confidence >= ANCHOR_CONFIDENCE, in a fixed order (fingerprint hash),
    so the same ones are chosen every night. Tracks queued again after a model switch keep
    their current prediction and still count (a `retrain --now` right after a promotion
    must not lose its anchors); the base model is what the new one learns from and is
    compared with on them, so an older model's answer only chooses them. Files are not
    checked here."""
    shown = {g: n for g, n in (shown or {}).items() if g in genres}
    back = {n: g for g, n in shown.items()}
    wanted = {shown.get(g, g) for g in genres}
    rows = training_runs.anchor_rows(engine, wanted, ANCHOR_CONFIDENCE)
    anchors = [Anchor(p, back.get(g, g), fp) for p, g, fp in rows if p not in exclude]
    return sorted(anchors, key=lambda a: a.holdout_key)


def split_anchors(candidates: list[Anchor]) -> tuple[list[Anchor], list[Anchor]]:
    """(train pool, held out) with the labels' rule: a track is held out when its hash
    falls in the held-out bucket; a genre with ≥ 2 candidates and none there gives its
    lowest-hash one. At most HELD_ANCHORS_PER_GENRE held-out tracks per genre are kept
    (files present); the rest of the bucket is left out of training all the same. The
    train pool keeps the candidates' order and is not checked for files."""
    by_genre: dict[str, list[Anchor]] = {}
    for anchor in candidates:
        by_genre.setdefault(anchor.genre, []).append(anchor)
    held_out: set[Anchor] = set()
    kept: list[Anchor] = []
    for tracks in by_genre.values():
        bucket = [a for a in tracks if int(a.holdout_key, 16) % HOLDOUT_BUCKETS == 0]
        if not bucket and len(tracks) >= 2:
            bucket = tracks[:1]
        held_out.update(bucket)
        kept += _present(bucket, HELD_ANCHORS_PER_GENRE)
    return [a for a in candidates if a not in held_out], kept


def _present(anchors: Iterable[Anchor], limit: int) -> list[Anchor]:
    """The first ``limit`` anchors whose files exist (checking no more files than that)."""
    out: list[Anchor] = []
    for anchor in anchors:
        if len(out) >= limit:
            break
        if os.path.isfile(anchor.path):
            out.append(anchor)
    return out


def multi_label_pairs(train: list[Label], model_labels: Iterable[str]) -> Labelled:
    """(path, genre) pairs to train on: each label's main genre, and each of its other
    genres as one more pair of the same song (every genre of a label counted once). A
    secondary genre trains only when the model knows it or some label has it as its main
    genre, so a genre still waiting for songs does not slip in through a second place."""
    allowed = set(model_labels) | {x.genre for x in train}
    pairs = [(x.path, x.genre) for x in train]
    pairs += [(x.path, g) for x in train for g in x.also if g in allowed and g != x.genre]
    return pairs


def training_set(engine: Engine, store_root: Path, base: Path, train: list[Label],
                 holdout: Labelled, judged: Labelled | None = None) -> TrainingSet:
    """The night's data: the labels, up to ORIGINAL_SONGS_PER_GENRE songs per genre of the
    base model's own training collection, and anchors in the base's genres no label
    covers — up to ANCHOR_TRACKS for training (only in genres the collection does not
    cover either) and the held-out ones that judge the candidate. ``judged``: labelled
    songs judged elsewhere (other cross-validation folds), kept out of the collection and
    anchors as the hold-out is."""
    from classifier.bundle import read_meta

    labelled = multi_label_pairs(train, read_meta(base).labels)
    everything = labelled + list(holdout) + list(judged or [])
    taken = {p for p, _ in everything}
    original = [x for x in original_training_data(store_root, base) if x[0] not in taken]
    if original:
        log.info("mixing in %d songs of the model's own training collection", len(original))
    unlabelled = set(read_meta(base).labels) - {g for _, g in everything}
    if not unlabelled:
        return TrainingSet(labelled, list(holdout), original)
    from storage.vocabulary import renames

    candidates = anchor_candidates(engine, unlabelled, taken | {p for p, _ in original},
                                   renames(engine))
    pool, held = split_anchors(candidates)
    in_collection = {g for _, g in original}
    anchors = _present((a for a in pool if a.genre not in in_collection), ANCHOR_TRACKS)
    log.info("anchoring the base model's unlabelled genres on %d library tracks "
             "(%d more held out to check them)", len(anchors), len(held))
    return TrainingSet(labelled, list(holdout), original, [(a.path, a.genre) for a in anchors],
                       [(a.path, a.genre) for a in held])
