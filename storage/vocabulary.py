"""The genre vocabulary in the catalogue: which genres exist (labels, predictions), how
many tracks and labels each has, and `genred genres rename|merge`.

A rename or merge rewrites the labels and the stored predictions at once, and is
remembered (State ``genres.renamed``: model label -> the name shown), so predictions the
models make later under the old name are recorded under the new one, and the retrain job
can map the labels back onto the model's own output names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from storage.db import reading, writing
from storage.genres import fold, genres_or, merge_probabilities, unique
from storage.schema import Correction, Prediction, State, TagBackup, Track

RENAMES_KEY = "genres.renamed"


@dataclass(frozen=True)
class GenreCounts:
    name: str
    tracks: int  # tracks whose effective genre (label, else prediction) it is
    labels: int  # active labels
    predictions: int  # current predictions


def renames_in(s: Session) -> dict[str, str]:
    row = s.get(State, RENAMES_KEY)
    try:
        data = json.loads(row.value) if row is not None else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def renames(engine: Engine) -> dict[str, str]:
    """Model label -> the name shown for it (after `genred genres rename|merge`)."""
    with Session(reading(engine)) as s:
        return renames_in(s)


def label_genres(engine: Engine) -> list[str]:
    """Genres of active labels, each in the spelling first used (oldest label first)."""
    with Session(reading(engine)) as s:
        rows = s.execute(select(Correction.genre, func.min(Correction.id))
                         .where(Correction.active).group_by(Correction.genre)
                         .order_by(func.min(Correction.id))).all()
    out: dict[str, str] = {}
    for genre, _ in rows:
        out.setdefault(fold(genre), genre)
    return list(out.values())


def counts(engine: Engine) -> dict[str, GenreCounts]:
    """Folded name -> counts, over every genre a label or a current prediction uses."""
    from storage.query import stats

    with Session(reading(engine)) as s:
        labels = dict(s.execute(select(Correction.genre, func.count(func.distinct(
            Correction.track_id))).where(Correction.active).group_by(Correction.genre)).all())
        preds = dict(s.execute(select(Prediction.genre, func.count()).where(
            Prediction.current).group_by(Prediction.genre)).all())
    tracks = stats(engine).get("genres", {})
    names: dict[str, str] = {}
    for name in [*labels, *preds, *tracks]:
        names.setdefault(fold(name), name)
    out: dict[str, GenreCounts] = {}
    for key, name in names.items():
        def total(table: Mapping[str, int], key: str = key) -> int:
            return sum(int(n) for g, n in table.items() if fold(g) == key)
        out[key] = GenreCounts(name, total(tracks), total(labels), total(preds))
    return out


@dataclass(frozen=True)
class RenameResult:
    labels: int
    predictions: int
    retag: list[str]  # tracks whose tags genred wrote, to write again under the new name


def rename(engine: Engine, old: str, new: str) -> RenameResult:
    """Every label and current prediction named ``old`` (case-insensitive) gets ``new``;
    probabilities under both names are added up (a merge). Remembered for predictions to
    come. Returns what changed and which tracks' tags genred wrote (to rewrite)."""
    key = fold(old)
    with Session(writing(engine)) as s, s.begin():
        def renamed(names: list[str]) -> list[str]:
            return unique(new if fold(g) == key else g for g in names)

        labels = s.scalars(select(Correction).where(Correction.active)).all()
        changed_labels = [c for c in labels
                          if any(fold(g) == key for g in genres_or(c.genre, c.genres))]
        for c in changed_labels:
            names = renamed(genres_or(c.genre, c.genres))
            c.genre, c.genres = names[0], names
        preds = s.scalars(select(Prediction).where(Prediction.current)).all()
        changed_preds = 0
        mapping = {name: new for p in preds for name in p.probabilities if fold(name) == key}
        for p in preds:
            if fold(p.genre) == key or mapping.keys() & p.probabilities.keys():
                genre, confidence, probs = merge_probabilities(
                    p.genre, p.confidence, dict(p.probabilities), {**mapping, old: new})
                changed_preds += fold(p.genre) == key
                if p.genres:  # the main genre as merged, then the others renamed
                    p.genres = unique([genre, *renamed(list(p.genres))])[:len(p.genres)]
                p.genre, p.confidence, p.probabilities = genre, confidence, probs
        known = renames_in(s)
        known = {m: (new if fold(shown) == key else shown) for m, shown in known.items()}
        for name in mapping:
            known[name] = new
        row = s.get(State, RENAMES_KEY)
        if row is None:
            s.add(State(key=RENAMES_KEY, value=json.dumps(known)))
        else:
            row.value = json.dumps(known)
        ids = {c.track_id for c in changed_labels}
        ids |= {p.track_id for p in preds if new in genres_or(p.genre, p.genres)}
        retag = sorted(s.scalars(select(Track.path).join(TagBackup).where(
            TagBackup.restored.is_(False), Track.id.in_(ids))).unique()) if ids else []
    return RenameResult(len(changed_labels), changed_preds, list(retag))
